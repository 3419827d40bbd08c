"""Output folders and files as transactions: a folder swapped in whole (:func:`atomic_write_dir`),
the one writer lock per output (:func:`exclusive`, :func:`locked_output`), a new or ``--overwrite``
output folder staged beside the old one and swapped in when complete (:func:`output_dir`), the
same for one file (:func:`output_file`), and the leftovers of a run cut short (:func:`leftovers`).
Single files are written by :mod:`qbc.infra.files`."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from qbc.errors import InvalidValueError, LockTimeoutError, OutputExistsError
from qbc.infra.progress import progress_bar


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


def lock_path_for(target: str | os.PathLike) -> Path:
    """The lock file of an output ``target`` (a folder or a file): hidden, beside it, so that
    it survives the target being swapped by :func:`output_dir`. The path is resolved first:
    every spelling of one folder ('r', './r', its absolute path, a symlink to it) has one
    lock."""
    target = Path(target).resolve()
    return target.parent / f".{target.name}.lock"


#: Lock files this process holds (so that a nested hold of the same lock does not block).
_HELD: set[Path] = set()
#: Seconds a waiting :func:`exclusive` gives up after unless told otherwise (``wait=True``).
LOCK_WAIT_S = 3600.0
#: Seconds between two tries of a waiting :func:`exclusive`.
LOCK_POLL_S = 0.25


@contextmanager
def exclusive(lock: str | os.PathLike, what: str, wait: bool | float = False,
              progress: bool = False, wait_flag: str | None = None) -> Iterator[None]:
    """Hold an advisory lock on the file ``lock`` while the block runs: one writer at a time.

    A second holder is refused at once with one line naming ``what`` and the holder (pid and
    host, written into the lock file). With ``wait`` (seconds; True: :data:`LOCK_WAIT_S`) it
    tries again until the holder is done, for at most that long, then raises
    LockTimeoutError naming the holder and the lock file; ``progress`` shows the wait (a bar on
    a terminal, a line every ~10 s in a log); ``wait_flag`` (e.g. ``--lock-timeout``) is the
    caller's setting of the wait, named in that message. The OS drops the lock when the process
    dies, so a killed command never leaves a stale lock; the file is removed on release (a
    writer that locked a file removed meanwhile notices it and tries again). Not POSIX: no
    lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return

    timeout = LOCK_WAIT_S if wait is True else float(wait or 0.0)
    if not timeout >= 0:  # NaN too
        raise InvalidValueError(f"a lock wait must be a number of seconds >= 0, got {wait!r}")
    lock = Path(lock).absolute()
    if lock in _HELD:  # this process holds it already (a command inside a command)
        yield
        return
    f = _acquire(fcntl, lock, what, timeout, progress, wait_flag)
    _HELD.add(lock)
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {socket.gethostname()}")
        f.flush()
        yield
    finally:
        _HELD.discard(lock)
        lock.unlink(missing_ok=True)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _acquire(fcntl: Any, lock: Path, what: str, timeout: float, progress: bool,
             wait_flag: str | None) -> IO[str]:
    """The open lock file ``lock``, flocked exclusively: polled every :data:`LOCK_POLL_S`
    seconds for at most ``timeout`` seconds (0: refused at once) while another process holds
    it, the wait shown as a bar with ``progress``; a file the holder removed meanwhile is
    opened and locked anew (see :func:`exclusive`)."""
    start = time.monotonic()
    bar = None
    try:
        while True:
            f = open(lock, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = _holder(f.read())
                f.close()
                waited = time.monotonic() - start
                _check_wait(holder, waited, timeout, what, lock, wait_flag)
                if bar is None:
                    bar = progress_bar(total=round(timeout), desc=f"waiting for {holder}",
                                       unit="s", disable=not progress, leave=False)
                bar.update(round(waited) - bar.n)
                time.sleep(min(LOCK_POLL_S, max(timeout - waited, 0.0)))
                continue
            if _same_file(f, lock):
                return f
            f.close()  # removed by the holder we waited for: lock the new file
    finally:
        if bar is not None:
            bar.close()


def _check_wait(holder: str, waited: float, timeout: float, what: str, lock: Path,
                wait_flag: str | None) -> None:
    """Raise when a lock held by ``holder`` may be waited for no longer: at once without a
    wait (``timeout`` 0), LockTimeoutError once ``waited`` (seconds) reaches ``timeout``."""
    if timeout == 0:
        raise InvalidValueError(f"another {what} ({holder}); wait for it to end or "
                                "choose another output") from None
    if waited >= timeout:
        raise LockTimeoutError(
            f"gave up after {waited:.0f} s waiting for {holder} to finish ({what}; "
            f"lock file {str(lock)!r}): run again when it has ended, or allow a "
            "longer wait" + (f" ({wait_flag} SECONDS; now {timeout:g})"
                             if wait_flag else "")) from None


def _holder(text: str) -> str:
    """'pid 123 on host h' from a lock file's 'pid host' (older files: the pid alone)."""
    pid, _, host = text.strip().partition(" ")
    return f"pid {pid or 'unknown'}" + (f" on host {host.strip()}" if host.strip() else "")


def _same_file(f: Any, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def check_out_dir(out: str | os.PathLike, overwrite: bool, refusal: str | None = None) -> Path:
    """Refuse ``out`` when it is a file, or a non-empty folder without ``overwrite``
    (OutputExistsError with ``refusal`` or the default message). Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {str(out)!r} is a file; choose a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(refusal or (
            f"output folder {str(out)!r} exists and is not empty; pass --overwrite to replace "
            "its files or choose another --out"))
    return out


@contextmanager
def output_dir(out: str | os.PathLike, overwrite: bool, what: str,
               refusal: str | None = None,
               keep: Callable[[Path], bool] | None = None,
               owned: tuple[str, ...] = ()) -> Iterator[Path]:
    """The folder a command writes its outputs into, locked against a second writer.

    A missing or empty ``out`` is created and written directly. A non-empty ``out`` (with
    ``overwrite``) is not touched while the command runs: the outputs go to a hidden staging
    folder beside it, and only when the block ends without error are they moved in, each entry
    replacing the one of the same name; entries named in ``owned`` (the command's own outputs)
    that the new run did not write are removed too, so no stale output of the old run survives
    (anything else in ``out`` stays). On an error the
    staging folder is removed and ``out`` is as it was; a folder this call created is removed
    too, unless ``keep(out)`` says it holds something worth keeping (a training run with a
    checkpoint to ``--resume`` from). Staging folders of ``out`` left by a killed writer are
    removed once the lock is held.
    """
    import shutil

    out = check_out_dir(out, overwrite, refusal)
    with locked_output(out, what) as parents:
        check_out_dir(out, overwrite, refusal)  # again, under the lock
        _remove_entries(leftovers(parents, f".{out.name}.staging-"))
        staged = out.is_dir() and any(out.iterdir())
        created = not out.exists()
        work = (Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parents))
                if staged else out)
        work.mkdir(exist_ok=True)
        try:
            yield work
            if staged:
                stale = [out / n for n in owned if not (work / n).exists()]
                out.mkdir(exist_ok=True)
                _move_entries(work, out)
                _remove_entries(stale)
        except BaseException:
            if staged:
                shutil.rmtree(work, ignore_errors=True)
            elif created and not (keep is not None and keep(out)):
                shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            if staged:
                shutil.rmtree(work, ignore_errors=True)


def leftovers(folder: Path, prefix: str) -> list[Path]:
    """The entries of ``folder`` named by ``tempfile.mkdtemp(prefix=prefix)`` (the prefix and
    8 random characters): staging folders a killed writer left."""
    import re

    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}")
    return sorted(p for p in Path(folder).glob(f"{glob.escape(prefix)}*")
                  if pattern.fullmatch(p.name))


def _remove_entries(paths: list[Path]) -> None:
    """Delete files and folders (missing ones are fine)."""
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()


@contextmanager
def output_file(path: str | os.PathLike, overwrite: bool, what: str,
                flag: str = "--out") -> Iterator[Path]:
    """The file a command writes its one output into (atomically, :func:`atomic_write`),
    locked against a second writer. A folder, or an existing file without ``overwrite``, is
    refused before anything is created, naming the command's ``flag``; the old file stays
    until the new one replaces it."""
    path = Path(path)

    def check() -> None:
        if path.is_dir():
            raise OutputExistsError(f"{flag} {str(path)!r} is a folder; give a file name")
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{str(path)!r} exists; pass --overwrite to replace it or "
                                    f"choose another {flag}")

    check()
    with locked_output(path, what):
        check()  # again, under the lock
        yield path


@contextmanager
def locked_output(target: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the lock of the output ``target`` (:func:`exclusive`, :func:`lock_path_for`) for
    the block, named 'qbc <what> is writing <target>'; its missing parent folders are made
    first and removed again if the block fails. Yields the parent folder."""
    target = Path(target)
    with _parents_made(target) as parent, \
            exclusive(lock_path_for(target), f"qbc {what} is writing {str(target)!r}"):
        yield parent


@contextmanager
def _parents_made(path: Path) -> Iterator[Path]:
    """Make the missing parent folders of ``path`` for the block; on an error the ones made
    here are removed again when empty (a refused or failed command leaves no new folders).
    Yields the parent folder."""
    parent = path.absolute().parent
    missing = [p for p in [parent, *parent.parents] if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    try:
        yield parent
    except BaseException:
        for p in missing:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _move_entries(src: Path, dst: Path) -> None:
    """Move every entry of ``src`` into ``dst`` by renames; an entry of the same name in ``dst``
    is set aside first and deleted only after the new one is in place."""
    import shutil

    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if target.exists() and (entry.is_dir() or target.is_dir()):
            aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".old", dir=dst))
            os.replace(target, aside / "old")
            os.replace(entry, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(entry, target)
