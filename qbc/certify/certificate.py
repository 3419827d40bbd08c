"""The certificate: the quantities Cao & Xie's bounds are written in, measured on real runs.

- ε_q: the quantizer's worst-case bound and its in-distribution error on the dataset's actions;
- P-IISS gain γ(r): perturb the expert's actions by at most r (coupled noise) for a while, record
  the largest state gap, fit γ(r) = C·r^s, and check that the gap decays after the perturbation
  stops (exponential incremental stability, P-EIISS). γ(r) here is the *episode mean* of the
  peak gap under one perturbation shape (constant r·(1, …, 1), or random signs): a lower
  estimate of the theory's sup over perturbations and states, not the sup itself;
- RTVC violation rate κ(δ): for state pairs at distance δ around dataset states, the fraction
  whose quantized expert actions are more than k·ε_q apart. It is an average over sampled pairs
  where the theory's modulus bounds every pair (for a deterministic q#π* that modulus is 0 or 1:
  a rate above 0 means 1, a rate of 0 does not prove 0); the certificate adds γ((k+1)ε_q) to
  the δ grid and measures κ there (:func:`kappa_at` interpolates inside a caller's own grid);
- the shapes of the bounds of Theorems 2, 3 and 7 with these numbers (all constants 1 and
  log|Π| = 1: *shapes*, not numbers to compare in absolute value), each labelled with the
  hypotheses it needs and whether this run satisfies them (:func:`bound_hypotheses`).

q#π* for smooth binning: the theory's quantized expert is *stochastic* (each action rounded to
one of its two neighbouring centres with probabilities linear in the distance), and that is the
one whose ε_q and κ(δ) the certificate measures for ``smooth`` (seeded draws; the two states of a
pair share their uniform draws, a coupling). The nearest-rounding variant (a hard binning on
smooth's grid, what an argmax two-hot learner reproduces) is measured beside it, labelled, and
is the one Theorem 3 (deterministic q#π*) is evaluated with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.rollout.evaluate import evaluate_actors
from qbc.rollout.growth import fit_growth
from qbc.stepping.actor import reset_actor

#: Names of the two roundings of a stochastic (smooth) tokenizer's q#π*.
STOCHASTIC = "stochastic rounding (the theory's q#π* for smooth binning)"
NEAREST = "nearest rounding (deterministic; an argmax two-hot learner's target)"


def quantization_error(tokenizer: Any, actions: np.ndarray,
                       rng: np.random.Generator | None = None) -> dict[str, Any]:
    """ε_q of a tokenizer on actions (N, D): worst-case bound (max over dimensions, None for
    quantizers without one: learned ones and ``sign``) and the in-distribution mean and max of
    ‖decode(encode(a)) − a‖∞.

    With ``rng`` and a stochastic (smooth) tokenizer the tokens are drawn by stochastic rounding
    and the worst-case bound is that of a draw (a bin width, not half of one); ``rounding`` says
    which was measured."""
    stochastic = rng is not None and tokenizer.stochastic
    rep = tokenizer.report(actions)
    bounds = _worst_case_bounds(tokenizer, stochastic)
    err = np.abs(tokenizer.decode(tokenizer.encode(actions, rng=rng if stochastic else None))
                 - np.asarray(actions, np.float64))
    err_inf = err.max(axis=1)
    return {
        "worst_case_bound": None if any(b is None for b in bounds) else float(max(bounds)),
        "in_distribution_mean": float(err_inf.mean()),
        "in_distribution_max": float(err_inf.max()),
        "clipped_fraction": float(np.mean([d["clipped_fraction"] for d in rep["per_dim"]])),
        "rounding": "stochastic" if stochastic else "nearest",
    }


def _worst_case_bounds(tokenizer: Any, stochastic: bool) -> list[float | None]:
    """Per action dimension: the worst-case |decode(encode(a)) − a| inside the range (None for
    a learned or joint quantizer); of a stochastic draw when ``stochastic``."""
    if tokenizer.is_joint:
        return [None]
    quantizers = [tokenizer._quantizer_for(d) for d in range(tokenizer.action_dim_)]
    if stochastic:
        return [q.stochastic_error_bound for q in quantizers]
    return [q.error_bound for q in quantizers]


def used_eps_q(eps: dict[str, Any]) -> float:
    """The ε_q the bounds use, from :func:`quantization_error`: the worst-case bound, or for a
    quantizer without one (learned, or ``sign``) the in-distribution mean error."""
    bound = eps["worst_case_bound"]
    return bound if bound is not None else eps["in_distribution_mean"]


class PerturbedActor:
    """The expert with its actions moved by r_t, ‖r_t‖∞ ≤ r, for the first ``duration`` steps.

    ``kind="constant"``: r_t = r·(1, …, 1) (for a scalar linear loop x' = λx + b·u with
    0 ≤ λ < 1, as under an LQR expert on qbc's scalar envs, every past perturbation pushes the
    state the same way, so this one moves it furthest; in several dimensions or with λ < 0 it need
    not); ``kind="random"``: r_t = r·s_t with signs s_t drawn from ``rng``.
    """

    def __init__(self, expert: Any, r: float, duration: int, kind: str = "constant",
                 rng: np.random.Generator | None = None):
        if kind not in ("constant", "random"):
            raise InvalidValueError(f"perturbation kind must be constant or random, got {kind!r}")
        self.expert, self.r, self.duration, self.kind = expert, r, duration, kind
        self.rng = rng or np.random.default_rng(0)
        self.t = 0

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start the perturbation again (all rows share one clock, so ``mask`` does not move
        it) and pass the start of episodes on to the expert."""
        self.t = 0
        reset_actor(self.expert, mask)

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(self.expert.act(obs), dtype=np.float64)
        if self.t < self.duration:
            sign = (np.ones_like(action) if self.kind == "constant"
                    else self.rng.choice([-1.0, 1.0], size=action.shape))
            action = action + self.r * sign
        self.t += 1
        return action


def piiss_gain(env_id: str, expert: Any, sizes: Sequence[float], seeds: Sequence[int],
               horizon: int, perturb_steps: int | None = None, kind: str = "constant",
               num_envs: int | None = None) -> dict[str, Any]:
    """Measure the incremental gain γ(r) of the closed loop under the expert.

    For each size r: the expert and the expert perturbed by r for the first ``perturb_steps``
    steps (default: half the horizon) run coupled from the same seeds; γ(r) is the mean over
    episodes of max_t ‖x_t − x*_t‖, with x the env's observation (the state on qbc's own envs;
    elsewhere a function of it, e.g. Pendulum-v1's cos θ, sin θ, θ'). The *decay ratio* is the
    mean gap over the last tenth of the horizon divided by the peak: near 0 when the gap dies out
    after the perturbation stops (exponential incremental stability), near 1 or above if not.
    Returns sizes, gains, decay ratios, a power fit γ(r) ≈ C·r^s, the linear gain C = γ(r)/r at
    each size, the fitted per-step decay rate η of the gap, and a verdict.
    """
    perturb_steps = horizon // 2 if perturb_steps is None else int(perturb_steps)
    if not 0 < perturb_steps < horizon:
        raise InvalidValueError("perturb_steps must lie strictly between 0 and the horizon")
    seeds = list(seeds)
    if not seeds or seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise InvalidValueError("the episode seeds must be consecutive (seed, seed + 1, ...)")
    actors = {"expert": expert}
    for i, r in enumerate(sizes):
        actors[f"r{i}"] = PerturbedActor(expert, float(r), perturb_steps, kind,
                                         np.random.default_rng(i))
    result = evaluate_actors(env_id, actors, seeds[0], len(seeds), [horizon],
                             num_envs=num_envs).result
    ref = result.observations["expert"]
    gains, decay, rates = [], [], []
    tail = max(1, horizon // 10)
    for i in range(len(sizes)):
        gap = np.linalg.norm((result.observations[f"r{i}"] - ref).reshape(horizon + 1,
                                                                           len(seeds), -1), axis=-1)
        if not result.alive[f"r{i}"].all():
            gap[:] = np.inf  # diverged: no finite gain
        peak = gap.max(axis=0)
        gains.append(float(peak.mean()))
        decay.append(float(gap[-tail:].mean() / peak.mean()) if np.isfinite(peak.mean())
                     and peak.mean() > 0 else float("inf"))
        after = gap[perturb_steps + 1:].mean(axis=1)
        # Observations are float32: gaps below ~1e-5 of the peak are rounding noise, not decay.
        ok = np.isfinite(after) & (after > max(1e-12, 1e-5 * peak.mean()))
        rates.append(float(np.exp(np.polyfit(np.flatnonzero(ok), np.log(after[ok]), 1)[0]))
                     if ok.sum() >= 3 else None)
    sizes_arr = np.asarray(sizes, dtype=np.float64)
    fit = fit_growth(sizes_arr, gains)
    finite = all(np.isfinite(gains))
    exponential = finite and max(decay) < 0.1
    return {
        "sizes": sizes_arr.tolist(), "gains": gains, "linear_gain": (np.array(gains) / sizes_arr
                                                                       ).tolist(),
        "decay_ratio": decay, "gap_decay_rate_per_step": rates,
        "power_fit": fit["power"], "perturb_steps": perturb_steps, "horizon": horizon,
        "kind": kind,
        "verdict": ("P-EIISS-like: the gap dies out after the perturbation stops" if exponential
                    else "P-IISS (gap bounded, slow decay)" if finite
                    else "not incrementally stable: perturbed runs diverged"),
        "exponential": bool(exponential),
    }


def rtvc_violation_rate(expert: Any, tokenizer: Any, states: np.ndarray,
                        deltas: Sequence[float], eps_q: float, k: float = 2.0,
                        n_pairs: int = 2000, seed: int = 0,
                        stochastic: bool = False) -> dict[str, Any]:
    """κ(δ): fraction of state pairs (x, x + δ·v), v a random unit vector and x drawn from
    ``states`` (N, obs_dim), whose quantized expert actions differ by more than k·ε_q (∞-norm).

    A nearest-rounding binning quantizer under a Lipschitz expert keeps nearby states in the
    same or adjacent cells, so κ(δ) → 0 as δ → 0 for k ≥ 2 (adjacent codewords are 2ε_q apart);
    a learned quantizer can keep κ(δ) > 0 for arbitrarily small δ. For a stochastic (smooth)
    q#π*, ε_q is a bin width and k = 2 tolerates two: a pair counts, as with nearest rounding,
    only if its expert actions are over a bin width apart; ``token_change_rate`` is informative.

    ``stochastic`` (smooth tokenizers): q#π* rounds stochastically; both states of a pair use the
    same uniform draws (a coupling of the two action laws, so the rate is an upper estimate of
    the best coupling's). ``token_change_rate`` is the fraction of pairs whose tokens differ at
    all (tolerance 0). Both are averages over the sampled pairs, not a sup over states.
    """
    stochastic = stochastic and tokenizer.stochastic
    rng = np.random.default_rng(seed)
    states = np.asarray(states, dtype=np.float64)
    x = states[rng.integers(0, len(states), n_pairs)]
    v = rng.normal(size=x.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    threshold = k * eps_q

    def tokens(obs: np.ndarray) -> np.ndarray:
        draws = np.random.default_rng(seed + 1) if stochastic else None  # shared by a pair
        return tokenizer.encode(expert.act(obs.astype(np.float32)), rng=draws)

    base_tokens = tokens(x)
    base = tokenizer.decode(base_tokens).astype(np.float64)
    rates, changes = [], []
    for delta in deltas:
        if not np.isfinite((x + delta * v).astype(np.float32)).all():  # the expert acts on f32
            raise InvalidValueError(f"--deltas {delta:g} moves the states past float32's range")
        moved_tokens = tokens(x + delta * v)
        moved = tokenizer.decode(moved_tokens).astype(np.float64)
        # float32 codewords: adjacent ones may sit a rounding error beyond exactly 2·ε_q apart.
        gap = np.abs(moved - base).max(axis=1)
        rates.append(float(np.mean(gap > threshold * (1 + 1e-5) + 1e-12)))
        changes.append(float(np.mean(np.any(moved_tokens != base_tokens, axis=1))))
    return {"deltas": [float(d) for d in deltas], "violation_rate": rates,
            "token_change_rate": changes, "k": k, "eps_q": float(eps_q),
            "threshold": float(threshold), "n_pairs": n_pairs,
            "rounding": "stochastic" if stochastic else "nearest",
            "estimate": "fraction of sampled state pairs (average-case proxy of the worst-case "
                        "modulus κ; for a deterministic q#π* that modulus is 0 or 1: a rate > 0 "
                        "means 1, a rate of 0 does not prove 0)"}


def bound_shapes(horizons: Sequence[int], n_demos: int, eps_q: float, gamma: float,
                 kappa: float, k: float) -> dict[str, list[float]]:
    """Shapes of the upper bounds (constants 1, log|Π| = 1, δ-terms dropped), per horizon. Each
    holds only under its theorem's hypotheses (:func:`bound_hypotheses` says which hold):

    thm2 (stochastic q#π*, TV-continuous, P-EIISS): H·sqrt(1/n) + H²·ε_q
    thm3 (binning, kε_q-RTVC, P-IISS): H/n + H²·κ + H·(γ + (k+1)·ε_q), with γ = γ((k+1)ε_q) and
        κ = κ(γ((k+1)ε_q)) the measured RTVC violation rate at that distance
    thm7 (model-based augmentation): H·(sqrt(2/n) + ε_q)
    """
    h, n = np.asarray(horizons, dtype=np.float64), float(n_demos)
    return {
        "horizons": [int(x) for x in h],
        "thm2": (h * np.sqrt(1 / n) + h**2 * eps_q).tolist(),
        "thm3": (h / n + h**2 * kappa + h * (gamma + (k + 1) * eps_q)).tolist(),
        "thm7": (h * (np.sqrt(2 / n) + eps_q)).tolist(),
    }


def bound_hypotheses(rounding: str, worst_case_bound: float | None, piiss: dict[str, Any],
                     rtvc: dict[str, Any],
                     model_based: tuple[bool | None, str] = (None, "no rollout given")
                     ) -> dict[str, dict[str, Any]]:
    """Per theorem (``thm2``, ``thm3``, ``thm7``): the hypotheses its bound needs and whether
    this run satisfies each (True, False, or None: not measured), and ``applies`` (all True).

    ``rounding``: 'stochastic' or 'nearest' — how q#π* rounds; ``worst_case_bound``: the
    quantizer's worst-case error (None: learned, not a binning); ``piiss`` and ``rtvc``: results
    of :func:`piiss_gain` and :func:`rtvc_violation_rate` (for Theorem 3, of the deterministic
    q#π*); ``model_based``: whether the deployment ran Algorithm 1 (None: unknown) and why
    (:func:`qbc.certify.deployment.algorithm_1_deployment`).
    Measured hypotheses are judged from estimates (see the module docstring)."""
    stable = bool(np.all(np.isfinite(piiss["gains"])))
    kappa_0 = rtvc["violation_rate"][int(np.argmin(rtvc["deltas"]))] == 0.0
    smallest = min(rtvc["deltas"])
    hyps = {
        "thm2": [
            ("stochastic q#π*", rounding == "stochastic", "how the quantizer rounds"),
            ("TV-continuous q#π*", rounding == "stochastic",
             "by construction: stochastic rounding of a Lipschitz expert moves ≤ Σ_d |Δu_d|/w_d "
             "in TV (w_d: dimension d's bin width; the expert's Lipschitz continuity and the "
             "policy class's TV continuity: assumed); a deterministic q#π* jumps at cell edges"),
            ("P-EIISS", bool(piiss["exponential"]), "measured: gap decay after the perturbation"),
        ],
        "thm3": [
            ("deterministic q#π*", rounding == "nearest", "how the quantizer rounds"),
            ("binning quantizer (worst-case ε_q)", worst_case_bound is not None,
             "the quantizer has a worst-case error bound"),
            (f"kε_q-RTVC (k = {rtvc['k']:g})", kappa_0,
             f"measured: κ at the smallest δ ({smallest:g}) is 0 on the sampled pairs"),
            ("P-IISS", stable, "measured: finite gains at every perturbation size"),
        ],
        "thm7": [
            ("model-based deployment (Algorithm 1: sampled model state, never re-synced)",
             model_based[0], model_based[1]),
            ("P-EIISS", bool(piiss["exponential"]), "measured: gap decay after the perturbation"),
        ],
    }
    return {thm: {"hypotheses": [{"name": n, "holds": h, "how": how} for n, h, how in items],
                  "applies": all(h is True for _, h, _ in items)}
            for thm, items in hyps.items()}


def kappa_at(rtvc: dict[str, Any], distance: float) -> tuple[float, str]:
    """κ at ``distance`` from :func:`rtvc_violation_rate`, interpolated inside the δ grid, and
    where the distance lies: 'inside', or outside the grid, where the value of the nearest grid
    end is returned and flagged ('below the smallest δ: an upper value if κ grows with δ'; 'above
    the largest δ: a lower value')."""
    deltas, rates = np.asarray(rtvc["deltas"]), np.asarray(rtvc["violation_rate"])
    order = np.argsort(deltas)
    deltas, rates = deltas[order], rates[order]
    if not np.isfinite(distance) or distance > deltas[-1]:
        return float(rates[-1]), (f"above the largest δ ({deltas[-1]:g}): κ there, a lower value "
                                  "if κ grows with δ")
    if distance < deltas[0]:
        return float(rates[0]), (f"below the smallest δ ({deltas[0]:g}): κ there, an upper value "
                                 "if κ grows with δ")
    return float(np.interp(distance, deltas, rates)), "inside"


def certificate(env_id: str, expert: Any, tokenizer: Any, states: np.ndarray,
                actions: np.ndarray, n_demos: int, sizes: Sequence[float],
                deltas: Sequence[float], horizons: Sequence[int], k: float = 2.0,
                horizon: int = 200, seeds: Sequence[int] = range(2_000_000, 2_000_050),
                model_based: tuple[bool | None, str] = (None, "no rollout given"),
                rounding_seed: int = 0) -> dict[str, Any]:
    """Every quantity of the certificate on ``env_id`` under ``expert`` with ``tokenizer``:
    ε_q on the demonstrations' ``actions`` (N, act_dim), the P-IISS gain over ``sizes`` on
    coupled episodes from ``seeds`` of ``horizon`` steps, κ(δ) over ``deltas`` around ``states``
    (N, obs_dim) with threshold ``k``·ε_q, γ at (k+1)·ε_q and κ at that γ, and the bound shapes at
    ``horizons`` for ``n_demos`` demonstrations, each with its hypotheses checked
    (``model_based``: whether the deployment ran Algorithm 1, None if unknown, and why: see
    :func:`qbc.certify.deployment.algorithm_1_deployment`).

    A stochastic (smooth) tokenizer's ε_q and κ are those of the stochastic q#π* (draws seeded by
    ``rounding_seed``); its nearest-rounding variant is under ``nearest`` and gives Theorem 3."""
    stochastic = bool(tokenizer.stochastic)
    gain = piiss_gain(env_id, expert, sizes, seeds, horizon)
    main = _rounding_quantities(expert, tokenizer, states, actions, deltas, k, gain,
                                stochastic, rounding_seed)
    nearest = (_rounding_quantities(expert, tokenizer, states, actions, deltas, k, gain,
                                    False, rounding_seed) if stochastic else main)
    shapes = bound_shapes(horizons, n_demos, main["eps_q_used"], main["gamma"], main["kappa"], k)
    if stochastic:  # Theorems 2 and 7 with the stochastic q#π*'s ε_q, Theorem 3 the nearest's
        shapes["thm3"] = bound_shapes(horizons, n_demos, nearest["eps_q_used"], nearest["gamma"],
                                      nearest["kappa"], k)["thm3"]
    hypotheses = bound_hypotheses("stochastic" if stochastic else "nearest",
                                  main["eps_q"]["worst_case_bound"], gain, main["rtvc"],
                                  model_based)
    if stochastic:  # Theorem 3 is about the deterministic (nearest-rounding) q#π*
        hypotheses["thm3"] = bound_hypotheses(
            "nearest", nearest["eps_q"]["worst_case_bound"], gain, nearest["rtvc"],
            model_based)["thm3"]
        hypotheses["thm3"]["evaluated_with"] = NEAREST
    cert = {
        "q_sharp_pi_star": STOCHASTIC if stochastic else "deterministic (the quantizer's encode)",
        "eps_q": main["eps_q"], "eps_q_used": main["eps_q_used"],
        "eps_q_kind": main["eps_q_kind"],
        "piiss": gain, "rtvc": main["rtvc"],
        "gamma_at_(k+1)eps_q": main["gamma"], "gamma_grid": main["gamma_grid"],
        "kappa_at_gamma": main["kappa"], "kappa_grid": main["kappa_grid"],
        "bound_shapes": shapes, "bound_hypotheses": hypotheses,
        "note": "bound shapes use constants 1 and log|Pi| = 1: compare growth, not values; "
                "gamma is an episode mean of the peak gap (a lower estimate of the sup), kappa a "
                "fraction of sampled state pairs (an average-case proxy of the worst case)",
    }
    if stochastic:
        cert["nearest"] = {"q_sharp_pi_star": NEAREST,
                           **{key: nearest[key] for key in ("eps_q", "eps_q_used", "rtvc",
                                                            "gamma", "gamma_grid", "kappa",
                                                            "kappa_grid")}}
    return cert


def _rounding_quantities(expert: Any, tokenizer: Any, states: np.ndarray, actions: np.ndarray,
                         deltas: Sequence[float], k: float, gain: dict[str, Any],
                         stochastic: bool, seed: int) -> dict[str, Any]:
    """ε_q, κ(δ) and γ, κ at (k+1)·ε_q of one rounding of q#π* (stochastic or nearest). γ is
    added to the δ grid, so κ is measured where the bounds use it, not interpolated (the other δ
    keep their values: the same sampled pairs)."""
    rng = np.random.default_rng(seed) if stochastic else None
    eps = quantization_error(tokenizer, actions, rng=rng)
    eps_q = used_eps_q(eps)
    gamma, gamma_grid = gamma_at(gain, (k + 1) * eps_q)
    if np.isfinite(gamma) and gamma > 0:
        deltas = sorted({*deltas, gamma})
    rtvc = rtvc_violation_rate(expert, tokenizer, states, deltas, eps_q, k, seed=seed,
                               stochastic=stochastic)
    kappa, kappa_grid = kappa_at(rtvc, gamma)
    kind = ("worst case" if eps["worst_case_bound"] is not None
            else "in distribution (no worst-case bound)")
    return {"eps_q": eps, "eps_q_used": eps_q, "eps_q_kind": kind, "rtvc": rtvc,
            "gamma": gamma, "gamma_grid": gamma_grid, "kappa": kappa, "kappa_grid": kappa_grid}


def gamma_at(gain: dict[str, Any], r: float) -> tuple[float, str]:
    """γ(r) from the measured gains and where r lies: interpolated in log-log inside the size
    grid ('inside'); outside it extrapolated by the power fit (or linearly), and flagged."""
    order = np.argsort(gain["sizes"])  # the Python API takes the sizes in any order
    sizes, gains = np.asarray(gain["sizes"])[order], np.asarray(gain["gains"])[order]
    if not np.all(np.isfinite(gains)):
        return float("inf"), "diverged"
    if sizes[0] <= r <= sizes[-1]:
        return float(np.exp(np.interp(np.log(r), np.log(sizes), np.log(gains)))), "inside"
    where = (f"below the smallest size ({sizes[0]:g})" if r < sizes[0]
             else f"above the largest size ({sizes[-1]:g})")
    fit = gain["power_fit"]
    if fit is None:
        return float(gains[0] / sizes[0] * r), f"{where}: extrapolated linearly"
    anchor = 0 if r < sizes[0] else -1
    return (float(gains[anchor] * (r / sizes[anchor]) ** fit["slope"]),
            f"{where}: extrapolated by the power fit")
