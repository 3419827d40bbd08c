"""The rows a comparison folder already holds, so that a comparison continues from its
``results.csv`` alone: on another machine, or from a fresh clone where only ``results.csv`` and
``settings.json`` were kept (the run folders, datasets and checkpoints are not needed).

``settings.json`` records every setting that decides a row (all of :class:`FloorConfig` but the
output folder, the worker count and which envs, seeds and quantizers this invocation runs). Stored
rows are reused only under equal settings; a folder continued with other evaluation settings or
methods starts its table afresh (its finished runs are reused, its rollouts redone), one
continued with settings that decide its runs is refused (its runs were made with the others). A
damaged table or settings file is refused, never silently replaced. :class:`WallClock` keeps the
comparison's wall time over its invocations in ``elapsed.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.experiments.learner_vs_floor.config import DECODINGS, RESULT_FIELDS, FloorConfig
from qbc.infra.files import atomic_write_csv, atomic_write_text, read_csv_rows, read_json_object

#: FloorConfig fields that do not decide a row: where it is written, how many runs go at once,
#: and which of the jobs this invocation runs.
NOT_ROW_SETTINGS = ("out", "workers", "envs", "seeds", "quantizers", "mlp_mse")
#: Row settings that decide only the evaluation: a comparison continued with other values
#: redoes its rollouts (their folders record what they ran) and keeps its runs; the methods
#: each have their own runs.
EVALUATION_SETTINGS = ("rollout_episodes", "horizon", "methods")
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
    equals ``cfg``'s row settings; empty when there is no table or its evaluation settings
    differ (an unfinished job's partial rows are dropped). A damaged settings.json or table is
    a CorruptFileError, and settings that decide the runs (all but :data:`EVALUATION_SETTINGS`)
    other than ``cfg``'s an InvalidValueError, raised before anything is written: the folder's
    runs were made with them."""
    settings, table = out / "settings.json", out / "results.csv"
    if not settings.is_file():
        return {}
    stored = read_json_object(settings, what="comparison settings")
    mine = row_settings(cfg)
    differ = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
    runs_differ = [k for k in differ if k not in EVALUATION_SETTINGS]
    if runs_differ:
        raise InvalidValueError(
            f"{out} holds a comparison made with other settings ({', '.join(runs_differ)}: "
            f"{', '.join(f'{k}={stored.get(k)!r}' for k in runs_differ)}); continue it with "
            "the same ones or choose another --out")
    if differ or not table.is_file():
        return {}
    jobs: dict[JobKey, list[dict[str, Any]]] = {}
    for line, text_row in enumerate(read_csv_rows(table, "results table", tuple(RESULT_FIELDS)),
                                    2):
        row = _parsed(text_row, table, line)
        jobs.setdefault(job_key(row), []).append(row)
    return {key: rows for key, rows in jobs.items() if len(rows) == expected_rows(cfg, key[2])}


def save_rows(out: Path, cfg: FloorConfig, rows: list[dict[str, Any]]) -> None:
    """``rows`` as ``out/results.csv`` with the settings they were made with."""
    atomic_write_text(out / "settings.json", json.dumps(row_settings(cfg), indent=1) + "\n")
    atomic_write_csv(out / "results.csv", rows, RESULT_FIELDS)


def _parsed(text_row: dict[str, str], path: Path, line: int) -> dict[str, Any]:
    """A results.csv row with its numbers read back (NaN as :data:`math.nan`, the value the
    comparison itself stores); a field that is not what the comparison writes is a
    CorruptFileError naming the file, the line and the field."""
    row: dict[str, Any] = {}
    for field in RESULT_FIELDS:
        value = text_row[field]
        try:
            if field in _TEXT_FIELDS:
                if not value or not value.isprintable():
                    raise ValueError
                row[field] = value
            elif field in _INT_FIELDS:
                row[field] = int(value)
            else:
                number = float(value) if value else math.nan
                row[field] = math.nan if math.isnan(number) else number
        except ValueError:
            raise CorruptFileError(f"results table {str(path)!r} line {line}: {field} "
                                   f"{value[:40]!r} is not what the comparison writes; it was "
                                   "damaged: restore it or re-create it") from None
    return row


class WallClock:
    """The comparison's wall seconds over all its invocations, kept in ``out/elapsed.json``.
    Each :meth:`save` adds the time since the previous one, so an invocation that is killed
    outright loses only the time since its last finished job."""

    def __init__(self, out: Path):
        self.path = out / "elapsed.json"
        self.started = self.saved_at = time.time()
        self.total = 0.0
        if self.path.exists():  # read (and checked) before anything is written
            seconds = read_json_object(self.path, "comparison wall time").get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                    0 <= seconds < math.inf):
                raise CorruptFileError(f"{self.path}: seconds {seconds!r} is not a number of "
                                       "seconds; it was damaged: delete it (the time is "
                                       "counted afresh)")
            self.total = float(seconds)

    def this_invocation(self) -> float:
        return time.time() - self.started

    def save(self) -> float:
        """Add the seconds since the last save to the total; the new total."""
        now = time.time()
        self.total += now - self.saved_at
        atomic_write_text(self.path, json.dumps({"seconds": self.total}) + "\n")
        self.saved_at = now
        return self.total
