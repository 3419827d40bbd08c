"""The ledger's numbers over seeds (:func:`summarize`), its table and the paragraph that says,
from those numbers, where tokens win and where they cost (:func:`format_ledger`), and the
headline numbers ``reproduce`` compares (:func:`ledger_headline`).

Per (env, policy) over the seeds: the success rate (mean of the seeds' rates) with a 95% Wilson
interval over all the seeds' episodes pooled and a 95% Student-t interval over the seeds' rates
(the seed interval, clipped to [0, 1]); the mean fraction of episodes per mode (where the env
reports modes); return; regret with the seed interval (one seed: that seed's interval over its
episodes); the fraction of episodes ended early. The expert is rolled out in every cell on the
same seeds; it is counted once per (env, seed).

The comparison: per env, the best token policy (highest mean success, then lowest regret,
among every token learner and decoding: picked on the same episodes it is scored on) against
each learner without tokens. A success difference with a 95% Newcombe interval (from the two
pooled Wilson intervals) above 0 is a win for tokens, below 0 a cost, otherwise
"inconclusive"; regrets are compared by their intervals (apart or overlapping).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qbc.infra.files import read_json
from qbc.rollout.metrics import mean_ci95, proportion_ci95


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (env, policy), in the order of ``rows``' first appearance."""
    groups: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        groups[(r["env"], r["policy"])].setdefault(r["seed"], r)  # the expert: once per seed
    return [_summary_row(env, policy, list(by_seed.values()))
            for (env, policy), by_seed in groups.items()]


def _summary_row(env: str, policy: str, g: list[dict[str, Any]]) -> dict[str, Any]:
    first = g[0]
    out = {"env": env, "policy": policy, "role": first["role"], "learner": first["learner"],
           "decoding": first["decoding"], "tokens": bool(first.get("tokens")),
           "n_seeds": len(g), "episodes": sum(r["episodes"] for r in g),
           "return": float(np.mean([r["return"] for r in g])),
           "ended_early": float(np.mean([r["ended_early"] for r in g])),
           "train_seconds": _mean([r.get("train_seconds") for r in g])}
    regret = [r["regret"] for r in g]
    mean, lo, hi = mean_ci95(np.array(regret))
    out.update(regret=mean, regret_ci95=[lo, hi] if len(g) > 1 else g[0]["regret_ci95"])
    if first["success"] is None:
        out.update(success=None, success_ci95=None, success_seed_ci95=None)
    else:
        hits = np.concatenate([np.arange(r["episodes"]) < round(r["success"] * r["episodes"])
                               for r in g])
        _, w_lo, w_hi = proportion_ci95(hits)
        rate, s_lo, s_hi = mean_ci95(np.array([r["success"] for r in g]))
        out.update(success=rate, success_ci95=[w_lo, w_hi],
                   success_seed_ci95=[max(s_lo, 0.0), min(s_hi, 1.0)])
    out["modes"] = ({k: float(np.mean([r["modes"][k] for r in g])) for k in first["modes"]}
                    if first.get("modes") else None)
    return out


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def difference_ci95(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
    """Success of ``a`` minus ``b`` (summary rows) with Newcombe's 95% interval (method 10,
    from each rate's Wilson interval)."""
    p1, (l1, u1) = a["success"], a["success_ci95"]
    p2, (l2, u2) = b["success"], b["success_ci95"]
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _interval(ci: list[float] | None, fmt: Any = _pct) -> str:
    return "" if ci is None else f" [{fmt(ci[0])}, {fmt(ci[1])}]"


def env_verdicts(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per env and learner without tokens: the best token policy against it (see the module
    text): {env, best, other, diff, lo, hi, verdict, regret_verdict}."""
    out = []
    for env in dict.fromkeys(s["env"] for s in summary):
        rows = [s for s in summary if s["env"] == env and s["role"] == "learner"
                and s["success"] is not None]
        tokens = [s for s in rows if s["tokens"]]
        if not tokens:
            continue
        best = max(tokens, key=lambda s: (s["success"], -s["regret"]))
        for other in (s for s in rows if not s["tokens"]):
            d, lo, hi = difference_ci95(best, other)
            verdict = "tokens win" if lo > 0 else "tokens cost" if hi < 0 else "inconclusive"
            (bl, bh), (ol, oh) = best["regret_ci95"], other["regret_ci95"]
            regret = ("lower with tokens" if bh < ol else "higher with tokens" if bl > oh
                      else "inconclusive (intervals overlap)")
            out.append({"env": env, "best": best, "other": other, "diff": d, "lo": lo, "hi": hi,
                        "verdict": verdict, "regret_verdict": regret})
    return out


def paragraph(summary: list[dict[str, Any]]) -> str:
    """Where tokens win and where they cost, stated from the numbers (:func:`env_verdicts`)."""
    sentences = []
    for v in env_verdicts(summary):
        b, o = v["best"], v["other"]
        sentences.append(
            f"On {v['env']} the best token policy ({b['policy']}) succeeds in "
            f"{_pct(b['success'])}{_interval(b['success_ci95'])} of the episodes against "
            f"{o['policy']}'s {_pct(o['success'])}{_interval(o['success_ci95'])}: "
            f"{v['diff'] * 100:+.0f} points [{v['lo'] * 100:+.0f}, {v['hi'] * 100:+.0f}], "
            f"{v['verdict']}; regret {b['regret']:.3g} vs {o['regret']:.3g}, "
            f"{v['regret_verdict']}.")
    if not sentences:
        return "No env has both a token learner and a learner without tokens with success."
    tally = defaultdict(list)
    for v in env_verdicts(summary):
        tally[v["verdict"]].append(f"{v['env']} vs {v['other']['policy']}")
    closing = "; ".join(f"{k}: {', '.join(vs)}" for k, vs in sorted(tally.items()))
    return " ".join(sentences) + f" In short — {closing}."


def format_ledger(summary: list[dict[str, Any]], n_demos: int, episodes: int) -> str:
    """The markdown table of the summary and the paragraph."""
    lines = [f"Mean over seeds; {n_demos} demonstrations per seed, {episodes} coupled "
             "evaluation episodes per seed. Success: 95% Wilson interval of the pooled episodes "
             "and 95% interval over seeds; regret: 95% interval over seeds.", "",
             "| env | policy | seeds | success [95% CI] | seeds' 95% CI | left / right / none "
             "| ended early | return | regret [95% CI] |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if s["success"] is None:
            success, seeds = "n/a", ""
        else:
            success = _pct(s["success"]) + _interval(s["success_ci95"])
            seeds = _interval(s["success_seed_ci95"]).strip()
        m = s["modes"]
        modes = ("n/a" if m is None
                 else f"{_pct(m['left'])} / {_pct(m['right'])} / {_pct(m['none'])}")
        regret = ("-" if s["role"] == "expert" else
                  f"{s['regret']:.3g}" + _interval(s["regret_ci95"], lambda x: f"{x:.3g}"))
        lines.append(f"| {s['env']} | {s['policy']} | {s['n_seeds']} | {success} | {seeds} "
                     f"| {modes} | {_pct(s['ended_early'])} | {s['return']:.3g} | {regret} |")
    return "\n".join([*lines, "", paragraph(summary)]) + "\n"


def results_text(result: dict[str, Any]) -> str:
    """The table and paragraph of a ledger's results (as :func:`run_ledger` returns them)."""
    cfg = result["config"]
    return format_ledger(result["summary"], cfg["n_demos"], cfg["episodes"])


def ledger_headline(out: Path) -> dict[str, float]:
    """Per (env, policy) of results.json's summary: mean success and mean regret (reproduce's
    headline numbers of the ledger)."""
    values = {}
    for s in read_json(out / "results.json", what="ledger results")["summary"]:
        tag = f"{s['env'].removeprefix('qbc/')},{s['policy']}"
        if s["success"] is not None:
            values[f"success[{tag}]"] = s["success"]
        if s["role"] != "expert":
            values[f"regret[{tag}]"] = s["regret"]
    return values
