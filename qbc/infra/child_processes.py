"""Commands that end with the process that started them.

The experiment drivers (``scripts/learner_vs_floor.py``, ``scripts/reproduce_results.py``) run
their trainings, rollouts and published commands as child processes. Killed on its own, a
driver would leave those children running: a trainer would go on writing into a run folder
that the driver's next invocation is about to redo, and take the CPU from it. :func:`run`
starts each command in its own process group and remembers it; inside :func:`stopped_on_exit`,
a SIGTERM or Ctrl-C (or any exception) stops every remembered group before the driver goes,
and no new command starts after that. A SIGKILL cannot be caught; nothing here helps against
it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Seconds a stopped command has between SIGTERM and SIGKILL.
GRACE_S = 5.0

_lock = threading.Lock()
_running: set[subprocess.Popen] = set()
_stopping = threading.Event()


class Stopped(RuntimeError):
    """A command was not started because the driver is stopping."""


def run(args: str | Sequence[str], **popen_kwargs: Any) -> int:
    """Run ``args`` (as :class:`subprocess.Popen` would, in a new process group) to the end;
    its return code. Thread-safe; raises :class:`Stopped` while :func:`stop_all` is stopping
    the commands of a :func:`thread_pool` or :func:`stopped_on_exit` block."""
    with _lock:
        if _stopping.is_set():
            raise Stopped(f"not started, the driver is stopping: {args}")
        proc = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
        _running.add(proc)
    try:
        return proc.wait()
    except BaseException:  # interrupted while waiting (in the main thread): stop it here
        _stop(proc)
        raise
    finally:
        with _lock:
            _running.discard(proc)


def stop_all() -> None:
    """Stop every running command's process group (SIGTERM, then SIGKILL after GRACE_S); no
    new one starts until the enclosing block has been left."""
    with _lock:
        _stopping.set()
        procs = list(_running)
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    for proc in procs:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to ``proc``'s group, SIGKILL if it has not ended after GRACE_S."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stopped_on_exit() -> Iterator[None]:
    """Within: SIGTERM raises SystemExit (in the main thread) like Ctrl-C raises
    KeyboardInterrupt, and leaving by any exception stops every running command first
    (commands may start again after the block)."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main else None
    try:
        yield
    except BaseException:
        stop_all()
        raise
    finally:
        _stopping.clear()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def thread_pool(max_workers: int) -> Iterator[ThreadPoolExecutor]:
    """A :class:`ThreadPoolExecutor` for jobs that run commands with :func:`run`. Left by an
    exception, it cancels the queued jobs and stops the running commands, where a plain pool
    would first wait for all of them to finish."""
    try:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            try:
                yield pool
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                stop_all()
                raise
    finally:  # every job has ended: commands may start again
        _stopping.clear()
