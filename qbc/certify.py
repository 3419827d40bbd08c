"""The certificate: the quantities Cao & Xie's bounds are written in, measured on real runs.

- ε_q: the quantizer's worst-case bound and its in-distribution error on the dataset's actions;
- P-IISS gain γ(r): perturb the expert's actions by at most r (coupled noise) for a while, record
  the largest state gap, fit γ(r) = C·r^s, and check that the gap decays after the perturbation
  stops (exponential incremental stability, P-EIISS);
- RTVC violation rate κ(δ): for state pairs at distance δ around dataset states, the fraction
  whose quantized expert actions are more than k·ε_q apart;
- the shapes of the bounds of Theorems 2, 3 and 7 with these numbers (all constants 1 and
  log|Π| = 1: *shapes*, not numbers to compare in absolute value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.rollout import coupled_rollout, fit_growth


def quantization_error(tokenizer: Any, actions: np.ndarray) -> dict[str, Any]:
    """ε_q of a tokenizer on actions (N, D): worst-case bound (max over dimensions, None for
    learned quantizers) and the in-distribution mean and max of ‖decode(encode(a)) − a‖∞."""
    rep = tokenizer.report(actions)
    bounds = [d["error_bound"] for d in rep["per_dim"]]
    err = np.abs(tokenizer.decode(tokenizer.encode(actions)) - np.asarray(actions, np.float64))
    err_inf = err.max(axis=1)
    return {
        "worst_case_bound": None if any(b is None for b in bounds) else float(max(bounds)),
        "in_distribution_mean": float(err_inf.mean()),
        "in_distribution_max": float(err_inf.max()),
        "clipped_fraction": float(np.mean([d["clipped_fraction"] for d in rep["per_dim"]])),
    }


def used_eps_q(eps: dict[str, Any]) -> float:
    """The ε_q the bounds use, from :func:`quantization_error`: the worst-case bound, or for a
    learned quantizer (no bound) the in-distribution mean error."""
    bound = eps["worst_case_bound"]
    return bound if bound is not None else eps["in_distribution_mean"]


class PerturbedActor:
    """The expert with its actions moved by r_t, ‖r_t‖∞ ≤ r, for the first ``duration`` steps.

    ``kind="constant"``: r_t = r·(1, …, 1) (for a stable linear system with positive gain this is
    the perturbation that moves the state furthest); ``kind="random"``: r_t = r·s_t with signs
    s_t drawn from ``rng``.
    """

    def __init__(self, expert: Any, r: float, duration: int, kind: str = "constant",
                 rng: np.random.Generator | None = None):
        if kind not in ("constant", "random"):
            raise InvalidValueError(f"perturbation kind must be constant or random, got {kind!r}")
        self.expert, self.r, self.duration, self.kind = expert, r, duration, kind
        self.rng = rng or np.random.default_rng(0)
        self.t = 0

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start the perturbation again (all rows share one clock, so ``mask`` is ignored)."""
        self.t = 0

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
    episodes of max_t ‖x_t − x*_t‖. The *decay ratio* is the mean gap over the last tenth of the
    horizon divided by the peak: near 0 when the gap dies out after the perturbation stops
    (exponential incremental stability), near 1 or above when it does not.
    Returns sizes, gains, decay ratios, a power fit γ(r) ≈ C·r^s, the linear gain C = γ(r)/r at
    each size, the fitted per-step decay rate η of the gap, and a verdict.
    """
    perturb_steps = horizon // 2 if perturb_steps is None else int(perturb_steps)
    if not 0 < perturb_steps < horizon:
        raise InvalidValueError("perturb_steps must lie strictly between 0 and the horizon")
    actors = {"expert": expert}
    for i, r in enumerate(sizes):
        actors[f"r{i}"] = PerturbedActor(expert, float(r), perturb_steps, kind,
                                         np.random.default_rng(i))
    result = coupled_rollout(env_id, actors, seeds, horizon, num_envs=num_envs)
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
                        n_pairs: int = 2000, seed: int = 0) -> dict[str, Any]:
    """κ(δ): fraction of state pairs (x, x + δ·v), v a random unit vector and x drawn from
    ``states`` (N, obs_dim), whose quantized expert actions differ by more than k·ε_q (∞-norm).

    A binning quantizer under a Lipschitz expert keeps nearby states in the same or adjacent
    cells, so κ(δ) → 0 as δ → 0 for k ≥ 2 (adjacent codewords are 2ε_q apart); a learned
    quantizer can keep κ(δ) > 0 for arbitrarily small δ.
    """
    rng = np.random.default_rng(seed)
    states = np.asarray(states, dtype=np.float64)
    x = states[rng.integers(0, len(states), n_pairs)]
    v = rng.normal(size=x.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    threshold = k * eps_q
    base = tokenizer.decode(tokenizer.encode(expert.act(x.astype(np.float32))))
    rates = []
    for delta in deltas:
        moved = tokenizer.decode(tokenizer.encode(expert.act((x + delta * v).astype(np.float32))))
        # float32 codewords: adjacent ones may sit a rounding error beyond exactly 2·ε_q apart.
        gap = np.abs(moved.astype(np.float64) - base).max(axis=1)
        rates.append(float(np.mean(gap > threshold * (1 + 1e-5) + 1e-12)))
    return {"deltas": [float(d) for d in deltas], "violation_rate": rates, "k": k,
            "eps_q": float(eps_q), "threshold": float(threshold), "n_pairs": n_pairs}


def bound_shapes(horizons: Sequence[int], n_demos: int, eps_q: float, gamma: float,
                 kappa: float, k: float) -> dict[str, list[float]]:
    """Shapes of the upper bounds (constants 1, log|Π| = 1, δ-terms dropped), per horizon:

    thm2 (stochastic q#π*, TV-continuous, P-EIISS): H·sqrt(1/n) + H²·ε_q
    thm3 (binning, kε_q-RTVC, P-IISS): H/n + H²·κ + H·(γ + (k+1)·ε_q), with γ = γ((k+1)ε_q) and
        κ = κ(γ((k+1)ε_q)) the measured RTVC violation rate at that distance
    thm7 (model-based augmentation): H·(sqrt(2/n) + ε_q)
    """
    h = np.asarray(horizons, dtype=np.float64)
    n = float(n_demos)
    return {
        "horizons": [int(x) for x in h],
        "thm2": (h * np.sqrt(1 / n) + h**2 * eps_q).tolist(),
        "thm3": (h / n + h**2 * kappa + h * (gamma + (k + 1) * eps_q)).tolist(),
        "thm7": (h * (np.sqrt(2 / n) + eps_q)).tolist(),
    }


def certificate(env_id: str, expert: Any, tokenizer: Any, states: np.ndarray,
                actions: np.ndarray, n_demos: int, sizes: Sequence[float],
                deltas: Sequence[float], horizons: Sequence[int], k: float = 2.0,
                horizon: int = 200, seeds: Sequence[int] = range(2_000_000, 2_000_050)
                ) -> dict[str, Any]:
    """Every quantity of the certificate on ``env_id`` under ``expert`` with ``tokenizer``:
    ε_q on the demonstrations' ``actions`` (N, act_dim), the P-IISS gain over ``sizes`` on
    coupled episodes from ``seeds`` of ``horizon`` steps, κ(δ) over ``deltas`` around ``states``
    (N, obs_dim) with threshold ``k``·ε_q, γ and κ at (k+1)·ε_q, and the bound shapes at
    ``horizons`` for ``n_demos`` demonstrations."""
    eps = quantization_error(tokenizer, actions)
    eps_q = used_eps_q(eps)
    gain = piiss_gain(env_id, expert, sizes, seeds, horizon)
    rtvc = rtvc_violation_rate(expert, tokenizer, states, deltas, eps_q, k)
    gamma = _gain_at(gain, (k + 1) * eps_q)
    kappa = float(np.interp(gamma, rtvc["deltas"], rtvc["violation_rate"]))
    return {
        "eps_q": eps, "eps_q_used": eps_q,
        "eps_q_kind": "worst case" if eps["worst_case_bound"] is not None
        else "in distribution (learned quantizer)",
        "piiss": gain, "rtvc": rtvc,
        "gamma_at_(k+1)eps_q": gamma, "kappa_at_gamma": kappa,
        "bound_shapes": bound_shapes(horizons, n_demos, eps_q, gamma, kappa, k),
        "note": "bound shapes use constants 1 and log|Pi| = 1: compare growth, not values",
    }


def _gain_at(gain: dict[str, Any], r: float) -> float:
    """γ(r) from the measured gains: interpolated in log-log inside the grid, the power fit
    outside it."""
    sizes, gains = np.asarray(gain["sizes"]), np.asarray(gain["gains"])
    if not np.all(np.isfinite(gains)):
        return float("inf")
    if sizes[0] <= r <= sizes[-1]:
        return float(np.exp(np.interp(np.log(r), np.log(sizes), np.log(gains))))
    fit = gain["power_fit"]
    if fit is None:
        return float(gains[0] / sizes[0] * r)
    anchor = 0 if r < sizes[0] else -1
    return float(gains[anchor] * (r / sizes[anchor]) ** fit["slope"])
