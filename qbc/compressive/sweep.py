"""The experiment grid: learners on b-bit projections over bits × k × quantizer × seed.

One projection matrix per seed, with ``max(k)`` columns; a smaller ``k`` uses its first columns
(the columns are iid, so every prefix is itself a Gaussian projection). Every quantizer and bit
depth sees the same projections for a given seed, so their differences are paired.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from qbc.compressive.datasets import Split
from qbc.compressive.learners import METRICS, fit_score
from qbc.compressive.projection import GaussianProjection, projection_quantizer
from qbc.infra.progress import progress_bar

#: bits value meaning "no quantization"
FULL = "full"
#: quantizer column of the unquantized rows
NO_QUANTIZER = "none"


def run_grid(split: Split, model: str, bits: Sequence[int | str], ks: Sequence[int],
             quantizers: Sequence[str], seeds: Sequence[int], progress: bool = True) -> list[dict]:
    """Score ``model`` for every (bits, k, quantizer, seed).

    Args:
        split: preprocessed train/test data.
        model: ``nn``, ``linear`` or ``ls``.
        bits: bit depths (ints) and/or ``"full"`` (unquantized, once per k and seed).
        ks: numbers of projections.
        quantizers: registry names, designed for N(0,1) by :func:`projection_quantizer`.
        seeds: projection seeds.

    Returns:
        one dict per run: ``quantizer, bits (str), k, seed, metric, value``.
    """
    metric = METRICS[split.task]
    int_bits = [b for b in bits if b != FULL]
    qs = {(name, b): projection_quantizer(name, b) for name in quantizers for b in int_bits}
    n_runs = len(seeds) * len(ks) * (len(qs) + (FULL in bits))
    rows: list[dict] = []
    d = split.x_train.shape[1]
    # The fits are small: multi-threaded BLAS spends more time synchronising than computing
    # (8-15x slower measured on 2 busy cores), so every fit runs single-threaded.
    with threadpool_limits(1), progress_bar(total=n_runs, desc=f"compressive {model}",
                                            disable=not progress, leave=False) as bar:
        for seed in seeds:
            proj = GaussianProjection(k=max(ks), seed=int(seed)).fit(d)
            z_tr, z_te = proj.transform(split.x_train), proj.transform(split.x_test)
            for k in ks:
                a, b_ = z_tr[:, :k], z_te[:, :k]
                jobs = [((NO_QUANTIZER, FULL), None)] if FULL in bits else []
                jobs += [((name, str(b)), q) for (name, b), q in qs.items()]
                for (qname, bstr), q in jobs:
                    train, test = (a, b_) if q is None else (q.quantize(a), q.quantize(b_))
                    value = fit_score(model, train, split.y_train, test, split.y_test,
                                      seed=int(seed))
                    rows.append({"quantizer": qname, "bits": bstr, "k": int(k),
                                 "seed": int(seed), "metric": metric, "value": value})
                    bar.update()
    return rows


def summarize(rows: list[dict], confidence: float = 0.95) -> list[dict]:
    """Mean, std and a Student-t interval over seeds for each (quantizer, bits, k).

    Returns dicts ``quantizer, bits, k, metric, n, mean, std, ci_low, ci_high`` (interval NaN when
    there is a single seed)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["quantizer"], r["bits"], r["k"], r["metric"]), []).append(r["value"])
    out = []
    for (qname, bits, k, metric), values in groups.items():
        v = np.asarray(values, dtype=np.float64)
        half = _t_half_width(v, confidence)
        out.append({"quantizer": qname, "bits": bits, "k": k, "metric": metric, "n": len(v),
                    "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "ci_low": float(v.mean() - half), "ci_high": float(v.mean() + half)})
    return out


def compare_quantizers(rows: list[dict], confidence: float = 0.95) -> list[dict]:
    """Per (bits, k): the quantizer with the best mean (highest accuracy, lowest MSE) and whether
    its paired (same-seed) advantage over the runner-up has a t-interval that excludes zero.

    The winner is ``"tie"`` when the two scored identically on every seed.
    Returns dicts ``bits, k, winner, runner_up, diff (winner - runner-up, in the metric),
    ci_half, significant``; empty when fewer than two quantizers were run."""
    table: dict[tuple, dict[str, dict[int, float]]] = {}
    for r in rows:
        if r["quantizer"] == NO_QUANTIZER:
            continue
        table.setdefault((r["bits"], r["k"], r["metric"]), {}).setdefault(
            r["quantizer"], {})[r["seed"]] = r["value"]
    out = []
    for (bits, k, metric), by_q in table.items():
        if len(by_q) < 2:
            continue
        sign = 1.0 if metric == "accuracy" else -1.0
        ranked = sorted(by_q, key=lambda q: -sign * np.mean(list(by_q[q].values())))
        best, second = ranked[0], ranked[1]
        seeds = sorted(set(by_q[best]) & set(by_q[second]))
        diff = np.array([by_q[best][s] - by_q[second][s] for s in seeds])
        half = _t_half_width(diff, confidence)
        mean = float(diff.mean())
        if not np.any(diff):  # identical on every seed (e.g. both 1-bit quantizers are sign)
            best = "tie"
        out.append({"bits": bits, "k": k, "metric": metric, "winner": best, "runner_up": second,
                    "diff": mean, "ci_half": half,
                    "significant": bool(np.isfinite(half) and abs(mean) > half)})
    return out


def _t_half_width(v: np.ndarray, confidence: float) -> float:
    if len(v) < 2:
        return float("nan")
    from scipy import stats  # deferred: policies import this package; 0.3 s per command

    sem = v.std(ddof=1) / np.sqrt(len(v))
    return float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * sem)
