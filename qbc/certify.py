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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.io import atomic_write_json, output_dir
from qbc.rollout import coupled_rollout, fit_growth
from qbc.validate import (
    AT_LEAST_ONE,
    POSITIVE,
    SEED_LIMIT,
    Rule,
    check_all,
    check_config,
    split_list_flag,
)


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

    def reset(self) -> None:
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


# -- the `qbc certify` command -------------------------------------------------------------------
@dataclass
class CertifyConfig:
    """Measure ε_q, the P-IISS gain and the RTVC violation rate, and evaluate the shapes of the
    theory's bounds with them (beside measured regret when a rollout is given)."""

    dataset: str
    """Minari dataset id of the expert demonstrations."""
    out: Path
    """output directory (certificate.json)."""
    env: str | None = None
    """env id; default: the dataset's env."""
    expert: str | None = None
    """expert name (lqr, linear, arctan, sb3); default: the expert that collected the dataset
    (recorded in its metadata), else lqr."""
    expert_path: Path | None = None
    """saved model for an sb3 expert (also replaces the path of the dataset's sb3 expert)."""
    expert_params: str = "{}"
    """expert parameters as a JSON object (replace the dataset expert's parameters of the same
    name)."""
    tokenizer: Path | None = None
    """tokenizer JSON; without it one is fitted on the dataset's actions with --quantizer/--bins."""
    quantizer: str = "uniform"
    """registry quantizer to fit when no --tokenizer is given."""
    bins: int = 64
    """bins of that quantizer."""
    sizes: tuple[str, ...] = ("0.01", "0.03", "0.1", "0.3")
    """perturbation sizes r for the P-IISS gain (space- or comma-separated)."""
    deltas: tuple[str, ...] = ("0.001", "0.003", "0.01", "0.03", "0.1")
    """state distances δ for the RTVC violation rate (space- or comma-separated)."""
    k: float = 2.0
    """RTVC threshold in units of ε_q (codewords more than k·ε_q apart count as a violation)."""
    horizon: int = 200
    """horizon of the gain measurement."""
    episodes: int = 50
    """coupled episodes per perturbation size."""
    horizons: tuple[str, ...] = ("10", "20", "50", "100", "200", "500")
    """horizons at which to evaluate the bound shapes (space- or comma-separated)."""
    rollout: Path | None = None
    """a `qbc rollout` output directory whose measured regret is put beside the bounds."""
    seed: int = 2_000_000
    """first episode seed of the gain measurement."""
    overwrite: bool = False
    """replace an existing output directory."""
    drop_nonfinite: bool = False
    """drop episodes with NaN/inf observations or actions instead of refusing the dataset."""


def _floats(text: str | tuple[str, ...], flag: str) -> list[float]:
    """"0.1,0.3" or ("0.1", "0.3") -> [0.1, 0.3], sorted; positive finite numbers only."""
    items = split_list_flag(text)
    text = ",".join(items)  # as the messages show it
    try:
        values = [float(v) for v in items]
    except ValueError:
        raise InvalidValueError(f"{flag} must be numbers like 0.1 0.3 (or 0.1,0.3), got "
                                f"{text!r}") from None
    if not values or min(values) <= 0 or not np.all(np.isfinite(values)):
        raise InvalidValueError(f"{flag} must be positive finite numbers, got {text!r}")
    return sorted(values)


#: Ranges of the numeric flags (floats are also checked finite, seeds in [0, 2^32)).
RULES = {"k": POSITIVE, "bins": Rule(lo=2, integer=True), "horizon": Rule(lo=2, integer=True),
         "episodes": AT_LEAST_ONE}


def open_inputs(cfg: CertifyConfig) -> dict[str, Any]:
    """Check every flag and open every input, before anything is written."""
    from qbc.collect import expert_params_from
    from qbc.data import check_compatible, load_demonstrations
    from qbc.expert_choice import build_expert, choose_expert
    from qbc.gym_utils import make_env
    from qbc.io import read_json
    from qbc.rollout import check_rollout_memory
    from qbc.rollout_cli import parse_horizons
    from qbc.tokenizer import ActionTokenizer

    check_config(cfg, RULES)
    check_all([(cfg.seed + cfg.episodes <= SEED_LIMIT,
                f"--seed + --episodes must stay below 2^32, got {cfg.seed} + {cfg.episodes}")])
    sizes, deltas = _floats(cfg.sizes, "--sizes"), _floats(cfg.deltas, "--deltas")
    horizons = parse_horizons(cfg.horizons)
    metrics = (None if cfg.rollout is None else
               read_json(Path(cfg.rollout) / "metrics.json", what="rollout metrics"))
    if metrics is not None and not (isinstance(metrics, dict) and "reference" in metrics
                                    and isinstance(metrics.get("policies"), dict)):
        raise CorruptFileError(f"{Path(cfg.rollout) / 'metrics.json'} is not the metrics.json "
                               "of qbc rollout (no 'policies' and 'reference')")
    demos = load_demonstrations(cfg.dataset, drop_nonfinite=cfg.drop_nonfinite)
    env_id = cfg.env or demos.env_id
    if env_id is None:
        raise InvalidValueError("the dataset does not record its env: give --env")
    env = make_env(env_id)
    try:
        check_compatible(demos, env.observation_space, env.action_space)
    finally:
        env.close()
    check_rollout_memory(env_id, len(sizes) + 1, cfg.episodes, cfg.horizon,
                         "use fewer --episodes, --sizes or a shorter --horizon")
    tok = (ActionTokenizer.load(cfg.tokenizer) if cfg.tokenizer is not None else
           ActionTokenizer.fit(demos.actions, quantizer=cfg.quantizer, n_bins=cfg.bins))
    choice = choose_expert(cfg.expert, cfg.expert_path,
                           expert_params_from(cfg.expert_params, None), cfg.dataset)
    expert = build_expert(choice, env_id)
    return {"sizes": sizes, "deltas": deltas, "horizons": horizons, "metrics": metrics,
            "demos": demos, "env_id": env_id, "tok": tok, "expert": expert, "choice": choice}


def run_certify(cfg: CertifyConfig) -> dict[str, Any]:
    inp = open_inputs(cfg)
    with output_dir(cfg.out, cfg.overwrite, "certify") as out:
        cert = certificate(cfg, **inp)
        atomic_write_json(out / "certificate.json", cert)
        atomic_write_json(out / "config.json", {k: str(v) if isinstance(v, Path) else v
                                                for k, v in asdict(cfg).items()})
    print(format_certificate(cert))
    print(f"saved {cfg.out / 'certificate.json'}")
    return cert


def certificate(cfg: CertifyConfig, sizes: list[float], deltas: list[float],
                horizons: list[int], metrics: dict[str, Any] | None, demos: Any, env_id: str,
                tok: Any, expert: Any, choice: Any) -> dict[str, Any]:
    """The certificate of ``cfg`` from its opened inputs (:func:`open_inputs`)."""
    eps = quantization_error(tok, demos.actions)
    eps_q = eps["worst_case_bound"] if eps["worst_case_bound"] is not None \
        else eps["in_distribution_mean"]
    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    gain = piiss_gain(env_id, expert, sizes, seeds, cfg.horizon)
    rtvc = rtvc_violation_rate(expert, tok, demos.observations, deltas, eps_q, cfg.k)
    r_star = (cfg.k + 1) * eps_q
    gamma = _gain_at(gain, r_star)
    kappa = float(np.interp(gamma, rtvc["deltas"], rtvc["violation_rate"]))
    cert = {
        "env_id": env_id, "dataset": cfg.dataset, "expert": choice.name,
        "expert_spec": choice.to_dict(),
        "tokenizer": {"quantizer": tok.quantizer, "vocab_size": tok.vocab_size},
        "n_demos": int(demos.n_episodes), "eps_q": eps, "eps_q_used": eps_q,
        "eps_q_kind": "worst case" if eps["worst_case_bound"] is not None
        else "in distribution (learned quantizer)",
        "piiss": gain, "rtvc": rtvc,
        "gamma_at_(k+1)eps_q": gamma, "kappa_at_gamma": kappa,
        "bound_shapes": bound_shapes(horizons, demos.n_episodes, eps_q, gamma, kappa, cfg.k),
        "note": "bound shapes use constants 1 and log|Pi| = 1: compare growth, not values",
    }
    if metrics is not None:
        cert["measured_regret"] = {
            name: {h: per_h[h]["regret"] for h in per_h}
            for name, per_h in metrics["policies"].items() if name != metrics["reference"]
        }
    return cert


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


def format_certificate(cert: dict[str, Any]) -> str:
    e, g, r = cert["eps_q"], cert["piiss"], cert["rtvc"]
    bound = "-" if e["worst_case_bound"] is None else f"{e['worst_case_bound']:.4g}"
    lines = [
        f"certificate: {cert['env_id']}, expert {cert['expert']}, tokenizer "
        f"{cert['tokenizer']['quantizer']} ({cert['tokenizer']['vocab_size']} levels), "
        f"{cert['n_demos']} demos",
        f"eps_q: worst case {bound}, in-distribution mean {e['in_distribution_mean']:.4g} / "
        f"max {e['in_distribution_max']:.4g} (using {cert['eps_q_used']:.4g}, "
        f"{cert['eps_q_kind']})",
        "P-IISS gain: " + ", ".join(f"γ({s:g})={v:.4g}" for s, v in zip(g["sizes"], g["gains"],
                                                                        strict=True))
        + f"; {g['verdict']}",
        f"RTVC violation rate (k={r['k']:g}): " + ", ".join(
            f"κ({d:g})={v:.3f}" for d, v in zip(r["deltas"], r["violation_rate"], strict=True)),
        f"γ((k+1)ε_q) = {cert['gamma_at_(k+1)eps_q']:.4g}, κ there = {cert['kappa_at_gamma']:.3f}",
        f"{'H':>6}{'thm2 shape':>13}{'thm3 shape':>13}{'thm7 shape':>13}"
        + "".join(f"{n[:16]:>18}" for n in cert.get("measured_regret", {})),
    ]
    b = cert["bound_shapes"]
    for i, h in enumerate(b["horizons"]):
        measured = "".join(f"{m.get(str(h), float('nan')):>18.4g}"
                           for m in cert.get("measured_regret", {}).values())
        lines.append(f"{h:>6}{b['thm2'][i]:>13.4g}{b['thm3'][i]:>13.4g}{b['thm7'][i]:>13.4g}"
                     + measured)
    lines.append("(bound shapes: constants set to 1 — compare their growth in H, not values)")
    return "\n".join(lines)


def _command():
    from qbc.cli import Command

    return Command(CertifyConfig, run_certify,
                   "measure ε_q, P-IISS gain, RTVC rate and the bounds' shapes")


CERTIFY_COMMAND = _command()
