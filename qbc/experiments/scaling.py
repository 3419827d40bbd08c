"""How the quantized expert's horizon error scales with H and with the bin width.

The quantized expert q#π* has no learning error, so its regret isolates what quantization alone
costs. On a stable system, with a binning quantizer, the theory bounds its regret linearly in H
(no compounding) and its state deviation by the P-IISS gain of the bin width (proportional to it
on a linear system); that the regret itself is second order in the bin width near an expert
optimal for a quadratic cost (the cost is flat at the optimum) is qbc's heuristic, not the
papers', and what this module measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents import make_expert
from qbc.infra.files import atomic_write_json
from qbc.infra.progress import Log, silent
from qbc.rollout.coupled import QuantizedExpert, coupled_rollout
from qbc.rollout.evaluate import evaluate_actors
from qbc.rollout.growth import fit_growth
from qbc.tokenizer import ActionTokenizer


def quantized_expert_scaling(env_id: str, expert: Any, bins: Sequence[int],
                             horizons: Sequence[int], episodes: int = 200,
                             quantizer: str = "uniform", fit_episodes: int = 100,
                             seed: int = 0, env_kwargs: dict[str, Any] | None = None
                             ) -> dict[str, Any]:
    """For each bin count: fit the tokenizer on ``fit_episodes`` expert episodes, roll the
    quantized expert out against the expert on ``episodes`` fresh seeds up to max(horizons).

    ``env_kwargs`` go to the env (e.g. ``{"x0_std": 0.1}`` to start near the closed loop's
    stationary spread, so that a start-up transient does not bend the fit at small H).
    Returns ``rows`` (per bin count: bin width, regret at each H with 95% CI, the power-law slope
    of regret against H, mean state deviation at the largest H) and the log-log slopes of state
    deviation and of regret against the bin width.
    """
    horizons = sorted(int(h) for h in horizons)
    fit_run = coupled_rollout(env_id, {"expert": expert}, range(seed, seed + fit_episodes),
                              max(horizons[0], 50), env_kwargs=env_kwargs)
    actions = fit_run.actions["expert"].reshape(-1, fit_run.actions["expert"].shape[-1])
    rows = []
    for k in bins:
        tok = ActionTokenizer.fit(actions, quantizer=quantizer, n_bins=int(k))
        m = evaluate_actors(env_id, {"expert": expert, "quantized": QuantizedExpert(expert, tok)},
                            seed + 1_000_000, episodes, horizons,
                            env_kwargs=env_kwargs).policies["quantized"]
        regrets = [m[str(h)]["regret"] for h in horizons]
        width = float(np.max([q.error_bound for q in tok.quantizers_]) * 2)
        rows.append({
            "bins": int(k), "bin_width": width,
            "regret": regrets, "regret_ci95": [m[str(h)]["regret_ci95"] for h in horizons],
            "regret_slope_vs_H": fit_growth(horizons, regrets)["power"],
            "state_dev_mean": m[str(horizons[-1])]["state_dev_mean"],
        })
    widths = np.log([r["bin_width"] for r in rows])

    def slope(ys: list[float]) -> float | None:
        return float(np.polyfit(widths, np.log(ys), 1)[0]) if len(rows) > 1 else None

    return {
        "env_id": env_id, "env_kwargs": env_kwargs or {}, "quantizer": quantizer,
        "horizons": horizons, "rows": rows,
        "state_dev_slope_vs_width": slope([r["state_dev_mean"] for r in rows]),
        "regret_slope_vs_width": slope([r["regret"][-1] for r in rows]),
    }


def format_scaling(res: dict[str, Any]) -> str:
    hs = res["horizons"]
    lines = [f"quantized expert ({res['quantizer']}) vs expert on {res['env_id']}",
             f"{'bins':>5}{'width':>9}" + "".join(f"{'R(H=' + str(h) + ')':>12}" for h in hs)
             + f"{'slope vs H':>22}{'dev mean':>10}"]
    for r in res["rows"]:
        p = r["regret_slope_vs_H"]
        fit = f"{p['slope']:.3f} [{p['ci95'][0]:.2f},{p['ci95'][1]:.2f}]" if p else "-"
        lines.append(f"{r['bins']:>5}{r['bin_width']:>9.4f}"
                     + "".join(f"{x:>12.4g}" for x in r["regret"]) + f"{fit:>22}"
                     + f"{r['state_dev_mean']:>10.4g}")
    lines.append("log-log slope vs bin width: state deviation "
                 f"{res['state_dev_slope_vs_width']:.3f}, "
                 f"regret at H={hs[-1]} {res['regret_slope_vs_width']:.3f}")
    return "\n".join(lines)


def plot_scaling(res: dict[str, Any], path) -> Any:
    """Two panels: regret vs H per bin count (log-log), and state deviation and regret at the
    largest H against the bin width (log-log)."""
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    hs = res["horizons"]
    for i, r in enumerate(res["rows"]):
        lo = [max(r["regret"][j] - c[0], 0) for j, c in enumerate(r["regret_ci95"])]
        hi = [max(c[1] - r["regret"][j], 0) for j, c in enumerate(r["regret_ci95"])]
        left.errorbar(hs, r["regret"], yerr=[lo, hi], marker="o", capsize=3, color=f"C{i}",
                      label=f"{r['bins']} bins (width {r['bin_width']:.3g})")
    left.set(xscale="log", yscale="log", xlabel="horizon H", ylabel="regret of q#π* (95% CI)",
             title=f"{res['env_id']}: quantized expert")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    widths = [r["bin_width"] for r in res["rows"]]
    right.plot(widths, [r["state_dev_mean"] for r in res["rows"]], "o-",
               label=f"mean state deviation (slope {res['state_dev_slope_vs_width']:.2f})")
    right.plot(widths, [r["regret"][-1] for r in res["rows"]], "s-",
               label=f"regret at H={hs[-1]} (slope {res['regret_slope_vs_width']:.2f})")
    right.set(xscale="log", yscale="log", xlabel="bin width", title="scaling with the bin width")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    return save_figure(fig, path)


@dataclass
class ScalingConfig:
    """Regret of the quantized expert against H and against the bin width (writes a JSON file
    and a plot beside it)."""

    env: str = "qbc/ScalarStable-v0"
    """env id."""
    expert: str = "lqr"
    """expert name."""
    quantizer: str = "uniform"
    """registry quantizer."""
    bins: tuple[int, ...] = (8, 16, 32, 64)
    """bin counts."""
    horizons: tuple[int, ...] = (50, 100, 200, 500, 1000)
    """horizons H."""
    episodes: int = 200
    """coupled evaluation episodes per bin count."""
    x0_std: float | None = None
    """initial-state spread (default: the env's; small values start near stationarity)."""
    out: Path = Path("runs/quantized_expert_scaling.json")
    """where to write the results (JSON); the plot goes beside it (.png)."""


def run_scaling(cfg: ScalingConfig, log: Log = silent) -> dict[str, Any]:
    """:func:`quantized_expert_scaling` with ``cfg``: writes ``cfg.out`` (JSON) and the plot
    beside it (.png), gives ``log`` the table; returns the results."""
    res = quantized_expert_scaling(cfg.env, make_expert(cfg.expert, cfg.env), cfg.bins,
                                   cfg.horizons, episodes=cfg.episodes, quantizer=cfg.quantizer,
                                   env_kwargs=None if cfg.x0_std is None
                                   else {"x0_std": cfg.x0_std})
    atomic_write_json(cfg.out, res)
    plot_scaling(res, cfg.out.with_suffix(".png"))
    log(format_scaling(res))
    log(f"saved {cfg.out} and {cfg.out.with_suffix('.png')}")
    return res
