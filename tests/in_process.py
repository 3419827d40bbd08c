"""Commands and scripts run in the test process, as a fresh interpreter would run them.

Starting a Python interpreter costs ~3 s of CPU (torch alone ~1.5 s), and the suite runs on 2
cores: the tests run ``qbc`` commands and ``scripts/*.py`` here instead, with the process's
state (environment, working directory, RNGs, threads, signal handlers, logging, streams,
``sys.argv``) restored afterwards. A few tests keep a real subprocess on purpose (fresh-state
reproducibility, SIGKILL, torchrun, cross-process locks).

- :func:`run_cli`: ``qbc ARGV`` through :func:`qbc.cli.main` -> :class:`CliResult`;
- :func:`run_python`: ``python ARGV`` for ``-m qbc.cli ...`` or ``SCRIPT.py ...`` ->
  :class:`CliResult`;
- :func:`run_child`: a stand-in for :func:`qbc.infra.child_processes.run` (same arguments as
  :class:`subprocess.Popen`) that runs such commands here and any other in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class CliResult:
    """What a command left: its exit code and everything it wrote to stdout and stderr (through
    ``sys.stdout``/``sys.stderr`` and through file descriptors 1 and 2, as a subprocess's pipes
    would have caught it)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _captured_fds() -> Iterator[list[str]]:
    """Output written straight to file descriptors 1 and 2 (C libraries) while the block runs;
    the list holds (stdout, stderr) afterwards."""
    got: list[str] = []
    saved = [os.dup(1), os.dup(2)]
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    try:
        for fd, f in zip((1, 2), files, strict=True):
            os.dup2(f.fileno(), fd)
        yield got
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        for f in files:
            f.seek(0)
            got.append(f.read().decode(errors="replace"))
            f.close()


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """Whatever a command may change process-wide comes back as it was: environment variables,
    the working directory, torch's thread counts, the global RNGs, the SIGINT/SIGTERM handlers,
    the root logger, sys.stdout/sys.stderr (replaced on a broken pipe), sys.argv and sys.path."""
    import random

    import numpy as np

    env, cwd = dict(os.environ), os.getcwd()
    threads = torch.get_num_threads()
    rngs = random.getstate(), np.random.get_state(), torch.random.get_rng_state()  # noqa: NPY002
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    root = logging.getLogger()
    log_state = root.level, list(root.handlers)
    streams, argv, path = (sys.stdout, sys.stderr), list(sys.argv), list(sys.path)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        sys.argv[:], sys.path[:] = argv, path
        root.setLevel(log_state[0])
        root.handlers[:] = log_state[1]
        if threading.current_thread() is threading.main_thread():  # else none can change
            for s, h in handlers.items():
                signal.signal(s, h)
        random.setstate(rngs[0])
        np.random.set_state(rngs[1])  # noqa: NPY002  (the legacy global RNG, kept as it was)
        torch.random.set_rng_state(rngs[2])
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


# The warning filters of a fresh `python` (no -W, no PYTHONWARNINGS), last applied first.
_PYTHON_WARNING_FILTERS = [("ignore", ResourceWarning, ""), ("ignore", ImportWarning, ""),
                           ("ignore", PendingDeprecationWarning, ""),
                           ("ignore", DeprecationWarning, ""),
                           ("default", DeprecationWarning, "__main__")]


def _print_warning(message, category, filename, lineno, file=None, line=None):
    """Python's own way of showing a warning (``warnings.showwarning`` as it comes), which
    pytest replaces by its recorder while a test runs."""
    try:
        (sys.stderr if file is None else file).write(
            warnings.formatwarning(message, category, filename, lineno, line))
    except OSError:
        pass


def run_cli(argv: Sequence[Any], *, cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None, python_warnings: str | None = None) -> CliResult:
    """``qbc ARGV`` run in this process through :func:`qbc.cli.main`, as ``python -m qbc.cli``
    would run it in a fresh interpreter: in ``cwd``, with ``env`` added to the environment,
    warnings shown as a fresh interpreter shows them (``python_warnings`` as PYTHONWARNINGS,
    e.g. "default"), and the process's state restored afterwards. A ``SystemExit`` (``--help``,
    tyro) gives its code, as the interpreter would."""
    return _run(lambda: _qbc_main([str(a) for a in argv]), cwd=cwd, env=env,
                python_warnings=python_warnings)


def run_python(argv: Sequence[Any], *, cwd: str | os.PathLike | None = None,
               env: dict[str, str] | None = None, replace_env: bool = False) -> CliResult:
    """``python ARGV`` run in this process, for ``-m MODULE ARGS`` and ``SCRIPT.py ARGS``
    (relative to ``cwd``; its folder first on sys.path; ``__name__ == "__main__"``), as
    :func:`run_cli` runs a command. ``env`` is added to the environment, or replaces it with
    ``replace_env`` (as :class:`subprocess.Popen`'s ``env``). An exception that escapes the
    script is printed as a traceback on stderr and gives code 1, as the interpreter does."""
    argv = [str(a) for a in argv]
    if len(argv) >= 2 and argv[0] == "-m":
        def module() -> int:
            sys.argv[:] = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            return 0

        return _run(module, cwd=cwd, env=env, replace_env=replace_env)
    if not argv or not argv[0].endswith(".py"):
        raise ValueError(f"not a module or a script: python {shlex.join(argv)}")

    def script() -> int:
        path = Path(argv[0]).resolve()
        sys.argv[:] = argv
        sys.path.insert(0, str(path.parent))
        runpy.run_path(str(path), run_name="__main__")
        return 0

    return _run(script, cwd=cwd, env=env, replace_env=replace_env)


def _qbc_main(argv: list[str]) -> int:
    from qbc.cli import main

    return main(argv)


def _run(entry: Callable[[], int | None], *, cwd: str | os.PathLike | None,
         env: dict[str, str] | None, python_warnings: str | None = None,
         replace_env: bool = False) -> CliResult:
    """``entry()`` with the streams and file descriptors 1 and 2 captured, in ``cwd`` and
    ``env``, under a fresh interpreter's warning filters; the process's state kept."""
    # text streams with the encoding a child interpreter's pipes would get (tyro draws its
    # error boxes in UTF-8 only when stdout says it is UTF-8)
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="backslashreplace",
                                 newline="\n", write_through=True) for _ in range(2))
    with _process_state_kept(), warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in _PYTHON_WARNING_FILTERS:
            warnings.filterwarnings(action, category=category, module=module)
        if python_warnings:
            warnings.simplefilter(python_warnings)
        warnings.showwarning = _print_warning  # printed, as by a fresh interpreter (not recorded)
        if replace_env:
            os.environ.clear()
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with _captured_fds() as fds, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                code = entry() or 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if exc.code is not None and not isinstance(exc.code, int):
                    print(exc.code, file=sys.stderr)
            except Exception:  # what the interpreter does with an exception that escapes
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
    texts = [stream.buffer.getvalue().decode(encoding, errors="replace") for stream in (out, err)]
    return CliResult(code, fds[0] + texts[0], fds[1] + texts[1])


def _python_argv(args: str | Sequence[Any], shell: bool) -> list[str] | None:
    """The arguments after ``python`` when ``args`` starts this interpreter (or ``python`` on
    the PATH, for a shell command without shell syntax) on a qbc command or a script; else
    None."""
    if isinstance(args, str):
        if not shell or any(c in args for c in "|&;<>$`(){}*?"):
            return None
        args = shlex.split(args)
    args = [str(a) for a in args]
    if not args or args[0] not in (sys.executable, "python", "python3"):
        return None
    rest = args[1:]
    if rest[:2] == ["-m", "qbc.cli"] or (rest and rest[0].endswith(".py")):
        return rest
    return None


def run_child(args: str | Sequence[Any], *, stdout: Any = None, stderr: Any = None,
              env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
              shell: bool = False, **popen_kwargs: Any) -> int:
    """:func:`qbc.infra.child_processes.run` for tests: a ``python -m qbc.cli`` command or a
    ``python SCRIPT.py`` runs in this process (:func:`run_python`), its output written to
    ``stdout``/``stderr`` (open files, ``subprocess.STDOUT``, ``DEVNULL`` or None) once it
    ends; anything else runs in a subprocess as there. Returns the exit code."""
    python_argv = _python_argv(args, shell)
    if python_argv is None:
        from qbc.infra.child_processes import run

        return run(args, stdout=stdout, stderr=stderr, env=env, cwd=cwd, shell=shell,
                   **popen_kwargs)
    done = run_python(python_argv, cwd=cwd, env=env, replace_env=env is not None)
    if stderr == subprocess.STDOUT:
        _write(stdout, done.stdout + done.stderr, sys.stdout)
    else:
        _write(stdout, done.stdout, sys.stdout)
        _write(stderr, done.stderr, sys.stderr)
    return done.returncode


def _write(target: Any, text: str, inherited: Any) -> None:
    """``text`` to a Popen-style target: None -> this process's stream ``inherited``."""
    if target is None:
        inherited.write(text)
    elif target not in (subprocess.DEVNULL, subprocess.PIPE) and hasattr(target, "write"):
        target.write(text)
        target.flush()
