"""The rows a comparison folder already holds, so that a comparison continues from its
``results.csv`` alone: on another machine, or from a fresh clone where only ``results.csv`` and
``settings.json`` were kept (the run folders, datasets and checkpoints are not needed).

``settings.json`` records every setting that decides a row (all of :class:`FloorConfig` but the
output folder, the worker count and which envs, seeds and quantizers this invocation runs). Stored
rows are reused only under equal settings; a folder continued with other settings starts its
table afresh (its finished run folders are still reused, as before).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qbc.experiments.learner_vs_floor.config import DECODINGS, RESULT_FIELDS, FloorConfig
from qbc.infra.files import atomic_write_csv, atomic_write_text

#: FloorConfig fields that do not decide a row: where it is written, how many runs go at once,
#: and which of the jobs this invocation runs.
NOT_ROW_SETTINGS = ("out", "workers", "envs", "seeds", "quantizers", "mlp_mse")
_TEXT_FIELDS = ("env", "quantizer", "method", "decode")
_INT_FIELDS = ("seed", "expert_labels", "H")

JobKey = tuple[str, int, str]
"""(env id, training seed, quantizer or "-" for the mlp-mse reference)."""


def row_settings(cfg: FloorConfig) -> dict[str, Any]:
    """``cfg``'s settings that decide its rows, as JSON values."""
    fields = asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in fields.items() if k not in NOT_ROW_SETTINGS}


def job_key(row: dict[str, Any]) -> JobKey:
    return (row["env"], int(row["seed"]), row["quantizer"])


def expected_rows(cfg: FloorConfig, quantizer: str) -> int:
    """Rows one finished job has: every method and decoding, or one for mlp-mse ("-")."""
    return 1 if quantizer == "-" else len(cfg.methods) * len(DECODINGS)


def load_rows(out: Path, cfg: FloorConfig) -> dict[JobKey, list[dict[str, Any]]]:
    """The finished jobs' rows in ``out/results.csv``, by job, when ``out/settings.json``
    equals ``cfg``'s row settings; empty otherwise (no table, other settings, an unfinished
    job's partial rows are dropped)."""
    try:
        stored = json.loads((out / "settings.json").read_text())
        with open(out / "results.csv", newline="") as fh:
            table = list(csv.DictReader(fh))
    except (OSError, ValueError):
        return {}
    if stored != row_settings(cfg):
        return {}
    jobs: dict[JobKey, list[dict[str, Any]]] = {}
    try:
        for text_row in table:
            row = _parsed(text_row)
            jobs.setdefault(job_key(row), []).append(row)
    except (TypeError, ValueError):  # a damaged table: its jobs are made again
        return {}
    return {key: rows for key, rows in jobs.items() if len(rows) == expected_rows(cfg, key[2])}


def save_rows(out: Path, cfg: FloorConfig, rows: list[dict[str, Any]]) -> None:
    """``rows`` as ``out/results.csv`` with the settings they were made with."""
    atomic_write_text(out / "settings.json", json.dumps(row_settings(cfg), indent=1) + "\n")
    atomic_write_csv(out / "results.csv", rows, RESULT_FIELDS)


def _parsed(text_row: dict[str, str]) -> dict[str, Any]:
    """A results.csv row with its numbers read back (NaN as :data:`math.nan`, the value the
    comparison itself stores)."""
    row: dict[str, Any] = {}
    for field in RESULT_FIELDS:
        value = text_row.get(field, "")
        if field in _TEXT_FIELDS:
            row[field] = value
        elif field in _INT_FIELDS:
            row[field] = int(value)
        else:
            number = float(value) if value else math.nan
            row[field] = math.nan if math.isnan(number) else number
    return row
