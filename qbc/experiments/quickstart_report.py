"""The quickstart's ``report.md`` and closing summary, written for someone new to the theory.

Every symbol is defined in one line just before the table that first uses it, a ``--tiny`` run
says at its top that it is a smoke test, the results table shows each horizon once, and a short
"What this shows" section is computed from the numbers (best tokenizer per env, learner regret
against its quantized-expert floor). The quantities are explained in docs/theory.md.
"""

from __future__ import annotations

from typing import Any

# One line per symbol, shown where the symbol first appears in the report.
TERMS = {
    "ρ": "spectral radius (largest |eigenvalue|) of the state-transition matrix, open loop (A) "
         "or closed loop under the LQR gain (A + BK); ρ < 1 means a perturbation of the state "
         "dies out, in the long run by a factor ρ per step.",
    "P-EIISS": "probabilistic exponential incremental input-to-state stability: perturbing the "
               "actions moves the state by at most a geometrically fading sum of the past "
               "perturbations; measured by perturbing the expert's actions on coupled episodes "
               "and checking that the state gap dies out once the perturbation stops.",
    "ε_q": "quantization error of the tokenizer, |decode(encode(a)) − a|: its worst case over "
           "the action range for binning quantizers, its mean over the demonstrations' actions "
           "(in-dist) for the others (learned ones, sign), which have no worst-case bound.",
    "κ(δ)": "RTVC violation rate: the fraction of sampled state pairs δ apart whose quantized "
            "expert actions (the deterministic encoding, as q#π* below) differ by more than "
            "2·ε_q; 0 means no sampled pair got codewords that far apart (what binning under a "
            "Lipschitz expert gives at small δ; an estimate, not a bound over all states), > 0 "
            "at small δ is what learned quantizers risk.",
}

SMOKE_TEST_NOTE = ("> **Smoke test (`--tiny`).** This run checks that the pipeline works end to "
                   "end; its data, training and rollouts are far too small for the numbers to "
                   "mean anything. Run `qbc quickstart` without `--tiny` for results.")


def define(*names: str) -> list[str]:
    """Markdown bullet lines defining each of ``names`` (keys of :data:`TERMS`)."""
    return [f"- **{name}**: {TERMS[name]}" for name in names]


def table_horizons(horizons: list[int]) -> list[int]:
    """The horizons the results table shows: the middle and the longest, each once (they
    coincide when the plan has one or two horizons)."""
    return sorted({horizons[len(horizons) // 2], horizons[-1]})


def _tokenizer(row: dict[str, Any]) -> str:
    return f"{row['quantizer']}/{row['bins']}"


def _slope(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f}"


def results_table(result: dict[str, Any]) -> list[str]:
    """The results table: one row per (env, tokenizer), learner regret at each shown horizon."""
    hs = result["plan"]["horizons"]
    shown = table_horizons(hs)
    learner_cols = " | ".join(f"learner regret H={h}" for h in shown)
    lines = [f"| env | tokenizer | ε_q | {learner_cols} | slope | diverged "
             f"| q#π* regret H={hs[-1]} | slope | q#π* diverged "
             f"| RTVC κ(δ={result['plan']['rtvc_deltas'][0]}) |",
             "|---|---|---|" + "---|" * len(shown) + "---|---|---|---|---|---|"]
    for r in result["rows"]:
        lr, qe = r["learner"], r["quantized_expert"]
        regrets = " | ".join(f"{lr['regret'][hs.index(h)]:.3g}" for h in shown)
        lines.append(
            f"| {r['env'].split('/')[-1]} | {_tokenizer(r)} | {r['eps_q']:.3g} "
            f"({r['eps_q_kind']}) | {regrets} | {_slope(lr['slope'])} | {lr['diverged']:.0%} "
            f"| {qe['regret'][-1]:.3g} | {_slope(qe['slope'])} | {qe['diverged']:.0%} "
            f"| {r['rtvc'][0]:.3f} |")
    return lines


def _times_floor(row: dict[str, Any]) -> str:
    """`` (4.7× its floor)``: the learner's regret as a multiple of its q#π* regret, if > 0."""
    floor = row["quantized_expert"]["regret"][-1]
    return f" ({row['learner']['regret'][-1] / floor:.2g}× its floor)" if floor > 0 else ""


def _env_finding(env_id: str, rows: list[dict[str, Any]], h: int) -> str:
    """One bullet: the best tokenizer on ``env_id`` and how far learners sit above q#π*."""
    best = min(rows, key=lambda r: r["learner"]["regret"][-1])
    text = (f"- **{env_id.split('/')[-1]}**: lowest learner regret at H={h}: {_tokenizer(best)} "
            f"({best['learner']['regret'][-1]:.3g})")
    if len(rows) > 1:
        worst = max(rows, key=lambda r: r["learner"]["regret"][-1])
        text += f", highest: {_tokenizer(worst)} ({worst['learner']['regret'][-1]:.3g})"
    gaps = sorted((r["learner"]["regret"][-1] - r["quantized_expert"]["regret"][-1], r)
                  for r in rows)
    (low, low_row), (high, high_row) = gaps[0], gaps[-1]
    text += (f". Learner regret minus its quantized-expert floor (q#π*): "
             f"{high:.3g} for {_tokenizer(high_row)}{_times_floor(high_row)}")
    if len(rows) > 1:
        text += f" down to {low:.3g} for {_tokenizer(low_row)}"
    text += (" — the part due to learning, not quantization" if high > 0
             else " — no learner is above its floor")
    below = [_tokenizer(r) for g, r in gaps if g < 0]
    if below:
        text += f"; below the floor (within noise or luck): {', '.join(below)}"
    diverged = max(rows, key=lambda r: r["learner"]["diverged"])
    if diverged["learner"]["diverged"] > 0:
        text += (f". Learner episodes diverged: up to {diverged['learner']['diverged']:.0%} "
                 f"({_tokenizer(diverged)})")
    return text + "."


def findings(result: dict[str, Any]) -> list[str]:
    """The "What this shows" bullets, one per env, computed from ``result['rows']``."""
    h = result["plan"]["horizons"][-1]
    rows = result["rows"]
    return [_env_finding(env, [r for r in rows if r["env"] == env], h)
            for env in dict.fromkeys(r["env"] for r in rows)]


def _environments(result: dict[str, Any]) -> list[str]:
    lines = ["## Environments", "", *define("ρ", "P-EIISS"), "",
             "| env | expert | open-loop ρ | LQR closed-loop ρ | incremental stability |",
             "|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    for env_id, e in result["envs"].items():
        lines.append(f"| {env_id} | {e['expert']} | {fmt(e['open_loop_radius'])} | "
                     f"{fmt(e['lqr_closed_loop_radius'])} | {e['stability']} |")
    return lines


def format_report(result: dict[str, Any], plots: list[str]) -> str:
    """``report.md`` of a quickstart ``result`` (as written to ``results.json``)."""
    lines = ["# qbc quickstart report", ""]
    if result.get("tiny"):
        lines += [SMOKE_TEST_NOTE, ""]
    lines += [f"Wall time {result['seconds']:.0f} s. Regret is J(expert) − J(·) summed over the "
              "first H steps (rewards in [0, 1]), mean over coupled episodes (same initial "
              "states and noise as the expert). *Slope* is the fitted exponent p of regret ≈ "
              "c·H^p (p ≈ 1: no compounding). q#π* is the quantized expert (the expert's action "
              "through the tokenizer's deterministic encoding; for smooth binning that is nearest "
              "rounding, the floor of the argmax-decoded learner, not the theory's stochastic "
              "q#π*, which `qbc rollout` and `qbc certify` show), which separates quantization "
              "error from learning error. "
              "The theory behind these quantities: docs/theory.md in the qbc repository.", "",
              *_environments(result), "",
              "## Results", "", *define("ε_q", "κ(δ)"), "", *results_table(result), "",
              "## What this shows", "", *findings(result), "", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    lines += ["", *_videos(result)]
    lines += ["", "Full numbers: `results.json`; policies under `policies/`, datasets under "
              "`datasets/`."]
    return "\n".join(lines) + "\n"


def _videos(result: dict[str, Any]) -> list[str]:
    """The "Videos" section: a link per video the run wrote, or how to get them."""
    rows = [r for r in result["rows"] if r.get("video")]
    lines = ["## Videos", ""]
    if not rows:
        return lines + ["No videos in this run (they need imageio: `pip install 'qbc[video]'`; "
                        "`--no-video` turns them off)."]
    lines.append(f"The first coupled episode ({result['plan']['video_horizon']} steps) of each "
                 "env: expert, learner and q#π* side by side, state (solid) and action (dashed) "
                 "traces, with return and cumulative regret in the header.")
    lines.append("")
    lines += [f"- {r['env']}, learner {_tokenizer(r)}: [{r['video']}]({r['video']})"
              for r in rows]
    return lines


def format_summary(result: dict[str, Any]) -> str:
    """The one-screen summary printed at the end of a quickstart."""
    hs = result["plan"]["horizons"]
    lines = [f"qbc quickstart: regret of the learner and of the quantized expert (q#π*) at "
             f"H={hs[-1]}, fitted growth exponent p (regret ~ H^p)"]
    if result.get("tiny"):
        lines.append("smoke test (--tiny): the numbers below mean nothing")
    lines.append(f"{'env':<18}{'tokenizer':<12}{'eps_q':>8}{'learner':>10}{'p':>6}{'div':>6}"
                 f"{'q#π*':>10}{'p':>6}{'div':>6}")
    for r in result["rows"]:
        lr, qe = r["learner"], r["quantized_expert"]
        p = lambda s: "   -" if s is None else f"{s:6.2f}"  # noqa: E731
        lines.append(f"{r['env'].split('/')[-1]:<18}{_tokenizer(r):<12}"
                     f"{r['eps_q']:>8.3g}{lr['regret'][-1]:>10.3g}{p(lr['slope'])}"
                     f"{lr['diverged']:>6.0%}{qe['regret'][-1]:>10.3g}{p(qe['slope'])}"
                     f"{qe['diverged']:>6.0%}")
    return "\n".join(lines)
