"""README.md of the learner-vs-floor comparison (:mod:`qbc.experiments.learner_vs_floor`): the
settings, one table per env (means over seeds) and the targets checked, stated as measured."""

from __future__ import annotations

import math
import shlex
from typing import Any

from qbc.experiments.learner_vs_floor.config import ENVS, FloorConfig, eval_episodes, target_limit
from qbc.experiments.learner_vs_floor.summary import floor_ratio
from qbc.experiments.table_cells import number_cell, percent_cell

METHOD_NAMES = {"bc": "plain BC", "dart": "DART", "dagger": "DAgger",
                "mlp-mse": "mlp-mse (continuous)"}


#: What the tables compare, stated under every report.
SCOPE = [
    "Scope of the comparison:",
    "",
    "- The target is measured against the reference floor: the quantized expert through the"
    " tokenizer plain BC fits on the expert's clean demonstrations (same env, quantizer and"
    " seeds). Each method also reports the floor of its own tokenizer, fitted to its own data"
    " (DART's noisy data; DAgger's round 0, of fewer episodes than BC's unless DAgger runs on"
    " its command's defaults, or with"
    " `--dagger-tokenizer refit` the aggregated data): a floor that rises because the tokenizer"
    " changed is not the floor reached.",
    "- The floor is the quantized expert with the deterministic encoding (for `smooth`: nearest"
    " rounding), the policy an argmax learner reproduces: the target is measured against it. For"
    " `smooth` the stochastic q#π* through each row's own tokenizer (stochastic rounding: the"
    " theory's quantized expert, what a sampling learner reproduces) has a column of its own and"
    " is not used by the target.",
    "- Mean decoding returns an average of codewords, not a quantized actor: its comparison with"
    " either floor is between unlike things, and a mean-decoded learner can lie below them.",
]


#: The sentence above each env's table: what its rows are compared with.
TABLE_SCOPE = ("Each row is compared with the reference floor (the quantized expert through plain"
               " BC's tokenizer, fitted on the clean demonstrations: same env, quantizer and"
               " seeds) and, beside it, with the floor of its own tokenizer.")

#: The sentence above each env's table of a page made before the reference floor was kept.
OWN_FLOOR_SCOPE = ("Each row is compared with the floor of its own tokenizer (DART's and DAgger's"
                   " refitted to their own data); the common-tokenizer view at the end of this page"
                   " sets DART and DAgger against plain BC's tokenizer's floor.")

#: The heading of the common-tokenizer view that :func:`common_tokenizer_view` writes.
COMMON_VIEW_HEADING = "## Common-tokenizer view: DART and DAgger against plain BC's tokenizer"


def method_name(method: str, cfg: Any) -> str:
    """The table's name of ``method``; DART's with its sigma."""
    if method == "dart":
        return ("DART (auto sigma)" if cfg.dart_sigma == "auto"
                else f"DART (sigma {cfg.dart_sigma})")
    return METHOD_NAMES.get(method, method)


def env_table(rows: list[dict[str, Any]], cfg: Any) -> list[str]:
    """Markdown rows of one env's summary: method, quantizer, decoding, labels, regrets."""
    lines = ["| method | quantizer | decode | expert labels | learner regret (worst seed) "
             "| reference floor (BC's tokenizer) | ratio to it | own floor (nearest rounding) "
             "| diverged | reference floor diverged | own floor diverged "
             "| stochastic q#π* regret (own tokenizer) | target met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    for r in sorted(rows, key=lambda r: (order.get(r["method"], 9), r["quantizer"], r["decode"])):
        target = "—" if r["method"] == "mlp-mse" else ("yes" if r["meets_target"] else "no")
        lines.append(
            f"| {method_name(r['method'], cfg)} | {r['quantizer']} | {r['decode']} "
            f"| {r['expert_labels']:,} "
            f"| {number_cell(r['regret'])} ({number_cell(r['regret_worst_seed'])}) "
            f"| {number_cell(_ref(r, 'regret'))} | {number_cell(r['ratio'])} "
            f"| {number_cell(r['qexp_regret'])} | {percent_cell(r['diverged'])} "
            f"| {percent_cell(_ref(r, 'diverged'))} | {percent_cell(r['qexp_diverged'])} "
            f"| {number_cell(r.get('qexp_stochastic_regret'))} | {target} |")
    return lines


def verdict(summary: list[dict[str, Any]]) -> list[str]:
    """Per env and quantizer: which methods (either decoding), plain BC included, meet the
    target; where none does, the one closest to it."""
    lines = []
    for env in dict.fromkeys(r["env"] for r in summary):
        for q in dict.fromkeys(r["quantizer"] for r in summary if r["env"] == env):
            if q == "-":
                continue
            rows = [r for r in summary if r["env"] == env and r["quantizer"] == q]
            met = sorted(f"{r['method']}/{r['decode']}" for r in rows if r["meets_target"])
            if met:
                lines.append(f"- {env}, {q}: met by {', '.join(met)}")
                continue
            best = min(rows, key=_distance_to_target)
            gap = (f"{number_cell(best['ratio'])}x the floor's regret"
                   if not math.isnan(best["ratio"])
                   else f"regret {number_cell(best['regret'])} against the target's limit "
                        f"{number_cell(_limit(best))} (floor {number_cell(_ref(best, 'regret'))})")
            by = ("any method" if any(r["method"] in ("dart", "dagger") for r in rows)
                  else "plain BC")
            lines.append(
                f"- {env}, {q}: **not met** by {by}; closest {best['method']}/"
                f"{best['decode']}: {gap}, {percent_cell(best['diverged'])} diverged (quantized "
                f"expert: {percent_cell(best['qexp_diverged'])})")
    return lines


def _limit(row: dict[str, Any]) -> float:
    return target_limit(_ref(row, "regret"), row["expert_return"])


def _ref(row: dict[str, Any], what: str) -> float:
    """The reference floor's 'regret' or 'diverged' of a summary row (its own floor's in a
    summary made before reference floors were kept)."""
    return row.get(f"ref_qexp_{what}", row[f"qexp_{what}"])


def _distance_to_target(row: dict[str, Any]) -> tuple[float, float]:
    """Sort key of the row closest to the target: its ratio to the floor, and where that is
    undefined (a floor <= 0) how far its regret lies above the target's limit."""
    ratio = row["ratio"] if not math.isnan(row["ratio"]) else math.inf
    return ratio, row["regret"] - _limit(row)


def report(cfg: Any, summary: list[dict[str, Any]], seconds: float) -> str:
    """The comparison's README.md text."""
    flags = f" --quick --envs {cfg.envs[0]}" if cfg.quick else command_flags(cfg)
    head = [
        "# The token learner against its quantization floor",
        "",
        f"`python scripts/learner_vs_floor.py{flags} --out DIR` "
        f"({seconds / 60:.0f} min of wall time over all invocations).",
        "",
        f"Envs {', '.join(cfg.envs)}; quantizers "
        f"{', '.join(f'{q}/{cfg.bins}' for q in cfg.quantizers)}"
        f"; seeds {', '.join(map(str, cfg.seeds))}; methods "
        f"{', '.join(method_name(m, cfg) for m in cfg.methods)}; {cfg.episodes} expert episodes"
        " per method"
        + (_dagger_schedule_text(cfg) if "dagger" in cfg.methods else "") + ";"
        f" training budget {'`qbc train` default' if cfg.steps is None else f'{cfg.steps} steps'};"
        f" {_eval_episodes(cfg)} coupled evaluation episodes per policy, seeds apart from the"
        " data." + _extra_settings(cfg),
        "",
        "Regret is the expert's return minus the policy's over H steps on the same seeds and noise"
        " (means over seeds; the worst seed in brackets). The quantized expert sends the expert's"
        " action through a tokenizer: the floor (which tokenizer's floor the target uses: see the"
        " scope below). Target: learner regret <= 2x the quantized expert's (or <= it + 1% of"
        " the expert's return), diverged no more often than the quantized expert"
        + (" (DAgger's expert labels are reported, not limited)." if cfg.dagger_defaults else
           ", no more expert labels than plain BC."),
        "",
        *SCOPE,
        "",
        "## Targets",
        "",
        *verdict(summary),
        "",
    ]
    body = []
    for env in dict.fromkeys(r["env"] for r in summary):
        rows = [r for r in summary if r["env"] == env]
        body += [f"## {env} (H = {cfg.horizon or _horizon(env)}; expert return "
                 f"{number_cell(rows[0]['expert_return'])})", "", TABLE_SCOPE, "",
                 *env_table(rows, cfg), ""]
    return "\n".join(head + body)


def common_tokenizer_view(summary: list[dict[str, Any]], command: str) -> list[str]:
    """Markdown section for a page whose tables compare each method with its own tokenizer's
    floor only: every DART and DAgger row of ``summary`` (from
    :func:`~qbc.experiments.learner_vs_floor.summary.summarise`, whose reference floor is BC's
    row of the same env, quantizer and seed) beside both floors and its ratio to each.
    ``command`` says how the section was made."""
    lines = [COMMON_VIEW_HEADING, "",
             "Scope: each DART and DAgger row against the reference floor, the quantized expert"
             " through the tokenizer plain BC fits on the expert's clean demonstrations (same env,"
             " quantizer and seeds), beside the floor of its own refitted tokenizer that the"
             f" tables above use; means over seeds of this folder's results.csv ({command}),"
             " nothing re-run.", "",
             "| env | method | quantizer | decode | learner regret | own floor | ratio to own floor"
             " | reference floor (BC's tokenizer) | ratio to reference | own − reference floor"
             " | diverged | own floor diverged | reference floor diverged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(METHOD_NAMES)}
    with_bc = {(r["env"], r["quantizer"]) for r in summary if r["method"] == "bc"}
    rows = [r for r in summary if r["method"] in ("dart", "dagger")]
    for r in sorted(rows, key=lambda r: (r["env"], order[r["method"]], r["quantizer"],
                                         r["decode"])):
        lines.append(_view_row(r, (r["env"], r["quantizer"]) in with_bc))
    if not rows:
        lines.append("| — | no DART or DAgger rows |" + " |" * 11)
    missing = sorted({f"{r['env']} {r['quantizer']}" for r in rows
                      if (r["env"], r["quantizer"]) not in with_bc})
    if missing:
        lines += ["", f"This folder has no plain BC rows for {', '.join(missing)} (it ran"
                  " without `bc` in `--methods`): the reference floor cannot be computed from"
                  " its data, and those rows show their own floor only (—: not measured)."]
    return lines


def _view_row(r: dict[str, Any], has_reference: bool) -> str:
    """One row of the common-tokenizer view; its reference cells are dashes without BC rows
    (where the summary falls back to the row's own floor)."""
    ref = {k: r[f"ref_qexp_{k}"] if has_reference else math.nan for k in ("regret", "diverged")}
    ratio = r["ratio"] if has_reference else math.nan
    return (f"| {r['env']} | {METHOD_NAMES[r['method']]} | {r['quantizer']} | {r['decode']} "
            f"| {number_cell(r['regret'])} | {number_cell(r['qexp_regret'])} "
            f"| {number_cell(floor_ratio(r['regret'], r['qexp_regret']))} "
            f"| {number_cell(ref['regret'])} | {number_cell(ratio)} "
            f"| {number_cell(r['qexp_regret'] - ref['regret'])} "
            f"| {percent_cell(r['diverged'])} | {percent_cell(r['qexp_diverged'])} "
            f"| {percent_cell(ref['diverged'])} |")


def with_scope_above_tables(text: str, sentence: str) -> str:
    """``text`` with ``sentence`` and a blank line above each env table (a table whose header
    starts with '| method |') that does not have it yet."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.startswith("| method |") and out[-2:] != [sentence, ""]:
            out += [sentence, ""]
        out.append(line)
    return "\n".join(out)


def with_section(text: str, section: list[str]) -> str:
    """``text`` with the section that starts at ``section``'s heading replaced by ``section``
    (up to the next heading of the same level), or with it appended."""
    heading, lines = section[0], text.rstrip("\n").split("\n")
    if heading not in lines:
        return "\n".join(lines + [""] + section) + "\n"
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    tail = [""] + lines[end:] if end < len(lines) else []
    return "\n".join(lines[:start] + section + tail) + "\n"


def _extra_settings(cfg: Any) -> str:
    """Sentences for the settings beyond the defaults: extra and DART-only train flags, a fixed
    DART sigma."""
    notes = []
    if cfg.extra_train_flags and not cfg.quick:
        notes.append(f"Every token run also trains with `{' '.join(cfg.extra_train_flags)}`.")
    if cfg.dart_sigma != "auto":
        notes.append(f"DART collects with a fixed noise std of {cfg.dart_sigma} (action units).")
    if cfg.dart_train_flags:
        notes.append(f"DART trains with `{' '.join(cfg.dart_train_flags)}`.")
    return "".join(" " + n for n in notes)


def _dagger_schedule_text(cfg: Any) -> str:
    """How the DAgger rows were run, for the settings line."""
    if cfg.dagger_defaults:
        return (" (DAgger: `qbc dagger` defaults: round 0 of plain BC's episodes, then more rounds"
                " driven by a beta schedule; more expert labels than BC)")
    return (f" (DAgger: {cfg.dagger_rounds + 1} rounds of "
            f"{cfg.episodes // (cfg.dagger_rounds + 1)}, beta = {cfg.dagger_beta:g} after round 0)")


def command_flags(cfg: Any) -> str:
    """The script's flags that give ``cfg`` (those that differ from the defaults)."""
    default = FloorConfig()
    flags = f" --envs {' '.join(cfg.envs)}"
    for name in ("quantizers", "methods", "seeds"):
        if tuple(getattr(cfg, name)) != tuple(getattr(default, name)):
            flags += f" --{name} {' '.join(map(str, getattr(cfg, name)))}"
    if not cfg.mlp_mse:
        flags += " --no-mlp-mse"
    if cfg.rollout_episodes is not None:
        flags += f" --rollout-episodes {cfg.rollout_episodes}"
    if cfg.dart_sigma != default.dart_sigma:
        flags += f" --dart-sigma {cfg.dart_sigma}"
    if cfg.dagger_defaults:
        flags += " --dagger-defaults"
    if cfg.dart_train_flags:
        flags += _list_flag("--dart-train-flags", cfg.dart_train_flags)
    if cfg.extra_train_flags:
        flags += _list_flag("--extra-train-flags", cfg.extra_train_flags)
    return flags


def _list_flag(name: str, words: list[str]) -> str:
    """`` --name=--flag value`` for one flag and value, else `` --name='<all the words>'``."""
    if len(words) == 2:
        return f" {name}={shlex.join(words)}"
    return f" {name}={shlex.quote(shlex.join(words))}"


def _horizon(env: str) -> int:
    return ENVS[env].horizon


def _eval_episodes(cfg: Any) -> str:
    """'100', or '100 (Pendulum-v1: 1000)' where the envs differ."""
    counts = {env: eval_episodes(cfg, env) for env in cfg.envs}
    first = counts[cfg.envs[0]]
    others = ", ".join(f"{env}: {n}" for env, n in counts.items() if n != first)
    return f"{first}" + (f" ({others})" if others else "")
