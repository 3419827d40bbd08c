"""The headline readers of the published results (:mod:`qbc.experiments.reproduce`): each reads
a result's output folder and returns the numbers a reader takes from it, by key."""

from __future__ import annotations

import csv
from pathlib import Path

from qbc.errors import CorruptFileError
from qbc.experiments.chunking_report import at_largest_h, policy_label, read_summary
from qbc.infra.files import read_json


def counterexample_headline(out: Path) -> dict[str, float]:
    """Per eps at the largest H: model-based and plain per-step loss, model-based loss / eps."""
    rows = read_json(out / "table.json", what="counterexample table")
    h_max = max(r["H"] for r in rows)
    values = {}
    for r in (r for r in rows if r["H"] == h_max):
        tag = f"eps={r['eps']:g},H={h_max}"
        values[f"model_loss_over_eps[{tag}]"] = r["model_loss_over_eps"]
        values[f"plain_loss[{tag}]"] = r["plain_loss"]
    return values


def counterexample_sampling_headline(out: Path) -> dict[str, float]:
    """Per head at the largest H: per eps the mean over seeds of the mean-state and the
    sampled-state model-based loss / eps; and the largest (sampled - mean) / eps over eps and
    seeds."""
    rows = read_json(out / "per_seed.json", what="counterexample sampling rows")
    h_max = max(r["H"] for r in rows)
    values = {}
    for head in sorted({r["head"] for r in rows}):
        last = [r for r in rows if r["head"] == head and r["H"] == h_max]
        for eps in sorted({r["eps"] for r in last}, reverse=True):
            mine = [r for r in last if r["eps"] == eps]
            tag = f"head={head},eps={eps:g},H={h_max}"
            for column, name in (("model_loss_over_eps", "mean"),
                                 ("sampled_loss_over_eps", "sampled")):
                values[f"{name}_over_eps[{tag}]"] = sum(r[column] for r in mine) / len(mine)
        values[f"max_sampled_minus_mean_over_eps[head={head},H={h_max}]"] = max(
            r["sampled_loss_over_eps"] - r["model_loss_over_eps"] for r in last)
    return values


def obs_encoder_headline(out: Path) -> dict[str, float]:
    """Per encoder: the learner's regret at the largest H and its diverged fraction."""
    values = {}
    for metrics_file in sorted(out.glob("rollout_*/metrics.json")):
        encoder = metrics_file.parent.name.removeprefix("rollout_")
        metrics = read_json(metrics_file, what="rollout metrics")
        h_max = str(max(metrics["horizons"]))
        row = metrics["policies"]["policy"][h_max]
        values[f"regret[{encoder},H={h_max}]"] = row["regret"]
        values[f"diverged[{encoder},H={h_max}]"] = row["diverged_fraction"]
    return values


def scaling_headline(out: Path) -> dict[str, float]:
    """Per initial-state spread: slopes of log regret and log state deviation vs log bin width."""
    values = {}
    for path in sorted(out.glob("x0std*.json")):
        res = read_json(path, what="scaling result")
        values[f"regret_slope_vs_width[{path.stem}]"] = res["regret_slope_vs_width"]
        values[f"state_dev_slope_vs_width[{path.stem}]"] = res["state_dev_slope_vs_width"]
    return values


def _summary_rows(out: Path) -> list[dict[str, str]]:
    """The rows of ``out/summary.csv`` as text; a table without rows is a CorruptFileError."""
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise CorruptFileError(f"{out / 'summary.csv'} has no rows")
    return rows


def sweep_headline(out: Path) -> dict[str, float]:
    """Mean regret and diverged fraction at the largest H of every (env, quantizer, bins, n_demos,
    policy) row of the sweep's summary.csv."""
    rows = _summary_rows(out)
    h_max = max(int(r["H"]) for r in rows)
    values = {}
    for r in (r for r in rows if int(r["H"]) == h_max):
        env = r["env"].removeprefix("qbc/").removesuffix("-v0")
        tag = f"{env},{r['quantizer']}/{r['bins']},n={r['n_demos']},{r['policy']},H={h_max}"
        values[f"regret[{tag}]"] = float(r["regret_mean"])
        values[f"diverged[{tag}]"] = float(r["diverged_fraction"])
    return values


def learner_vs_floor_headline(out: Path) -> dict[str, float]:
    """Per (env, quantizer, method, decoding) row of summary.csv: mean learner regret, the
    quantized expert's regret and the diverged fraction."""
    rows = _summary_rows(out)
    values = {}
    for r in rows:
        env = r["env"].removeprefix("qbc/")
        tag = f"{env},{r['quantizer']},{r['method']},{r['decode']}"
        values[f"regret[{tag}]"] = float(r["regret"])
        values[f"diverged[{tag}]"] = float(r["diverged"])
        if r["quantizer"] != "-":
            values[f"qexp_regret[{tag}]"] = float(r["qexp_regret"])
    return values


def chunking_headline(out: Path) -> dict[str, float]:
    """Per (env, chunk policy, k, execution) at each env's largest H: mean regret and diverged
    fraction (:mod:`qbc.experiments.chunking_report`)."""
    values = {}
    for r in at_largest_h(read_summary(out)):
        env = r["env"].removeprefix("qbc/")
        tag = f"{env},{policy_label(r)},k={r['chunk_len']},{r['execution']},H={r['H']}"
        values[f"regret[{tag}]"] = r["regret_mean"]
        values[f"diverged[{tag}]"] = r["diverged_fraction"]
    return values
