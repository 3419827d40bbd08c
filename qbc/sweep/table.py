"""The result table: one CSV, rows appended a whole cell at a time by replacing the file.

Only the sweep's parent process writes it. An append reads the current file, adds the rows and
writes the result to a temporary file that is renamed over the table
(:func:`qbc.infra.files.atomic_write`),
so a crash leaves the table as it was before or after a whole cell, never half a cell.

Tables written before a column existed stay readable: a missing column reads as empty (None, or
"" for text columns), and the next append rewrites the file under the current header.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError, QbcError
from qbc.infra.files import atomic_write_text, csv_table_text, read_json_object
from qbc.infra.run_folder import exclusive
from qbc.sweep.spec import spec_from_dict

#: Column order of results.csv.
COLUMNS = [
    "cell", "env", "expert", "quantizer", "bins", "bin_width", "n_demos", "seed", "policy",
    "chunk_tokenizer", "chunk_len", "execution", "H",
    "regret", "regret_ci_lo", "regret_ci_hi", "regret_per_step", "return", "expert_return",
    "state_dev_mean", "state_dev_max", "action_dev_mean", "diverged_fraction", "val_loss",
    "tokens_per_chunk", "decode_failures", "chunks_predicted", "decode_failure_rate",
    "decode_actions_per_s", "train_seconds", "wall_seconds", "floor_regret",
    "floor_diverged_fraction", "train_steps", "budget_steps", "best_step", "stopped_early",
    "success", "success_ci_lo", "success_ci_hi", "expert_success", "expert_success_ci_lo",
    "expert_success_ci_hi", "floor_success",
]

#: Columns that measure time, not results: left out when two tables are compared.
TIME_COLUMNS = ("decode_actions_per_s", "train_seconds", "wall_seconds")

_INT_COLUMNS = {"bins", "n_demos", "seed", "H", "chunk_len", "decode_failures",
                "chunks_predicted", "train_steps", "budget_steps", "best_step", "stopped_early"}
_TEXT_COLUMNS = {"cell", "env", "expert", "quantizer", "policy", "chunk_tokenizer", "execution"}

TABLE_FILE = "results.csv"
CONFIG_FILE = "sweep_config.json"


def sweep_lock(sweep_dir: str | Path):
    """The sweep directory's lock (:func:`qbc.infra.run_folder.exclusive`): one writer of its table
    and report at a time (a sweep, or ``qbc sweep report``). The OS drops the lock when the process
    dies, so a killed sweep never leaves a stale lock."""
    return exclusive(Path(sweep_dir) / ".lock", f"qbc sweep is running in {sweep_dir}")


def read_config(path: str | Path) -> dict[str, Any] | None:
    """The sweep_config.json at ``path`` checked against its schema (None if absent): an object
    with ``spec`` (the sweep's tables, keys and value types: :func:`qbc.sweep.spec.spec_from_dict`
    without ``validate``), ``cells`` (objects with a text ``key``) and, where present, ``source``
    (text or null) and ``run`` ({workers >= 1, backend, address}); otherwise CorruptFileError
    naming the file and the field. A sweep reads it before any new work, so a damaged file is
    never replaced."""
    path = Path(path)
    if not path.exists():
        return None
    doc = read_json_object(path, what="sweep config")
    run, cells = doc.get("run", {"workers": 1, "backend": ""}), doc.get("cells")
    problems = [  # source and run are a record of how it ran: optional, but of their kind
        ("source", isinstance(doc.get("source", None), (str, type(None))), "text or null"),
        ("spec", isinstance(doc.get("spec"), dict), "an object of the sweep's tables"),
        ("run", isinstance(run, dict), "an object {workers, backend, address}"),
        ("run.workers", not isinstance(run, dict) or (
            type(run.get("workers")) is int and run["workers"] >= 1), "an integer >= 1"),
        ("run.backend", not isinstance(run, dict) or isinstance(run.get("backend"), str), "text"),
        ("run.address", not isinstance(run, dict) or isinstance(run.get("address"),
                                                                (str, type(None))),
         "text or null"),
        ("cells", isinstance(cells, list) and all(
            isinstance(c, dict) and isinstance(c.get("key"), str) and c["key"] for c in cells),
         "a list of cells, each an object with a text key"),
    ]
    for name, ok, want in problems:
        if not ok:
            value = doc.get(name) if "." not in name else run.get(name.split(".")[1])
            raise CorruptFileError(
                f"sweep config {str(path)!r}: field '{name}' must be {want}, got "
                f"{_short(value)}; it was damaged: restore it, or delete it (the sweep writes it "
                "again)")
    try:
        spec_from_dict(doc["spec"], f"sweep config {str(path)!r} field 'spec'", validate=False)
    except QbcError as exc:
        raise CorruptFileError(f"{exc}; it was damaged: restore it, or delete it (the sweep "
                               "writes it again)") from None
    return doc


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def rows_to_csv(rows: list[dict[str, Any]], header: bool, raw: bool = False) -> str:
    """CSV text of ``rows`` (floats written with repr, so they read back bit for bit; ``raw``:
    the values are CSV text already, written unchanged)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({c: (row.get(c) or "") if raw else _format(row.get(c)) for c in COLUMNS})
    return buf.getvalue()


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of results.csv with numbers parsed (empty fields become None); [] if it is absent.

    The whole file is checked: UTF-8 text ending with a newline (every append writes whole
    lines, so a missing one means the file was cut mid-row), the key columns present, every
    row with exactly the header's fields and every number parseable; otherwise
    CorruptFileError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        return []
    text = _table_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is None:
            return []
        missing = [c for c in ("cell", "policy", "H", "regret") if c not in reader.fieldnames]
        if missing:
            raise CorruptFileError(
                f"{path} is not a qbc sweep table (missing columns {missing}); move it away "
                "or choose another sweep directory")
        absent = {c: "" for c in COLUMNS if c not in reader.fieldnames}  # an older table
        return [_row(path, reader.line_num, raw, absent) for raw in reader]
    except csv.Error as exc:
        raise CorruptFileError(f"{path} is not a readable CSV table ({exc}); the table was "
                               "damaged: restore or delete it and run the sweep again") from None


def _table_text(path: Path) -> str:
    """The text of a table file: UTF-8, no NUL bytes, ending with a newline (or empty)."""
    return csv_table_text(path, str(path), "; restore or delete it and run the sweep again",
                          ": it was truncated outside qbc; delete its last line and run the "
                          "sweep again")


def _row(path: Path, line: int, raw: dict[Any, Any], absent: dict[str, str]) -> dict[str, Any]:
    """One parsed row; a row with missing or extra fields, a bad number or a horizon below 1
    is refused, naming the line and the column."""
    row: dict[str, Any] = {}
    problem = "wrong number of fields" if None in raw or None in raw.values() else None
    for column, text in ({} if problem else {**raw, **absent}).items():
        try:
            row[column] = _parse(column, text)
        except (ValueError, TypeError, OverflowError):
            kind = "an integer" if column in _INT_COLUMNS else "a number"
            problem = f"{column} {text!r} is not {kind}"
            break
    if problem is None and not (isinstance(row.get("H"), int) and row["H"] >= 1):
        problem = f"H {raw.get('H')!r} is not a horizon >= 1"
    if problem is None:
        return row
    shown = ",".join(str(v) for v in raw.values() if v is not None)[:120]
    raise CorruptFileError(
        f"{path} line {line} cannot be read ({problem}: {shown!r}); the table was edited by "
        "hand or truncated: fix or delete that line and run the sweep again")


def _parse(column: str, text: str | None) -> Any:
    if column in _TEXT_COLUMNS:
        return text if text is not None else ""
    if text is None or text == "":
        return None
    return int(text) if column in _INT_COLUMNS else float(text)


def finished_cells(path: str | Path) -> set[str]:
    """Keys of the cells that already have rows in the table."""
    return {row["cell"] for row in read_table(path)}


def append_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to the table at ``path`` atomically (header written on first use)."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        raise CorruptFileError(f"{path} does not end with a newline: it was truncated outside "
                               "qbc; delete its last line and run the sweep again")
    header = ",".join(COLUMNS) + "\n"
    if old and not old.startswith(header):  # written before a column existed: new header
        with path.open(newline="", encoding="utf-8") as f:
            earlier = list(csv.DictReader(f))  # the text of each field, unchanged
        old = rows_to_csv(earlier, header=True, raw=True)
    atomic_write_text(path, old + rows_to_csv(rows, header=not old))
