"""How a command that failed ends: one line and an exit code (:func:`describe_error`): 2 for what
the user can fix (bad input, the file system, memory, a device), 1 for a bug, whose traceback
goes to a log file named in the line."""

from __future__ import annotations

import errno
import os
import sys

from qbc.errors import QbcError


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines())


def describe_error(exc: BaseException, name: str) -> tuple[str, int]:
    """One line and the exit code for an exception that ended command ``name``: 2 for what the
    user can fix (bad input, the file system, memory, a device), 1 for a bug, whose traceback
    goes to a log file named in the line."""
    if isinstance(exc, QbcError):
        return _one_line(exc), exc.exit_code
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = exc.filename or "the output"
        return f"disk full while writing {where}; free some space and run it again", 2
    if isinstance(exc, OSError):  # the file system said no (permissions, a missing folder)
        return (f"{type(exc).__name__}: {_one_line(exc)}; check the paths and their "
                "permissions"), 2
    if isinstance(exc, MemoryError) or _out_of_memory(exc):
        return ("out of memory; use smaller sizes (fewer --episodes, --bins, a smaller model "
                "or batch)"), 2
    kind = _user_error_kind(exc)
    if kind is not None:
        return f"{kind}: {_first_line(exc)}", 2
    return f"internal error, please report it with the log {_log_traceback(exc, name)}", 1


def _out_of_memory(exc: BaseException) -> bool:
    """torch's allocators failing (a RuntimeError, raised from C++ so that no torch frame is
    on the traceback; CUDA's is ``torch.OutOfMemoryError``)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text
        or "CUDA out of memory" in text)


def _user_error_kind(exc: BaseException) -> str | None:
    """What a library error caused by the user's files or settings is about, or None."""
    origin = _raised_in(exc)
    if type(exc).__name__ == "SafetensorError" or origin == "safetensors":
        return "a weights file cannot be read or written (safetensors)"
    if origin == "h5py" or (type(exc).__module__ or "").startswith("h5py"):
        return "an HDF5 file cannot be read or written"
    if (type(exc).__module__ or "").startswith("gymnasium.error"):
        return "Gymnasium refused the env or its settings"
    if isinstance(exc, RuntimeError) and origin == "torch":
        return "torch refused the settings (device, memory or sizes)"
    return None


def _raised_in(exc: BaseException) -> str | None:
    """The top-level package whose code raised ``exc`` (the innermost Python frame)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    parts = tb.tb_frame.f_code.co_filename.replace("\\", "/").split("/")
    for package in ("torch", "h5py", "safetensors"):
        if package in parts:
            return package
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _log_traceback(exc: BaseException, name: str) -> str:
    """Write the traceback of ``exc`` to a log file; its path (or why there is none)."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        folder = os.path.join(tempfile.gettempdir(), "qbc-logs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name.replace(' ', '-').replace('/', '-')}-"
                                    f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"qbc {name} {' '.join(sys.argv[1:])}\n{text}")
        return path
    except OSError:
        return f"(not written; {type(exc).__name__}: {_first_line(exc)})"
