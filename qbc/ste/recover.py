"""``qbc ste recover``: recovery rate of the STE iterates over a grid of (n, N), the sample size
N50 at which it crosses 50%, and the fitted exponent of N50 against n.

The paper's sufficient condition is N ≳ n² (Jeong, Xin & Yin, for the ergodic iterate: an upper
bound on the samples needed); whether the measured threshold grows like n² or like n depends on
the modelling choices of
:class:`~qbc.ste.twolayer.TwoLayerModel`, all of which are flags (``--model.m``, ``--model.lr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.infra.files import atomic_write_json, json_safe
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, Rule, check_config
from qbc.ste._outputs import write_config, write_csv
from qbc.ste.twolayer import TwoLayerModel, check_problem_memory, recovery_trials

KINDS = ("ergodic", "last")


@dataclass
class RecoverConfig:
    """Sweep n and N with seeded trials; record ergodic and last-iterate recovery (noiseless)."""

    out: Path = Path("runs/ste_recover")
    """output folder (CSV tables, plots, summary.json, config.json)."""
    n: tuple[int, ...] = (8, 12, 16, 24, 32, 48)
    """input dimensions n."""
    ratios: tuple[float, ...] = tuple(round(2 ** (k / 2), 3) for k in range(-4, 13))
    """grid of N/n (N is rounded to an integer >= 1); 0.25 .. 64 by default."""
    stop_after: int = 2
    """skip the rest of a row once this many consecutive grid points have both rates >= 0.95
    (0: never skip); assumes recovery only grows with N."""
    trials: int = 40
    """seeded trials per (n, N) cell."""
    seed: int = 0
    """base seed; cell (n, N) uses its own seed derived from it."""
    bootstrap: int = 300
    """parametric-bootstrap resamples for the intervals of N50 and of the exponent."""
    model: TwoLayerModel = field(default_factory=TwoLayerModel)
    """the two-layer model and the STE iteration (noise should stay 0 here)."""
    overwrite: bool = False
    """replace an existing output folder."""


def cell_seed(seed: int, n: int, N: int) -> int:
    """Seed of one (n, N) cell: independent of the grid and of the other cells."""
    return int(np.random.SeedSequence([seed, n, N]).generate_state(1)[0])


def sweep(cfg: RecoverConfig) -> list[dict[str, Any]]:
    """Recovery rates for every (n, N) cell of the grid: rows with n, N, ratio, trials,
    ergodic (successes), last (successes), ergodic_rate, last_rate."""
    rows: list[dict[str, Any]] = []
    cells = [(n, r) for n in cfg.n for r in cfg.ratios]
    bar = progress_bar(total=len(cells), desc="ste recover", unit="cell")
    for n in cfg.n:
        done_streak, seen = 0, set()
        for ratio in sorted(cfg.ratios):
            bar.update(1)
            N = max(1, int(round(ratio * n)))
            if N in seen or (cfg.stop_after and done_streak >= cfg.stop_after):
                continue
            seen.add(N)
            erg, last = recovery_trials(cfg.model, n, N, cfg.trials, cell_seed(cfg.seed, n, N))
            rows.append({"n": n, "N": N, "ratio": N / n, "trials": cfg.trials,
                         "ergodic": int(erg.sum()), "last": int(last.sum()),
                         "ergodic_rate": float(erg.mean()), "last_rate": float(last.mean())})
            done_streak = done_streak + 1 if min(erg.mean(), last.mean()) >= 0.95 else 0
            bar.set_postfix(n=n, N=N, erg=f"{erg.mean():.2f}", last=f"{last.mean():.2f}")
    bar.close()
    return rows


def crossing(N: np.ndarray, rate: np.ndarray, level: float = 0.5) -> float:
    """Sample size where the recovery rate crosses ``level``: the rate is first made monotone in
    N (isotonic regression), then interpolated linearly in log N. NaN when it never crosses
    inside the grid."""
    from sklearn.isotonic import IsotonicRegression

    order = np.argsort(N)
    logN = np.log(np.asarray(N, dtype=np.float64)[order])
    fit = IsotonicRegression(increasing=True).fit_transform(logN, np.asarray(rate)[order])
    above = np.nonzero(fit >= level)[0]
    if len(above) == 0 or above[0] == 0:
        return math.nan if len(above) == 0 else float(np.exp(logN[0]))
    k = above[0]
    lo, hi = fit[k - 1], fit[k]
    frac = (level - lo) / (hi - lo)
    return float(np.exp(logN[k - 1] + frac * (logN[k] - logN[k - 1])))


def n50_table(rows: list[dict[str, Any]], kind: str) -> dict[int, float]:
    """N50 per n for ``kind`` in ('ergodic', 'last')."""
    out = {}
    for n in sorted({r["n"] for r in rows}):
        sub = [r for r in rows if r["n"] == n]
        out[n] = crossing(np.array([r["N"] for r in sub]),
                          np.array([r[f"{kind}_rate"] for r in sub]))
    return out


def fit_exponent(n50: dict[int, float]) -> tuple[float, float]:
    """Least-squares slope and intercept of log N50 against log n (finite entries only)."""
    ns = np.array([n for n, v in n50.items() if np.isfinite(v)], dtype=np.float64)
    vs = np.array([v for v in n50.values() if np.isfinite(v)], dtype=np.float64)
    if len(ns) < 2:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log(ns), np.log(vs), 1)
    return float(slope), float(intercept)


def bootstrap_exponent(rows: list[dict[str, Any]], kind: str, resamples: int, seed: int
                       ) -> dict[str, Any]:
    """Parametric bootstrap: redraw every cell's successes as Binomial(trials, observed rate),
    recompute N50 per n and the exponent. Returns percentile 95% intervals."""
    rng = np.random.default_rng(seed)
    ns = sorted({r["n"] for r in rows})
    slopes, n50s = [], {n: [] for n in ns}
    for _ in range(resamples):
        fake = [{**r, f"{kind}_rate": rng.binomial(r["trials"], r[f"{kind}_rate"]) / r["trials"]}
                for r in rows]
        table = n50_table(fake, kind)
        for n in ns:
            n50s[n].append(table[n])
        slopes.append(fit_exponent(table)[0])
    slopes_arr = np.array(slopes)
    finite = slopes_arr[np.isfinite(slopes_arr)]

    def interval(a: np.ndarray) -> list[float]:
        a = a[np.isfinite(a)]
        return [float(x) for x in np.percentile(a, [2.5, 97.5])] if len(a) else [math.nan] * 2

    return {"exponent_ci95": interval(finite),
            "n50_ci95": {n: interval(np.array(v)) for n, v in n50s.items()}}


def plot_recovery(rows: list[dict[str, Any]], out: Path, x: str) -> Path:
    """Recovery rate against N (``x='N'``), N/n (``'N/n'``) or N/n² (``'N/n2'``): one panel per
    kind, one curve per n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind in zip(axes, KINDS, strict=True):
        for n in sorted({r["n"] for r in rows}):
            sub = sorted((r for r in rows if r["n"] == n), key=lambda r: r["N"])
            N = np.array([r["N"] for r in sub], dtype=np.float64)
            xs = {"N": N, "N/n": N / n, "N/n2": N / n**2}[x]
            ax.plot(xs, [r[f"{kind}_rate"] for r in sub], marker="o", ms=3, label=f"n={n}")
        ax.set_xscale("log")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel({"N": "N (samples)", "N/n": "N / n", "N/n2": "N / n²"}[x])
        ax.set_title(f"{kind} iterate")
    axes[0].set_ylabel("recovery rate")
    axes[1].legend(fontsize=8)
    name = {"N": "recovery_vs_N.png", "N/n": "recovery_vs_N_over_n.png",
            "N/n2": "recovery_vs_N_over_n2.png"}[x]
    return save_figure(fig, out / name)


def plot_n50(n50: dict[str, dict[int, float]], fits: dict[str, tuple[float, float]], out: Path
             ) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind, marker in zip(KINDS, ("o", "s"), strict=True):
        ns = np.array(sorted(n50[kind]), dtype=np.float64)
        ax.plot(ns, [n50[kind][int(n)] for n in ns], marker, label=f"{kind} N50")
        slope, icpt = fits[kind]
        if np.isfinite(slope):
            ax.plot(ns, np.exp(icpt) * ns**slope, "-", lw=1, label=f"{kind} fit: n^{slope:.2f}")
    ns = np.array(sorted(n50["last"]), dtype=np.float64)
    ax.plot(ns, ns, "k:", lw=0.8, label="N = n")
    ax.plot(ns, ns**2, "k--", lw=0.8, label="N = n²")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("n")
    ax.set_ylabel("N50")
    ax.legend(fontsize=8)
    return save_figure(fig, out / "n50_vs_n.png")


def recover(cfg: RecoverConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Check ``cfg``, run the sweep and write recovery.csv, n50.csv, summary.json, config.json
    and the plots into ``cfg.out``; returns (N50 rows, one per n; the summary: per kind the
    exponent of N50 ~ n^a with its 95% interval and N50 per n)."""
    check_config(cfg, {"trials": AT_LEAST_ONE, "stop_after": Rule(lo=0, integer=True),
                       "bootstrap": Rule(lo=0, integer=True)})
    if not cfg.n or not cfg.ratios or min(cfg.n) < 1 or min(cfg.ratios) <= 0:
        raise InvalidValueError("--n and --ratios need positive entries")
    if cfg.trials < 1:
        raise InvalidValueError(f"--trials must be >= 1, got {cfg.trials}")
    cfg.model.validate()
    n_max = max(cfg.n)
    check_problem_memory(cfg.model, n_max, max(1, int(round(max(cfg.ratios) * n_max))),
                         cfg.trials, "use smaller --n, --ratios, --trials or --model.m")
    with output_dir(cfg.out, cfg.overwrite, "ste recover") as out:
        return _recover_into(out, cfg)


def _recover_into(out: Path, cfg: RecoverConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the sweep and write its tables and plots into ``out``: (N50 rows, summary)."""
    write_config(out, cfg)
    rows = sweep(cfg)
    write_csv(out / "recovery.csv", rows)
    n50 = {kind: n50_table(rows, kind) for kind in KINDS}
    fits = {kind: fit_exponent(n50[kind]) for kind in KINDS}
    boots = {kind: bootstrap_exponent(rows, kind, cfg.bootstrap, cfg.seed) for kind in KINDS}
    n50_rows = [{"n": n, **{f"N50_{k}": n50[k][n] for k in KINDS},
                 **{f"N50_{k}_lo": boots[k]["n50_ci95"][n][0] for k in KINDS},
                 **{f"N50_{k}_hi": boots[k]["n50_ci95"][n][1] for k in KINDS},
                 **{f"N50_{k}_over_n": n50[k][n] / n for k in KINDS}} for n in sorted(n50["last"])]
    write_csv(out / "n50.csv", n50_rows)
    summary = {kind: {"exponent": fits[kind][0], "exponent_ci95": boots[kind]["exponent_ci95"],
                      "n50": {str(n): v for n, v in n50[kind].items()}} for kind in KINDS}
    summary["paper_claim"] = "N ≳ n² suffices for the ergodic iterate (exponent 2, an upper bound)"
    atomic_write_json(out / "summary.json", json_safe(summary))
    for x in ("N", "N/n", "N/n2"):
        plot_recovery(rows, out, x)
    plot_n50(n50, fits, out)
    return n50_rows, summary
