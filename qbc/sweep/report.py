"""A sweep's report: the result table aggregated over seeds, growth fits, plots
(``qbc sweep report DIR``).

Outputs, beside results.csv:

    summary.csv               one row per (env, expert, quantizer, bins, n_demos, policy, H)
                              — and chunk_tokenizer, chunk_len, execution when the sweep has
                              chunk policies: mean regret over seeds with a 95% Student-t
                              interval (chunk rows: also tokens per chunk, decode failures;
                              where the env reports success: the success rate with its 95%
                              interval and the expert's, :func:`success_summary`)
    report.md                 the same as a markdown table, plus regret ~ c·H^p fits
    regret_vs_H.png           log-log, one panel per env (and expert), one line per setting
    regret_vs_bin_width.png   at the largest H (when the grid has several bin counts)
    regret_vs_n_demos.png     at the largest H (when the grid has several n_demos)
    regret_vs_chunk_len.png   at the largest H (when the grid has several chunk lengths k)

Regret can be zero or negative (a policy can beat the expert on finitely many episodes);
those points cannot be drawn on a log axis and are left out of the plots and the fits.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.files import atomic_write_csv, atomic_write_text
from qbc.rollout.growth import PLATEAU_SLOPE, fit_growth
from qbc.rollout.metrics import mean_ci95
from qbc.sweep.rows import QUANTIZED_EXPERT_NEAREST
from qbc.sweep.table import CONFIG_FILE, TABLE_FILE, read_config, read_table, sweep_lock

#: Columns that identify a setting; the seed is what is averaged over.
GROUP = ("env", "expert", "quantizer", "bins", "n_demos", "policy")
#: More setting columns, used when a table has chunk rows (older tables read them as empty).
CHUNK_GROUP = ("chunk_tokenizer", "chunk_len", "execution")
#: Per-setting means reported for chunk rows.
CHUNK_MEANS = ("tokens_per_chunk", "decode_failures", "decode_failure_rate",
               "decode_actions_per_s", "floor_regret", "floor_diverged_fraction")
SUMMARY_COLUMNS = [*GROUP, "H", "n_seeds", "bin_width", "regret_mean", "regret_ci_lo",
                   "regret_ci_hi", "regret_per_step", "state_dev_mean", "diverged_fraction",
                   "val_loss"]
#: More columns where the env reports success (tables without it keep their columns): success
#: is read beside the returns, so those tables show the policy's and the expert's mean return.
SUCCESS_COLUMNS = ("success_mean", "success_ci_lo", "success_ci_hi", "expert_success",
                   "return_mean", "expert_return_mean")


def group_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The setting columns of ``rows``: :data:`GROUP`, plus :data:`CHUNK_GROUP` when any row
    comes from a chunk policy."""
    return (*GROUP, *CHUNK_GROUP) if any(r.get("chunk_len") for r in rows) else GROUP


def summary_columns(group: tuple[str, ...], success: bool = False) -> list[str]:
    """Columns of summary.csv for the setting columns ``group`` (``success``: with
    :data:`SUCCESS_COLUMNS`)."""
    more = list(SUCCESS_COLUMNS) if success else []
    if group == GROUP:
        return SUMMARY_COLUMNS + more
    return [*group, *SUMMARY_COLUMNS[len(GROUP):], *CHUNK_MEANS, *more]


def has_success(rows: list[dict[str, Any]]) -> bool:
    """True when any row (of the table or the summary) carries a success rate."""
    return any(r.get("success") is not None or r.get("success_mean") is not None for r in rows)


def success_summary(g: list[dict[str, Any]]) -> dict[str, Any]:
    """Success of one setting's rows ``g`` (one per seed): the mean of the seeds' rates with a
    95% Student-t interval over seeds clipped to [0, 1] (one seed: its own 95% Wilson interval
    over its episodes), the expert's mean rate, and the policy's and the expert's mean return
    over the seeds."""
    returns = {"return_mean": _mean([r.get("return") for r in g]),
               "expert_return_mean": _mean([r.get("expert_return") for r in g])}
    rates = [r["success"] for r in g if r.get("success") is not None]
    if not rates:
        return {**dict.fromkeys(SUCCESS_COLUMNS), **returns}
    mean, lo, hi = mean_ci95(np.array(rates))
    if len(rates) == 1:
        lo, hi = g[0]["success_ci_lo"], g[0]["success_ci_hi"]
    return {"success_mean": mean, "success_ci_lo": max(lo, 0.0), "success_ci_hi": min(hi, 1.0),
            "expert_success": _mean([r.get("expert_success") for r in g]), **returns}


def _sort_key(key: tuple) -> tuple:
    return tuple((x is None, str(x) if isinstance(x, str) else (0 if x is None else x))
                 for x in key)


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


#: The columns every row of a sweep's table has a number in (a sweep writes them all).
NUMBER_COLUMNS = ("H", "regret", "state_dev_mean", "diverged_fraction")


def _check_numbers(rows: list[dict[str, Any]], table: Path) -> None:
    """CorruptFileError naming the table and column unless every row has its numbers (a table
    written by hand, or by an older qbc, may lack some columns)."""
    for row in rows:
        empty = [c for c in NUMBER_COLUMNS if not isinstance(row.get(c), (int, float))]
        if empty:
            raise CorruptFileError(
                f"{table}: the rows of cell {row.get('cell')!r} have no {', '.join(empty)}; "
                "a sweep writes them all: run the sweep again into a new --out (or restore "
                "the table)")


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds (with a 95% interval of the mean) per setting and H, sorted."""
    group, success = group_columns(rows), has_success(rows)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(row.get(c) for c in (*group, "H"))].append(row)
    out = []
    for key in sorted(groups, key=_sort_key):
        g = groups[key]
        mean, lo, hi = mean_ci95(np.array([r["regret"] for r in g]))
        out.append({
            **dict(zip((*group, "H"), key, strict=True)), "n_seeds": len(g),
            "bin_width": _mean([r["bin_width"] for r in g]),
            "regret_mean": mean, "regret_ci_lo": lo, "regret_ci_hi": hi,
            "regret_per_step": mean / key[-1],
            "state_dev_mean": float(np.mean([r["state_dev_mean"] for r in g])),
            "diverged_fraction": float(np.mean([r["diverged_fraction"] for r in g])),
            "val_loss": _mean([r.get("val_loss") for r in g]),
            **({c: _mean([r.get(c) for r in g]) for c in CHUNK_MEANS} if group != GROUP
               else {}),
            **(success_summary(g) if success else {}),
        })
    return out


def summary_group(summary: list[dict[str, Any]]) -> tuple[str, ...]:
    """The setting columns of aggregated rows (those of :func:`aggregate`)."""
    return (*GROUP, *CHUNK_GROUP) if summary and "execution" in summary[0] else GROUP


def growth_fits(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: the power-law exponent p of mean regret ~ c·H^p (needs >= 3 positive H);
    ``better`` is the better fit, or "no growth detected" (rule:
    :func:`qbc.rollout.growth.fit_growth`)."""
    group = summary_group(summary)
    series: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for s in summary:
        series[tuple(s[c] for c in group)].append((s["H"], s["regret_mean"]))
    fits = []
    for key, pts in series.items():
        hs, vs = zip(*sorted(pts), strict=True)
        fit = fit_growth(hs, vs)
        if fit["power"] is None:
            continue
        fits.append({**dict(zip(group, key, strict=True)), "slope": fit["power"]["slope"],
                     "ci95": fit["power"]["ci95"], "r2": fit["power"]["r2"],
                     "exp_rate": fit["exponential"]["rate"], "better": fit["verdict"],
                     "n_points": fit["n_points"]})
    return fits


# -- outputs --------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _floor_note(summary: list[dict[str, Any]]) -> list[str]:
    """A sentence on which q#π* the quantized-expert rows are, when the table has smooth ones."""
    if not any(s.get("policy") == "quantized-expert" and s.get("quantizer") == "smooth"
               for s in summary):
        return []
    nearest = any(s.get("policy") == QUANTIZED_EXPERT_NEAREST for s in summary)
    return ["The quantized-expert rows of smooth binning round stochastically (seeded by the "
            "cell): the theory's q#π*, the floor of a learner that samples its tokens. "
            + ("The quantized-expert-nearest rows are the same tokenizer with nearest rounding: "
               "the floor of an argmax-decoded learner, the one to compare such a learner with."
               if nearest else
               "The nearest-rounding floor, that of an argmax-decoded learner, is not in this "
               "table (it was made before sweeps added it; `qbc rollout` shows both)."), ""]


_SUCCESS_NOTE = ("Success: the rate at H, mean over seeds with a 95% Student-t interval over "
                 "seeds (one seed: its 95% Wilson interval over episodes); the expert's on the "
                 "same episodes. Return and expert return: mean over seeds of the episodes' "
                 "mean return over H steps, the policy's and the expert's on the same "
                 "episodes.", "")


def _success_cells(s: dict[str, Any]) -> tuple[Any, ...]:
    """The success, expert-success, return and expert-return cells of a summary row ('-' where
    there is none)."""
    returns = (s.get("return_mean"), s.get("expert_return_mean"))
    if s.get("success_mean") is None:
        return "-", "-", *returns
    expert = "-" if s["expert_success"] is None else f"{s['expert_success']:.0%}"
    return (f"{s['success_mean']:.0%} [{s['success_ci_lo']:.0%}, {s['success_ci_hi']:.0%}]",
            expert, *returns)


#: Said under the regret sentence when some setting has one seed (no interval over seeds).
_ONE_SEED_NOTE = ("With one seed there is no interval over seeds: those rows give the mean "
                  "alone, marked (1 seed).", "")
#: Said under the growth fits when some setting's verdict is "no growth detected".
_NO_GROWTH_NOTE = ("\"no growth detected\" replaces the better fit where the power law's 95% "
                   "interval reaches 0, the log-log slope over the upper half of the horizons is "
                   f"below {PLATEAU_SLOPE} (a plateau), or the mean at the largest H is not "
                   "positive (`qbc.rollout.growth.fit_growth`).", "")


def _regret_cell(s: dict[str, Any]) -> str:
    """Mean regret with its interval over seeds, or the mean alone with one seed."""
    if s["n_seeds"] < 2:
        return f"{s['regret_mean']:.4g} (1 seed)"
    return f"{s['regret_mean']:.4g} [{s['regret_ci_lo']:.3g}, {s['regret_ci_hi']:.3g}]"


def markdown(summary: list[dict[str, Any]], fits: list[dict[str, Any]], source: str) -> str:
    group = summary_group(summary)
    means = CHUNK_MEANS if group != GROUP else ()
    success = has_success(summary)
    cols = [*group, "H", "n_seeds", "bin_width", "regret (95% CI)", "regret/step",
            "state dev", "diverged", *means,
            *(("success (95% CI)", "expert success", "return", "expert return")
              if success else ())]
    lines = [f"# Sweep report: {source}", "",
             "Regret J_H(expert) - J_H(policy), mean over seeds with a 95% Student-t interval "
             "of that mean (over seeds; each seed's regret is itself a mean over coupled "
             "episodes).", "",
             *(_ONE_SEED_NOTE if any(s["n_seeds"] < 2 for s in summary) else ()),
             *_floor_note(summary), *(_SUCCESS_NOTE if success else ()),
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for s in summary:
        vals = [*(s[c] for c in group), s["H"], s["n_seeds"], s["bin_width"], _regret_cell(s),
                s["regret_per_step"], s["state_dev_mean"], f"{s['diverged_fraction']:.0%}",
                *(s[c] for c in means), *(_success_cells(s) if success else ())]
        lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    if fits:
        lines += ["", "## Growth of regret with H", "",
                  "Least-squares fit of log(mean regret) on log H (power law, exponent p) and on "
                  "H (exponential); non-positive means are left out.", "",
                  *(_NO_GROWTH_NOTE if any(f["better"] == "no growth detected" for f in fits)
                    else ()),
                  "| " + " | ".join([*group, "p", "p 95% CI", "R^2", "exp. rate", "better fit"])
                  + " |", "|" + "---|" * (len(group) + 5)]
        for f in fits:
            vals = [*(f[c] for c in group), f["slope"],
                    f"[{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}]", f["r2"], f["exp_rate"],
                    f["better"]]
            lines.append("| " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def _panels(summary: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    panels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in summary:
        panels[f"{s['env']} / {s['expert']}"].append(s)
    return dict(panels)


def _varying(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if len({r[c] for r in rows}) > 1]


def _plot(summary: list[dict[str, Any]], x: str, path: Path, xlabel: str, title: str,
          at_h: bool) -> Path | None:
    """One panel per env/expert; lines per setting (what varies besides ``x``); log-log."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    xcol = {"H": "H", "bin_width": "bins", "n_demos": "n_demos", "chunk_len": "chunk_len"}[x]
    line_cols = tuple(c for c in ("quantizer", "policy", "bins", "n_demos", *CHUNK_GROUP)
                      if c != xcol and c in summary[0])
    panels = _panels(summary)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    drawn = False
    for ax, (name, rows) in zip(axes[0], panels.items(), strict=True):
        if at_h:  # the largest horizon of the panel
            h_max = max(r["H"] for r in rows)
            rows = [r for r in rows if r["H"] == h_max]
            name = f"{name}, H = {h_max}"
        varying = _varying(rows, line_cols) or ["quantizer", "policy"]
        lines: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            lines[tuple(r[c] for c in varying)].append(r)
        for key, pts in sorted(lines.items(), key=lambda kv: str(kv[0])):
            pts = sorted((p for p in pts if p["regret_mean"] > 0 and p[x] is not None),
                         key=lambda p: p[x])
            if not pts:
                continue
            xs = [p[x] for p in pts]
            m = np.array([p["regret_mean"] for p in pts])
            lo = np.maximum(m - np.array([p["regret_ci_lo"] for p in pts]), 0)
            hi = np.maximum(np.array([p["regret_ci_hi"] for p in pts]) - m, 0)
            label = ", ".join(f"{c}={v}" if c in ("bins", "n_demos", "chunk_len") else str(v)
                              for c, v in zip(varying, key, strict=True))
            ax.errorbar(xs, m, yerr=[lo, hi], marker="o", capsize=3, label=label)
            drawn = True
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks collide
        ax.set_xlabel(xlabel)
        ax.set_ylabel("regret (mean over seeds, 95% CI)")
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    if not drawn:
        plt.close(fig)
        return None
    return save_figure(fig, path)


def write_report(sweep_dir: str | Path) -> dict[str, Any]:
    """Aggregate ``sweep_dir/results.csv``; write summary.csv, report.md and the plots.

    Returns ``{"summary": rows, "fits": [...], "files": [paths written]}``.
    """
    sweep_dir = Path(sweep_dir)
    rows = read_table(sweep_dir / TABLE_FILE)
    if not rows:
        raise InvalidValueError(
            f"{sweep_dir / TABLE_FILE} is missing or empty: run `qbc sweep --config FILE.toml "
            f"--out {sweep_dir}` first (or give the directory that holds results.csv)")
    current = current_cells(sweep_dir)
    stale = 0
    if current is not None:  # rows of cells from an earlier version of the grid stay out
        stale = len({r["cell"] for r in rows} - current)
        rows = [r for r in rows if r["cell"] in current]
        if not rows:
            raise InvalidValueError(
                f"none of the rows in {sweep_dir / TABLE_FILE} belong to the sweep in "
                f"{sweep_dir / CONFIG_FILE}; run the sweep to fill them in")
    _check_numbers(rows, sweep_dir / TABLE_FILE)
    summary = aggregate(rows)
    fits = growth_fits(summary)
    with sweep_lock(sweep_dir):
        files = _write_report_files(sweep_dir, summary, fits)
    return {"summary": summary, "fits": fits, "files": files, "stale_cells": stale}


def _write_report_files(sweep_dir: Path, summary: list[dict[str, Any]],
                        fits: list[dict[str, Any]]) -> list[Path]:
    """summary.csv, report.md and the plots of the axes the grid varies; the paths written."""
    columns = summary_columns(summary_group(summary), has_success(summary))
    table = [{k: ("" if s[k] is None else s[k]) for k in columns} for s in summary]
    files = [atomic_write_csv(sweep_dir / "summary.csv", table, columns),
             atomic_write_text(sweep_dir / "report.md", markdown(summary, fits, str(sweep_dir)))]
    plots = [("H", "regret_vs_H.png", "horizon H", "regret vs horizon", False, "H"),
             ("bin_width", "regret_vs_bin_width.png", "bin width (action range / bins)",
              "regret vs bin width", True, "bins"),
             ("n_demos", "regret_vs_n_demos.png", "demonstrations n", "regret vs demonstrations",
              True, "n_demos"),
             ("chunk_len", "regret_vs_chunk_len.png", "chunk length k", "regret vs chunk length",
              True, "chunk_len")]
    for x, name, xlabel, title, at_h, axis in plots:
        if len({s.get(axis) for s in summary} - {None}) < 2:
            continue  # the grid does not vary this axis
        path = _plot(summary, x, sweep_dir / name, xlabel, title, at_h)
        if path is not None:
            files.append(path)
    return files


def current_cells(sweep_dir: Path) -> set[str] | None:
    """Keys of the cells of the sweep last run in ``sweep_dir`` (None without its config)."""
    config = read_config(Path(sweep_dir) / CONFIG_FILE)
    return None if config is None else {c["key"] for c in config["cells"]}
