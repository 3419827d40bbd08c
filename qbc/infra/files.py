"""Atomic file writes: a file appears under its final name complete, or not at all; JSON read
back with typed errors; sha256 of files. Folders and locks: :mod:`qbc.infra.run_folder`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError, OutputExistsError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli package (a dependency there)
    import tomli as tomllib


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, rename it over
    ``path``. A crash at any point leaves either the old file or the new one, never a partial one
    (at worst a hidden ``.<name>.*.tmp`` file beside it). The final file gets mode 0666 minus the
    umask (0644 with the usual umask 022), like a file made with ``open(path, "w")``. A
    ``path`` that is a folder is refused before anything is written (:func:`check_not_folder`).
    """
    path = check_not_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp makes the file 0600; a final file gets the mode open() would give it.
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def check_not_folder(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or OutputExistsError when it is a folder: a file cannot be written
    there (os.replace raised IsADirectoryError after the work was done)."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{str(path)!r} is a folder; give a file name")
    return path


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically. NaN/inf are refused (pass the
    object through :func:`json_safe` first to write them as null, or check it first with
    :func:`qbc.infra.validate.check_finite_json`)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, rows: list[dict[str, Any]],
                     fieldnames: list[str] | None = None, lineterminator: str = "\n") -> Path:
    """Write ``rows`` (dicts with the same keys; columns ``fieldnames``, default the first row's
    keys) as a CSV table with a header to ``path`` atomically. No rows and no ``fieldnames``
    give an empty file."""
    import csv
    import io

    buf = io.StringIO()
    columns = list(rows[0]) if fieldnames is None and rows else fieldnames
    if columns is not None:
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator=lineterminator)
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON values, the one rule for every JSON file qbc writes.

    Dataclasses and mappings become dicts, tuples, lists and sets lists (sets sorted), numpy
    arrays and scalars lists and Python numbers, paths strings. **NaN and ±inf become None**
    (JSON ``null``): JSON has no such numbers, and a reader should see "no value" (a fit that did
    not converge, a rate that never crossed) rather than a string to parse. Other values are
    returned as they are (``json.dumps`` refuses what it cannot write)."""
    import dataclasses
    import math

    import numpy as np

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {(k.item() if isinstance(k, np.generic) else k): json_safe(v)
                for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return [json_safe(v) for v in sorted(obj)]
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


#: What the parsers raise on text they cannot take: malformed text, bad UTF-8, an integer of more
#: digits than Python converts (ValueError), nesting deeper than the interpreter's stack.
_PARSE_ERRORS = (ValueError, UnicodeDecodeError, RecursionError)


def parse_json_text(text: str | bytes, what: str, path: str | os.PathLike) -> Any:
    """``json.loads(text)``, with anything it cannot parse (malformed or truncated text, bad
    UTF-8, a number of thousands of digits, nesting thousands deep) a one-line
    CorruptFileError naming ``what`` and ``path``."""
    try:
        return json.loads(text)
    except _PARSE_ERRORS as exc:
        raise CorruptFileError(
            f"{what} {str(path)!r} is truncated or not valid JSON ({_first_line(exc)}); "
            "re-create it") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing, truncated or malformed file into a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{what} {str(path)!r} is not UTF-8 text ({exc}); "
                               "re-create it") from None
    return parse_json_text(text, what, path)


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a TOML file; malformed text, bad UTF-8 or nesting thousands deep is a one-line
    CorruptFileError naming ``what`` and ``path``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except _PARSE_ERRORS as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise CorruptFileError(
            f"{what} {str(path)!r} is not valid TOML ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def read_json_object(path: str | os.PathLike, what: str = "JSON file") -> dict[str, Any]:
    """:func:`read_json` of a file that must hold a JSON object (a config, a state): valid
    JSON of another kind (a list, a number) is a CorruptFileError too."""
    value = read_json(path, what)
    if not isinstance(value, dict):
        raise CorruptFileError(f"{what} {str(path)!r} holds a JSON {type(value).__name__}, not "
                               "an object; it was damaged or replaced: re-create it")
    return value


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def csv_table_text(path: Path, label: str, binary_fix: str, cut_fix: str) -> str:
    """The text of a CSV table file: UTF-8 without NUL bytes, ending with a newline (or empty).
    A binary file or one cut mid-row is a CorruptFileError: ``label`` (how the file is named)
    and what is wrong, followed by ``binary_fix`` or ``cut_fix`` (what to do about it)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise CorruptFileError(f"{label} is not a text CSV table (binary or not UTF-8)"
                               f"{binary_fix}")
    if text and not text.endswith("\n"):
        raise CorruptFileError(f"{label} was cut mid-row (its last line has no newline){cut_fix}")
    return text


def read_csv_rows(path: str | os.PathLike, what: str, columns: tuple[str, ...] = ()
                  ) -> list[dict[str, str]]:
    """The rows of a CSV table written by :func:`atomic_write_csv`, as text, every one checked:
    UTF-8 without NUL bytes, a header holding ``columns``, every row exactly the header's
    fields, no unclosed quote. Anything else (binary, cut mid-row, a row of the wrong length) is
    a CorruptFileError naming ``what``, the file and the line. A missing file is an OSError."""
    import csv
    import io

    path = Path(path)
    text = csv_table_text(path, f"{what} {str(path)!r}",
                          "; it was damaged: restore it or re-create it",
                          "; restore it or re-create it")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise CorruptFileError(f"{what} {str(path)!r} lacks the columns {missing}; it is "
                                   "not such a table or was damaged: restore it or re-create it")
        rows = []
        for row in reader:
            if None in row or None in row.values():
                more = "more" if None in row else "fewer"
                raise CorruptFileError(
                    f"{what} {str(path)!r} line {reader.line_num} has {more} fields than its "
                    "header (damaged, or cut mid-row); restore it or re-create it")
            rows.append(row)
    except csv.Error as exc:  # an unclosed quote, a field over csv's size limit, ...
        raise CorruptFileError(f"{what} {str(path)!r} is not a readable CSV table ({exc}); "
                               "restore it or re-create it") from None
    return rows
