"""PNG plots of horizon error (matplotlib, off-screen; figures written by
:func:`qbc.infra.figures.save_figure`). Figures are made without pyplot's registry of open
figures, so evaluations running in threads side by side can draw at once. matplotlib is imported
when the first plot is drawn, not with this module: every command that evaluates imports it, and
matplotlib alone takes about 0.4 s to import."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _figure() -> Any:
    """An empty off-screen figure of the plots' size."""
    from matplotlib.figure import Figure

    return Figure(figsize=(5.5, 4))


def _save(fig: Any, path: str | Path) -> Path:
    from qbc.infra.figures import save_figure  # lazy: it imports matplotlib (Agg backend)

    return save_figure(fig, path)


def plot_regret_vs_horizon(metrics: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Regret vs H on log-log axes with 95% intervals, one line per policy (reference left out).

    Non-positive regrets cannot be drawn on a log axis; their points are left out.
    """
    fig = _figure()
    ax = fig.subplots()
    hs = metrics["horizons"]
    for name, per_h in metrics["policies"].items():
        if name == metrics["reference"]:
            continue
        pts = [(h, per_h[str(h)]["regret"], *per_h[str(h)]["regret_ci95"]) for h in hs]
        pts = [p for p in pts if p[1] > 0]
        if not pts:
            continue
        h, m, lo, hi = (list(c) for c in zip(*pts, strict=True))
        yerr = [[max(mi - l, 0) for mi, l in zip(m, lo, strict=True)],
                [max(u - mi, 0) for mi, u in zip(m, hi, strict=True)]]
        ax.errorbar(h, m, yerr=yerr, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("horizon H")
    ax.set_ylabel(f"regret J({metrics['reference']}) − J(policy)")
    ax.set_title(title or "regret vs horizon (95% CI)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, path)


def plot_state_deviation(rows: list[dict[str, Any]], path: str | Path, reference: str,
                         title: str = "") -> Path:
    """Mean state deviation ‖x_t − x*_t‖ against t, one line per policy."""
    fig = _figure()
    ax = fig.subplots()
    names = sorted({r["policy"] for r in rows} - {reference})
    for name in names:
        pts = [(r["t"], r["state_dev_mean"]) for r in rows if r["policy"] == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("step t")
    ax.set_ylabel(f"mean ‖x_t − x*_t‖ (vs {reference})")
    ax.set_title(title or "state deviation over time")
    ax.grid(True, alpha=0.3)
    if names:
        ax.legend()
    return _save(fig, path)
