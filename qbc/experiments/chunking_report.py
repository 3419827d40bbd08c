"""README.md of the chunk-tokenizer comparison (``scripts/sweeps/chunking.toml``,
``scripts/sweeps/chunking_defaults.toml``): one table per env at the largest horizon with every
cell's learner / chunk-floor ratio over seeds, the growth of regret with H, one plot per (env,
execution) in ``plots/``, and the stable-vs-unstable prediction checked on the measured numbers:
per env, the cost of open-loop execution over receding:1 with a seed interval and a verdict
(holds / does not hold / inconclusive), in the noisy and the noise-free setting
(:mod:`qbc.experiments.chunking_seeds`). The older check below it compares open-loop chunks
with k = 1 on means alone:

The prediction, as qbc reads secondary summaries of Simchowitz, Pfrommer & Jadbabaie 2025 (arXiv
2503.09722 and 2507.09061; not the papers' own statement): open-loop chunks help (or do not hurt)
on open-loop-stable systems and hurt on unstable ones. It is checked per env as: for each policy
(tokenizer, or the continuous ``chunk-mlp-l1``) and chunk length k > 1, is the regret at the
largest H of open-loop execution lower than that of the same policy kind at k = 1 (which re-plans
every step)? The env's count of "lower" against "higher" is its verdict; the prediction holds when
the stable envs are mostly "lower" and the unstable envs mostly "higher". A weaker, relative form
is checked too: the median ratio open-loop / k = 1 regret (the open-loop penalty) is larger on
every unstable env than on the stable ones. Input: the sweep's ``summary.csv`` (``qbc sweep
report DIR`` writes it); entry point ``python scripts/chunking_report.py DIR``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import CorruptFileError
from qbc.experiments.chunking_seeds import (
    floor_ratios,
    largest_h_rows,
    open_loop_cost,
    plot_env_executions,
    plot_paths,
    setting_verdicts,
    stability,
    verdict_lines,
    with_kept_note,
)
from qbc.experiments.table_cells import number_cell, percent_cell
from qbc.infra.files import atomic_write_text, read_csv_rows
from qbc.rollout.growth import fit_growth
from qbc.sweep.entries import env_label, normalize_env
from qbc.sweep.report import current_cells
from qbc.sweep.table import read_config, read_table

_FLOAT = ("regret_mean", "regret_ci_lo", "regret_ci_hi", "diverged_fraction", "val_loss",
          "tokens_per_chunk", "decode_failures", "decode_failure_rate", "decode_actions_per_s",
          "floor_regret", "floor_diverged_fraction")


@dataclass
class ReportArgs:
    """Write README.md and the plots of a chunk-tokenizer sweep (after `qbc sweep report`)."""

    sweep_dir: Path
    """the sweep folder (its summary.csv and results.csv)."""


def read_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """summary.csv of a chunk sweep, numbers parsed (empty cells are None); a damaged one is
    a CorruptFileError naming the file and the line."""
    path = Path(sweep_dir) / "summary.csv"
    if not path.is_file():
        raise CorruptFileError(f"{path} is missing: run `qbc sweep report {sweep_dir}` first")
    rows = read_csv_rows(path, "sweep summary", ("H", "chunk_len", "n_seeds"))
    if not rows or not all(r["chunk_len"] for r in rows):
        raise CorruptFileError(f"{path} has no chunk-policy rows")
    for line, r in enumerate(rows, 2):
        try:
            r["H"], r["chunk_len"], r["n_seeds"] = (int(r[c]) for c in ("H", "chunk_len",
                                                                         "n_seeds"))
            for c in _FLOAT:
                r[c] = float(r[c]) if r.get(c) not in (None, "") else None
        except ValueError as exc:
            raise CorruptFileError(f"{path} line {line}: {exc}; restore it or run `qbc sweep "
                                   f"report {sweep_dir}` again") from None
    return rows


def single_seed_intervals(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Where a setting has one seed (its interval over seeds is a point), put the 95% interval
    over that seed's evaluation episodes (results.csv) into ``rows`` in place."""
    current = current_cells(Path(sweep_dir))
    per_seed = {(*_key(r), r["H"]): r for r in read_table(Path(sweep_dir) / "results.csv")
                if r["chunk_len"] and (current is None or r["cell"] in current)}
    for r in rows:
        seed_row = per_seed.get((*_key(r), r["H"]))
        if r["n_seeds"] == 1 and seed_row is not None:
            r["regret_ci_lo"] = seed_row["regret_ci_lo"]
            r["regret_ci_hi"] = seed_row["regret_ci_hi"]


def policy_label(row: dict[str, Any]) -> str:
    """'fast', 'per-step uniform/64', ... or 'chunk-mlp-l1 (continuous)'."""
    tok = row["chunk_tokenizer"]
    if not tok:
        return f"{row['policy']} (continuous)"
    if tok.startswith("per-step("):
        params = dict(p.split("=") for p in tok[len("per-step("):-1].split(","))
        return f"per-step {params.get('quantizer', '?')}/{params.get('n_bins', '?')}"
    return tok


def growth(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per (env, policy label, k, execution): the regret ~ c·H^p fit over the sweep's horizons."""
    series: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        series[_key(r)].append((r["H"], r["regret_mean"]))
    out = {}
    for key, pts in series.items():
        hs, vs = zip(*sorted(pts), strict=True)
        out[key] = fit_growth(hs, vs)
    return out


def _key(r: dict[str, Any]) -> tuple:
    return (r["env"], policy_label(r), r["chunk_len"], r["execution"])


def at_largest_h(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows at each env's largest horizon."""
    h_max = {env: max(r["H"] for r in rows if r["env"] == env) for env in {r["env"] for r in rows}}
    return [r for r in rows if r["H"] == h_max[r["env"]]]


def open_loop_effect(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per env: for each policy label and k > 1, open-loop regret at the largest H against the
    same label at k = 1. Each entry: label, k, regret_chunked, regret_k1, lower (bool)."""
    last = at_largest_h(rows)
    k1 = {(r["env"], policy_label(r)): r["regret_mean"] for r in last if r["chunk_len"] == 1
          and r["execution"] == "open-loop"}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in last:
        base = k1.get((r["env"], policy_label(r)))
        if r["chunk_len"] == 1 or r["execution"] != "open-loop" or base is None:
            continue
        out[r["env"]].append({"label": policy_label(r), "k": r["chunk_len"],
                              "regret_chunked": r["regret_mean"], "regret_k1": base,
                              "lower": r["regret_mean"] < base})
    return dict(out)


def replanning_effect(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per env: (pairs where re-planning every step (receding:1) gave lower regret at the largest
    H than open-loop execution of the same policy and k > 1, pairs compared)."""
    last = at_largest_h(rows)
    open_loop = {_key(r)[:3]: r["regret_mean"] for r in last if r["execution"] == "open-loop"}
    out: dict[str, list[bool]] = defaultdict(list)
    for r in last:
        base = open_loop.get(_key(r)[:3])
        if r["chunk_len"] > 1 and r["execution"] == "receding:1" and base is not None:
            out[r["env"]].append(r["regret_mean"] < base)
    return {env: (sum(v), len(v)) for env, v in out.items()}


def open_loop_penalty(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per env: the median over (policy, k > 1) of open-loop regret / k = 1 regret at the
    largest H (pairs whose k = 1 regret is not positive are left out; NaN when none is left)."""
    out = {}
    for env, effects in open_loop_effect(rows).items():
        ratios = [e["regret_chunked"] / e["regret_k1"] for e in effects if e["regret_k1"] > 0]
        out[env] = float(np.median(ratios)) if ratios else math.nan
    return out


def relative_prediction(rows: list[dict[str, Any]]) -> tuple[str, bool | None]:
    """The weaker, relative form: open-loop chunks cost more (relative to k = 1) on every
    unstable env than on any stable one. A markdown line, and whether it holds (None without
    both kinds of env)."""
    penalty = {env: p for env, p in open_loop_penalty(rows).items()
               if stability(env) is not None and not math.isnan(p)}
    stable = {e: p for e, p in penalty.items() if stability(e)}
    unstable = {e: p for e, p in penalty.items() if not stability(e)}
    if not stable or not unstable:
        return "", None
    held = min(unstable.values()) > max(stable.values())
    listed = ", ".join(f"{env} {p:.3g}x" for env, p in sorted(penalty.items(),
                                                              key=lambda kv: kv[1]))
    return (f"Relative form — open-loop chunks cost more, relative to k = 1, on every unstable "
            f"env than on the stable one(s): **{_verdict(held)}** (median open-loop / k = 1 regret"
            f" at the largest H over the (policy, k > 1) pairs whose k = 1 regret is positive: "
            f"{listed})."), held


def divergence_by_execution(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per env at the largest H: mean diverged fraction over policies of k = 1, of open-loop
    chunks (k > 1) and of re-planned chunks (receding:1, k > 1)."""
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in at_largest_h(rows):
        if r["chunk_len"] == 1:
            if r["execution"] == "open-loop":
                groups[r["env"]]["k = 1"].append(r["diverged_fraction"])
        elif r["execution"] in ("open-loop", "receding:1"):
            groups[r["env"]][r["execution"]].append(r["diverged_fraction"])
    return {env: {what: float(np.mean(v)) for what, v in g.items()} for env, g in groups.items()}


def prediction(rows: list[dict[str, Any]]) -> tuple[list[str], bool | None]:
    """Markdown lines, one per env, and whether the prediction holds on every env with a known
    stability (None when no env could be checked)."""
    lines, holds = [], []
    replanning = replanning_effect(rows)
    diverged = divergence_by_execution(rows)
    for env, effects in open_loop_effect(rows).items():
        lower = sum(e["lower"] for e in effects)
        stable = stability(env)
        expected = ("lower" if stable else "higher") if stable is not None else None
        n = len(effects)
        observed = "lower" if lower > n / 2 else ("higher" if lower < n / 2 else "mixed")
        if expected is not None:
            holds.append(observed == expected)
        kind = {True: "open-loop stable", False: "open-loop unstable", None: "stability unknown"}
        lines.append(
            f"- {env} ({kind[stable]}): open-loop chunks gave lower regret than k = 1 in "
            f"{lower} of {n} (policy, k > 1) pairs, higher in {n - lower}"
            + (f" — predicted {expected}: **{_verdict(observed == expected)}**"
               if expected is not None else "")
            + (f"; re-planning every step (receding:1) instead of open-loop lowered regret in "
               f"{replanning[env][0]} of {replanning[env][1]}" if env in replanning else "")
            + (f"; episodes diverged: k = 1 {percent_cell(diverged[env].get('k = 1'))}, open-loop "
               f"k > 1 {percent_cell(diverged[env].get('open-loop'))}, receding:1 k > 1 "
               f"{percent_cell(diverged[env].get('receding:1'))} (means over policies)"
               if env in diverged else ""))
    return lines, (all(holds) if holds else None)


def _verdict(held: bool) -> str:
    return "holds" if held else "does not hold"


def env_table(env_rows: list[dict[str, Any]], fits: dict[tuple, dict[str, Any]],
              ratios: dict[tuple, dict[str, Any]] | None = None) -> list[str]:
    """Markdown table of one env at its largest H, one row per (policy, k, execution); with
    ``ratios`` (:func:`~qbc.experiments.chunking_seeds.floor_ratios`) the learner / floor ratio
    and the excess over the floor are means over seeds with their intervals."""
    lines = ["| policy | k | execution | regret (95% CI) | chunk floor | learner / floor "
             "| excess over floor (% of expert return) | growth p | growth verdict | diverged "
             "| floor diverged | tokens / chunk | decode failures | decode actions/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(env_rows, key=lambda r: (policy_label(r), r["chunk_len"], r["execution"])):
        fit = fits[_key(r)]
        slope = fit["power"]["slope"] if fit.get("power") else None
        tokenized = r["tokens_per_chunk"] is not None
        failures = f"{r['decode_failure_rate']:.1%}" if tokenized else "—"
        floor = r.get("floor_regret")
        ratio, excess = _ratio_cells(r, (ratios or {}).get(_key(r)))
        lines.append(
            f"| {policy_label(r)} | {r['chunk_len']} | {r['execution']} "
            f"| {number_cell(r['regret_mean'])} "
            f"[{number_cell(r['regret_ci_lo'])}, {number_cell(r['regret_ci_hi'])}] "
            f"| {number_cell(floor)} | {ratio} | {excess} "
            f"| {number_cell(slope)} | {fit['verdict']} | {r['diverged_fraction']:.1%} "
            f"| {percent_cell(r.get('floor_diverged_fraction'))} "
            f"| {number_cell(r['tokens_per_chunk'])} | {failures} "
            f"| {number_cell(r['decode_actions_per_s'])} |")
    return lines


def _ratio_cells(r: dict[str, Any], seeds: dict[str, Any] | None) -> tuple[str, str]:
    """The learner / floor and excess cells of a table row: over seeds when known, else the
    ratio of the means (an exact floor: '— (floor exact)'; no floor measured: '—')."""
    if seeds is None or not seeds["measured"]:
        floor = r.get("floor_regret")
        return number_cell(r["regret_mean"] / floor if floor not in (None, 0) else None), "—"
    ratio, excess, one = seeds["ratio"], seeds["excess"], seeds["n_seeds"] < 2
    ratio_cell = ("— (floor exact)" if ratio is None else number_cell(ratio[0]) + (
        " (1 seed)" if one else f" [{number_cell(ratio[1])}, {number_cell(ratio[2])}]"))
    excess_cell = ("—" if excess is None else f"{excess[0]:.2%}" + (
        " (1 seed)" if one else f" [{excess[1]:.2%}, {excess[2]:.2%}]"))
    return ratio_cell, excess_cell


def seed_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """The chunk rows of ``results.csv`` (the current grid's cells) at each env's largest H,
    one per seed."""
    current = current_cells(Path(sweep_dir))
    rows = read_table(Path(sweep_dir) / "results.csv")
    return largest_h_rows([r for r in rows if current is None or r["cell"] in current])


def budget_text(train: dict[str, Any], seeds: list[dict[str, Any]]) -> str:
    """The step budget in words: the spec's fixed steps, or the default budget as resolved."""
    if train.get("steps") is not None:
        return f"{train['steps']} training steps"
    cells = {r["cell"]: r for r in seeds if r.get("budget_steps") is not None}
    if not cells:
        return "qbc train-chunked's default step budget"
    taken = [r["train_steps"] for r in cells.values()]
    budgets = [r["budget_steps"] for r in cells.values()]
    stopped = sum(r["stopped_early"] for r in cells.values())
    return (f"qbc train-chunked's default step budget (data-scaled, early stopping): "
            f"{min(budgets)}-{max(budgets)} steps resolved, {min(taken)}-{max(taken)} taken, "
            f"early stopping ended {stopped} of {len(cells)} policies")


def open_loop_section(seeds: list[dict[str, Any]]) -> list[str]:
    """The seed-interval check of the prediction: per setting, then per env."""
    costs = open_loop_cost(seeds, policy_label)
    if not costs:
        return ["No open-loop and receding:1 rows at k > 1: not checked."]
    verdicts = setting_verdicts(costs)
    head = [f"- **{name} setting: {verdict}**" for name, verdict in sorted(verdicts.items())]
    return [*(head or ["No (unstable, stable) pair of envs in one setting: no verdict."]), "",
            *verdict_lines(costs)]


def readme(sweep_dir: Path, plots: list[Path] | None = None) -> str:
    """The comparison's README.md text from ``sweep_dir`` (its summary.csv, results.csv and
    sweep_config.json); ``plots``: the per-(env, execution) figures to link."""
    rows = read_summary(sweep_dir)
    single_seed_intervals(sweep_dir, rows)
    config = read_config(Path(sweep_dir) / "sweep_config.json")  # checked as `qbc sweep` does
    if config is None:
        raise CorruptFileError(f"{str(sweep_dir)!r} has no sweep_config.json: give the folder "
                               "`qbc sweep --out` wrote")
    seeds = seed_rows(sweep_dir)
    fits, ratios = growth(rows), floor_ratios(seeds, policy_label)
    out = [*_header(config, rows, seeds), "",
           "## Stable vs unstable: what open-loop execution costs, with seed intervals", "",
           "The prediction checked (qbc's reading of secondary summaries of Simchowitz, "
           "Pfrommer & Jadbabaie 2025, not the papers' own statement): open-loop execution of "
           "chunks costs more on open-loop-unstable systems than on stable ones. Check: per "
           "env, (open-loop - receding:1 regret) / |expert return| at the largest H, averaged "
           "over the (policy, k > 1) pairs of a seed, mean over seeds with a 95% interval; an "
           "unstable env against each stable env of the same setting: **holds** when its "
           "interval lies above, **does not hold** when below, **inconclusive** when they "
           "overlap.", "", *open_loop_section(seeds), "", *_k1_section(rows)]
    if plots:
        out += ["", "## Plots", "", "One per (env, execution): regret at the largest H against "
                "k, per policy, the learner and its chunk floor (dashed).", "",
                *[f"- [{p.stem}](plots/{p.name})" for p in plots]]
    last = at_largest_h(rows)
    for env in dict.fromkeys(r["env"] for r in rows):
        env_rows = [r for r in last if r["env"] == env]
        out += ["", f"## {env} (H = {env_rows[0]['H']})", "",
                *env_table(env_rows, fits, ratios)]
    return "\n".join(out) + "\n"


def _header(config: dict[str, Any], rows: list[dict[str, Any]],
            seeds: list[dict[str, Any]]) -> list[str]:
    """The title, the command and what was run."""
    spec = config["spec"]
    grid, ro = spec["grid"], spec["rollout"]
    envs = [env_label(e["name"], e["env_kwargs"]) for e in map(normalize_env, grid["envs"])]
    unmeasured = ("" if any(r.get("floor_regret") is not None for r in seeds) else
                  " (this run measured no chunk floor: those columns are —)")
    command = (f"qbc sweep --config {config.get('source') or 'CONFIG'} --out DIR && "
               "python scripts/chunking_report.py DIR")
    return [
        "# Action-chunk tokenizers on stable and unstable systems", "", f"`{command}`", "",
        f"Envs {', '.join(envs)}; chunk policies: the chunk AR transformer over each "
        f"tokenizer ({', '.join(sorted({policy_label(r) for r in rows if r['chunk_tokenizer']}))})"
        f" and the continuous chunk-mlp-l1 (L1 regression of the whole chunk); k in "
        f"{', '.join(map(str, grid['chunk_lens']))}; execution {', '.join(grid['executions'])}; "
        f"seeds {', '.join(map(str, grid['seeds']))}; {grid['n_demos'][0]} expert episodes of "
        f"{spec['data']['episode_steps']} steps per seed; {budget_text(spec['train'], seeds)}; "
        f"{ro['episodes']} coupled evaluation episodes per policy and mode, horizons "
        f"{', '.join(map(str, grid['horizons']))}.", "",
        "Regret is the expert's return minus the policy's over H steps on the same seeds and "
        "noise, mean over seeds with a 95% Student-t interval over seeds (with one seed: over its "
        "evaluation episodes). Chunk floor: the expert's noise-free plans through the policy's "
        "chunk tokenizer, executed the same way on the same episodes; learner / floor and the "
        f"excess over the floor are per seed, then mean over seeds with a 95% interval{unmeasured}"
        ". Growth p: exponent of the least-squares fit regret ~ c·H^p over the horizons, with the"
        " verdict of `qbc.rollout.growth.fit_growth`. Decode failures: chunks whose token sequence"
        " did not decode and were repaired, per chunk predicted. Decode actions/s: actions the "
        "executor returned per second of its own time, batch = the evaluation episodes, on the "
        "machine that ran the sweep (compare within this table only). k = 1 re-plans every step,"
        " so its open-loop and receding:1 rows are the same policy run twice."]


def _k1_section(rows: list[dict[str, Any]]) -> list[str]:
    """The older check on means: open-loop chunks against the same policy at k = 1."""
    pred_lines, holds = prediction(rows)
    relative, _ = relative_prediction(rows)
    statement = {True: "**The prediction holds on these runs.**",
                 False: "**The prediction does not hold on these runs** (per env below).",
                 None: "No env of known stability had chunked and k = 1 rows: not checked."}[holds]
    return ["## Open-loop chunks against k = 1 (means over seeds, no intervals)", "",
            "The absolute form of the prediction: open-loop chunks help on stable systems and "
            "hurt on unstable ones. Check: per policy and k > 1, open-loop regret at the "
            "largest H against the same policy at k = 1.", "", statement, "", *pred_lines,
            *(["", relative] if relative else [])]


def write_readme(sweep_dir: str | Path) -> Path:
    """Write ``sweep_dir/plots/*.png`` (one per (env, execution)) and ``sweep_dir/README.md``
    (keeping the note under the title of the README it replaces); the README's path."""
    sweep_dir = Path(sweep_dir)
    rows = seed_rows(sweep_dir) if (sweep_dir / "summary.csv").is_file() else []
    text = readme(sweep_dir, list(plot_paths(rows, sweep_dir / "plots").values()))
    plot_env_executions(rows, policy_label, sweep_dir / "plots")  # after every check
    out = sweep_dir / "README.md"
    return atomic_write_text(out, with_kept_note(text, out))
