"""The comparison's summary: means over seeds per env, quantizer, method and decoding, and the
target checked against the reference floor (plain BC's quantized expert)."""

from __future__ import annotations

import math
from typing import Any

from qbc.experiments.learner_vs_floor.config import target_limit


def floor_ratio(learner: float, floor: float) -> float:
    return learner / floor if floor and floor > 0 else math.nan


def summarise(rows: list[dict[str, Any]], labels_required: bool = True) -> list[dict[str, Any]]:
    """Means over seeds per (env, quantizer, method, decode), with the target checked against
    the reference floor: learner regret <= 2x the reference floor's (or <= it + 1% of |expert
    return|), diverged no more often than it, and no more expert labels than BC's.

    The reference floor is plain BC's quantized expert (the tokenizer fitted on the expert's
    clean demonstrations) of the same env, quantizer and seeds; a method that fits its own
    tokenizer (DART's data, DAgger's round 0 of fewer episodes) is held to it and reports its
    own floor beside it (``qexp_regret``). Without BC rows a row's own floor is its reference.
    The floors are the nearest-rounding quantized experts (the floor of argmax decoding);
    ``qexp_stochastic_regret`` (smooth only, else NaN) is the stochastic q#π* beside them, not
    used by the target. Without ``labels_required`` (DAgger on its command's defaults, which
    uses more expert labels by design) the labels clause is not part of the target."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["env"], r["quantizer"], r["method"], r["decode"]), []).append(r)
    bc_labels = {(r["env"], r["seed"]): r["expert_labels"] for r in rows if r["method"] == "bc"}
    bc_floor = {(r["env"], r["quantizer"], r["seed"]): (r["qexp_regret"], r["qexp_diverged"])
                for r in rows if r["method"] == "bc"}
    out = []
    for (env, q, method, decode), g in groups.items():
        mean = {k: sum(r.get(k, math.nan) for r in g) / len(g) for k in
                ("regret", "diverged", "qexp_regret", "qexp_diverged", "expert_return",
                 "expert_labels", "qexp_stochastic_regret")}
        refs = [bc_floor.get((env, q, r["seed"]), (r["qexp_regret"], r["qexp_diverged"]))
                for r in g]
        ref_regret = sum(f[0] for f in refs) / len(refs)
        ref_diverged = sum(f[1] for f in refs) / len(refs)
        worst = max(r["regret"] for r in g)
        limit = target_limit(ref_regret, mean["expert_return"])
        labels_ok = not labels_required or all(
            r["expert_labels"] <= bc_labels.get((r["env"], r["seed"]), math.inf) for r in g)
        out.append({"env": env, "quantizer": q, "method": method, "decode": decode,
                    "seeds": len(g), "expert_labels": round(mean["expert_labels"]),
                    "regret": mean["regret"], "regret_worst_seed": worst,
                    "qexp_regret": mean["qexp_regret"],
                    "ratio": floor_ratio(mean["regret"], ref_regret),
                    "diverged": mean["diverged"], "qexp_diverged": mean["qexp_diverged"],
                    "ref_qexp_regret": ref_regret, "ref_qexp_diverged": ref_diverged,
                    "qexp_stochastic_regret": mean["qexp_stochastic_regret"],
                    "expert_return": mean["expert_return"],
                    "meets_target": bool(q != "-" and mean["regret"] <= limit
                                         and mean["diverged"] <= ref_diverged
                                         and labels_ok)})
    return out
