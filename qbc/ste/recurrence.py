"""``qbc ste recurrence``: STE with label noise on the two-layer binary network. With noise the
STE gradient at w* is no longer zero, so the iterate drifts off w* and is pushed back: we count
the returns of sign(w^t) to w* and the fraction of iterations spent there, per noise level.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, check_config
from qbc.ste._outputs import write_config, write_csv
from qbc.ste.twolayer import TwoLayerModel, check_problem_memory, make_problem, run_ste


def _default_model() -> TwoLayerModel:
    return TwoLayerModel(m=128, iters=2000, lr=0.1)


@dataclass
class RecurrenceConfig:
    """Noisy STE runs on one (n, N): ‖w^t − w*‖ and the loss against t, returns to w*."""

    out: Path = Path("runs/ste_recurrence")
    """output folder (recurrence.csv, traces.csv, recurrence.png, config.json)."""
    n: int = 25
    """input dimension."""
    N: int = 140
    """number of samples."""
    noise: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)
    """label-noise std levels, in units of ‖v‖ (the std of the noiseless label)."""
    trials: int = 8
    """seeded trials per noise level (the plot shows trial 0)."""
    seed: int = 0
    """seed; every noise level uses the same data and w*, only the noise draw differs."""
    model: TwoLayerModel = field(default_factory=_default_model)
    """the two-layer model and the STE iteration (its noise field is replaced by --noise)."""
    overwrite: bool = False
    """replace an existing output folder."""


def count_returns(hamming: np.ndarray, start_at_opt: np.ndarray | None = None) -> np.ndarray:
    """Entries into sign(w) = w* along each trace. ``hamming`` (B, T) counts the wrong signs of
    w^1..w^T; a return is a step where it becomes 0 from > 0 (the first hit counts as one when the
    run did not start at w*). Returns (B,) ints."""
    at = hamming == 0
    before = np.zeros(len(at), dtype=bool) if start_at_opt is None else start_at_opt
    prev = np.concatenate([before[:, None], at[:, :-1]], axis=1)
    return (at & ~prev).sum(axis=1)


def recurrence(cfg: RecurrenceConfig) -> list[dict[str, Any]]:
    """Check ``cfg``, run every noise level and write recurrence.csv, traces.csv,
    recurrence.png and config.json into ``cfg.out``; returns one row per (noise level, trial)."""
    check_config(cfg, {"n": AT_LEAST_ONE, "N": AT_LEAST_ONE, "trials": AT_LEAST_ONE})
    if not cfg.noise or min(cfg.noise) < 0:
        raise InvalidValueError("--noise needs one or more levels >= 0")
    if cfg.trials < 1:
        raise InvalidValueError(f"--trials must be >= 1, got {cfg.trials}")
    cfg.model.validate()
    check_problem_memory(cfg.model, cfg.n, cfg.N, cfg.trials,
                         "use smaller --n, --N, --trials or --model.m")
    with output_dir(cfg.out, cfg.overwrite, "ste recurrence") as out:
        write_config(out, cfg)
        rows, traces = run_levels(cfg)
        write_csv(out / "recurrence.csv", rows)
        T = cfg.model.iters
        trace_rows = [{"t": t + 1, **{f"{k}_noise{lv:g}": float(traces[lv][i][t])
                                      for lv in cfg.noise
                                      for i, k in enumerate(("distance", "loss", "hamming"))}}
                      for t in range(T)]
        write_csv(out / "traces.csv", trace_rows)
        plot_traces(traces, cfg, out / "recurrence.png")
    return rows


def run_levels(cfg: RecurrenceConfig) -> tuple[list[dict[str, Any]], dict[float, tuple]]:
    """Run every noise level: (one row per trial, trial 0's distance/loss/hamming traces per
    level)."""
    rows, traces = [], {}
    for level in progress_bar(cfg.noise, desc="ste recurrence", unit="noise level"):
        model = dataclasses.replace(cfg.model, noise=float(level))
        problem = make_problem(model, cfg.n, cfg.N, cfg.trials, seed=cfg.seed)
        run = run_ste(model, problem, record=True)
        start = (np.where(problem.w0.numpy() >= 0, 1.0, -1.0) == problem.w_star.numpy()).all(1)
        returns = count_returns(run.hamming, start)
        at_opt = run.hamming == 0
        first = np.where(at_opt.any(1), at_opt.argmax(1) + 1, -1)
        for b in range(cfg.trials):
            rows.append({"noise": level, "trial": b, "returns": int(returns[b]),
                         "time_at_opt": float(at_opt[b].mean()),
                         "first_hit": int(first[b]),
                         "final_hamming": int(run.hamming[b, -1]),
                         "min_distance": float(run.distance[b].min()),
                         "mean_loss_last_half": float(run.loss[b, cfg.model.iters // 2:].mean()),
                         "ergodic_recovered": bool(run.recovered_ergodic[b]),
                         "last_recovered": bool(run.recovered_last[b])})
        traces[level] = (run.distance[0], run.loss[0], run.hamming[0])
    return rows, traces


def plot_traces(traces: dict[float, tuple[np.ndarray, ...]], cfg: RecurrenceConfig, path: Path
                ) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for level, (dist, loss, ham) in traces.items():
        t = np.arange(1, len(dist) + 1)
        axes[0].plot(t, dist, lw=0.8, label=f"noise {level:g}")
        axes[1].plot(t, loss, lw=0.8)
        axes[2].plot(t, 2.0 * np.sqrt(ham), lw=0.8)  # ‖sign(w) − w*‖ = 2·sqrt(#wrong signs)
    axes[0].set_ylabel("‖w^t − w*‖ (latent)")
    axes[1].set_ylabel("L(sign(w^t))")
    axes[1].set_yscale("symlog", linthresh=1e-2)
    axes[2].set_ylabel("‖sign(w^t) − w*‖")
    axes[2].set_xlabel("iteration t")
    axes[0].set_title(f"STE, m={cfg.model.m}, n={cfg.n}, N={cfg.N} (trial 0)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)
