"""The ``qbc`` command.

Each subcommand is a config dataclass plus a function that runs it; tyro generates the flags from
the dataclass, so every default lives in one place. Commands are imported lazily so that
``qbc --help`` is fast. A :class:`~qbc.errors.QbcError` ends the command with one line on stderr
and exit code 2.

To add a command, add one line to ``COMMANDS``: ``"name": ("module", "attribute")`` where the
attribute is a :class:`Command`. Groups (``qbc ste recover``) use ``"group name"`` as the key.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qbc.errors import QbcError, UnknownNameError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``run(config)`` with ``config`` an instance of ``config_type``."""

    config_type: type
    run: Callable[[Any], Any]
    help: str


#: name -> (module, attribute of type Command). Only commands that exist are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenize": ("qbc.tokenizer", "TOKENIZE_COMMAND"),
    "expert train": ("qbc.agents.sb3", "TRAIN_EXPERT_COMMAND"),
    "train": ("qbc.train", "TRAIN_COMMAND"),
    "train-chunked": ("qbc.chunk_train", "CHUNK_TRAIN_COMMAND"),
    "compressive run": ("qbc.compressive.command", "COMPRESSIVE_RUN_COMMAND"),
    "ste recover": ("qbc.ste.recover", "RECOVER_COMMAND"),
    "ste recurrence": ("qbc.ste.recurrence", "RECURRENCE_COMMAND"),
    "ste benchmark": ("qbc.ste.benchmark", "BENCHMARK_COMMAND"),
    "collect": ("qbc.collect", "COLLECT_COMMAND"),
    "dagger": ("qbc.dagger_cli", "DAGGER_COMMAND"),
    "data": ("qbc.data", "DATA_COMMAND"),
    "rollout": ("qbc.rollout_cli", "ROLLOUT_COMMAND"),
    "certify": ("qbc.certify", "CERTIFY_COMMAND"),
    "sweep": ("qbc.sweep.command", "SWEEP_COMMAND"),
    "sweep report": ("qbc.sweep.command", "REPORT_COMMAND"),
    "quickstart": ("qbc.quickstart", "QUICKSTART_COMMAND"),
    "bench": ("qbc.bench", "BENCH_COMMAND"),
}


def _load(name: str) -> Command:
    module, attr = COMMANDS[name]
    return getattr(importlib.import_module(module), attr)


def _usage() -> str:
    width = max(len(n) for n in COMMANDS) + 2
    lines = ["usage: qbc COMMAND [--help] [flags]", "",
             "qbc: behavior cloning with quantized actions", "", "commands:"]
    for name in sorted(COMMANDS):
        lines.append(f"  {name:<{width}}{_load(name).help}")
    lines += ["", "Run 'qbc COMMAND --help' for the flags of a command."]
    return "\n".join(lines)


def _one_line_warning(name: str) -> Callable[..., str]:
    """``warnings.formatwarning`` for the CLI: 'qbc NAME: warning: message', one line, no source
    line (a user reads what happened, not where in qbc it was noticed). Replacing the format,
    not ``showwarning``, leaves warnings recordable (``pytest.warns``)."""
    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"qbc {name}: warning: {' '.join(str(message).split())}\n"

    return format_warning


def _parse_flags(command: Command, args: list[str], name: str) -> Any:
    """``tyro.cli`` with its boxed flag errors (a typo, a missing flag, a value of the wrong type)
    turned into one QbcError line; ``--help`` is printed as tyro draws it."""
    import tyro

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            config = tyro.cli(command.config_type, args=args, prog=f"qbc {name}",
                              description=command.help)
    except SystemExit as exc:
        if exc.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        message = _flatten_box(captured.getvalue())
        raise QbcError(f"{message}; 'qbc {name} --help' lists the flags") from None
    sys.stderr.write(captured.getvalue())  # anything else tyro had to say
    return config


def _flatten_box(text: str) -> str:
    """The gist of a tyro/rich error box in one line: its title, the lines of its first
    section and the first suggestion of a 'Perhaps you meant' section."""
    sections: list[list[str]] = [[]]
    title = ""
    for raw in text.splitlines():
        line = raw.strip().strip("│").strip()
        if raw.strip().startswith("╭"):
            title = line.strip("╭╮─ ")
        elif not line or raw.strip().startswith("╰"):
            continue
        elif set(line) <= set("─ "):
            sections.append([])
        else:
            sections[-1].append(line)
    parts = [" ".join(sections[0])]
    for sec in sections[1:]:
        if sec and sec[0].lower().startswith("perhaps you meant") and len(sec) > 1:
            parts.append(f"perhaps you meant {sec[1]}")
    body = "; ".join(p for p in parts if p) or " ".join(text.split())
    return f"{title}: {body}" if title and not body.startswith(title) else body


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qbc`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    # Longest match first, so "ste recover" wins over a plain "ste".
    for n_words in (2, 1):
        name = " ".join(argv[:n_words])
        if len(argv) >= n_words and name in COMMANDS:
            rest = argv[n_words:]
            break
    else:
        groups = {n.split()[0] for n in COMMANDS}
        if argv[0] in groups:
            subs = sorted(n for n in COMMANDS if n.split()[0] == argv[0])
            print(f"usage: qbc {argv[0]} SUBCOMMAND; one of: {', '.join(subs)}", file=sys.stderr)
            return 2
        print(f"qbc: error: {UnknownNameError('command', argv[0], groups)}", file=sys.stderr)
        return 2
    command = _load(name)
    try:
        with warnings.catch_warnings():
            warnings.formatwarning = _one_line_warning(name)
            config = _parse_flags(command, rest, name)
            command.run(config)
    except QbcError as exc:
        print(f"qbc {name}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `qbc ... | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")  # as the Python docs advise for SIGPIPE
        return 141
    except OSError as exc:  # the file system said no (permissions, full disk, a missing folder)
        print(f"qbc {name}: error: {type(exc).__name__}: {_one_line(exc)}; check the paths and "
              "their permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qbc {name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
