"""Atomic file writes: a file appears under its final name complete, or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, rename it over
    ``path``. A crash at any point leaves either the old file or the new one, never a partial one
    (at worst a hidden ``.<name>.*.tmp`` file beside it). The final file gets mode 0666 minus the
    umask (0644 with the usual umask 022), like a file made with ``open(path, "w")``.
    """
    path = Path(path)
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
    """Write ``obj`` as indented JSON to ``path`` atomically. NaN/inf are refused."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON, turning a missing, truncated or malformed file into a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(
            f"{what} {str(path)!r} is truncated or not valid JSON ({exc}); re-create it"
        ) from None


def atomic_write_dir(path: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Replace the directory ``path`` as a whole: ``fill(tmp_dir)`` writes the new contents into
    a hidden folder beside it, which is then swapped in by renames. After a crash, ``path`` holds
    either the old contents or the new ones; if the crash fell between the two renames, the old
    contents wait in ``.<name>.old`` and :func:`recover_dir` puts them back.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover_dir(path: str | os.PathLike) -> bool:
    """Undo a swap of :func:`atomic_write_dir` cut short by a crash: when ``path`` is missing and
    its ``.<name>.old`` exists, move the old contents back. True when something was recovered."""
    path = Path(path)
    old = path.parent / f".{path.name}.old"
    if not path.exists() and old.is_dir():
        os.replace(old, path)
        return True
    return False


def prepare_out_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create the output folder ``out``; refuse a non-empty existing one unless ``overwrite``.

    Nothing is deleted: with ``overwrite`` a command's files are replaced one by one
    (atomically), and anything else in the folder stays.
    """
    from qbc.errors import OutputExistsError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {str(out)!r} is a file; choose a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {str(out)!r} exists and is not empty; "
                                "pass --overwrite to replace its files or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out
