"""The ``qbc`` command.

Each subcommand is a config dataclass plus a function that runs it; tyro generates the flags from
the dataclass, so every default lives in one place. Commands are imported lazily so that
``qbc --help`` is fast. A :class:`~qbc.errors.QbcError` ends the command with one line on stderr
and exit code 2.

Each command lives in its own module of this package (``qbc/cli/<command>.py``): its config
dataclass (or the library's, when that is the same thing), its ``run_*`` function and its
printing. Library modules never import ``qbc.cli``. To add a command, write such a module and add
one line to ``COMMANDS``: ``"name": ("module", "attribute")`` where the attribute is a
:class:`Command`. Groups (``qbc ste recover``) use ``"group name"`` as the key.

Three flag conventions are handled here, once for every command:

- list flags are typed tuples (``--horizons 10 50 200``); the comma form (``--horizons 10,50``)
  is split before tyro sees it;
- a renamed flag (``Command.renamed_flags``, old -> new) keeps working for one release with a
  one-line deprecation warning;
- settings that form a small dict are ``KEY=VALUE`` pairs (``--expert-params gain_scale=0.8``,
  JSON text still accepted) or a typed value (``--obs-encoder k=16 bits=2``): see
  :mod:`qbc.cli.flag_types`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from qbc.cli.config_file import (
    ConfigFile,
    load_defaults,
    split_config_flag,
    union_options,
    with_config,
    with_config_flag,
    without_config,
)
from qbc.cli.failures import describe_error
from qbc.cli.lists import KeepCommas
from qbc.errors import QbcError, QbcWarning, UnknownNameError


class DeprecatedFlagWarning(QbcWarning):
    """A flag was given under its old name; it still works for one release."""


@dataclass(frozen=True)
class Command:
    """A subcommand: ``run(config)`` with ``config`` an instance of ``config_type``.

    ``renamed_flags`` maps an old flag spelling to its new one (``{"--dataset-id": "--dataset"}``);
    the old one is accepted with a deprecation warning. ``config_file``: the command takes
    ``--config FILE`` (its settings from a file, flags override them; see
    :mod:`qbc.cli.config_file`)."""

    config_type: type
    run: Callable[[Any], Any]
    help: str
    renamed_flags: Mapping[str, str] = field(default_factory=dict)
    config_file: ConfigFile | None = None


#: name -> (module, attribute of type Command). Only commands that exist are listed.
COMMANDS: dict[str, tuple[str, str]] = {
    "tokenize": ("qbc.cli.tokenize", "COMMAND"),
    "expert train": ("qbc.cli.expert", "TRAIN_COMMAND"),
    "expert export": ("qbc.cli.expert", "EXPORT_COMMAND"),
    "expert list": ("qbc.cli.expert", "LIST_COMMAND"),
    "train": ("qbc.cli.train", "TRAIN_COMMAND"),
    "train-chunked": ("qbc.cli.train_chunked", "CHUNK_TRAIN_COMMAND"),
    "compressive run": ("qbc.cli.compressive", "COMMAND"),
    "ste recover": ("qbc.cli.ste", "RECOVER_COMMAND"),
    "ste recurrence": ("qbc.cli.ste", "RECURRENCE_COMMAND"),
    "ste benchmark": ("qbc.cli.ste", "BENCHMARK_COMMAND"),
    "collect": ("qbc.cli.collect", "COMMAND"),
    "dagger": ("qbc.cli.dagger", "COMMAND"),
    "data": ("qbc.cli.data", "COMMAND"),
    "data set-expert": ("qbc.cli.data", "SET_EXPERT_COMMAND"),
    "rollout": ("qbc.cli.rollout", "COMMAND"),
    "certify": ("qbc.cli.certify", "COMMAND"),
    "sweep": ("qbc.cli.sweep", "SWEEP_COMMAND"),
    "sweep report": ("qbc.cli.sweep", "REPORT_COMMAND"),
    "quickstart": ("qbc.cli.quickstart", "COMMAND"),
    "bench": ("qbc.cli.bench", "COMMAND"),
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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _one_line_warning(name: str) -> Callable[..., str]:
    """``warnings.formatwarning`` for the CLI: 'qbc NAME: warning: message', one line, no source
    line (a user reads what happened, not where it was noticed), for qbc's warnings and the
    libraries' alike (Gymnasium's colours and 'WARN:' prefix removed). A warning already shown
    is formatted as nothing: a library's warning counts as seen when only its numbers differ.
    Replacing the format, not ``showwarning``, leaves warnings recordable (``pytest.warns``)."""
    seen: set[tuple[type, str]] = set()

    def format_warning(message, category, filename, lineno, line=None) -> str:
        text = " ".join(_ANSI.sub("", str(message)).split()).removeprefix("WARN: ")
        key = text if issubclass(category, QbcWarning) else re.sub(r"\d+(\.\d+)?", "#", text)
        if (category, key) in seen:
            return ""
        seen.add((category, key))
        return f"{_prog(name)}: warning: {text}\n"

    return format_warning


@contextlib.contextmanager
def _warnings_as_lines(name: str) -> Iterator[None]:
    """While a command runs: every warning is one line (:func:`_one_line_warning`), each
    shown once; deprecation notices of the libraries (for their callers' authors, not for
    users) are silenced. The process's warning settings are as before afterwards."""
    format_before = warnings.formatwarning
    with warnings.catch_warnings():
        for category in (DeprecationWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.formatwarning = _one_line_warning(name)
        try:
            yield
        finally:
            warnings.formatwarning = format_before


def rename_flags(args: list[str], renamed: Mapping[str, str]) -> list[str]:
    """``args`` with every old flag spelling in ``renamed`` replaced by the new one (also in the
    ``--old=value`` form), each with a :class:`DeprecatedFlagWarning`."""
    out = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in renamed:
            warnings.warn(f"{flag} is deprecated and will be removed in the next release; "
                          f"use {renamed[flag]}", DeprecatedFlagWarning, stacklevel=2)
            arg = renamed[flag] + eq + value
        out.append(arg)
    return out


def list_flags(config_type: type) -> set[str]:
    """The flags (``--name``) of the top-level fields of dataclass ``config_type`` whose type is
    a tuple or a list (but not marked :class:`KeepCommas`)."""
    import dataclasses
    import typing

    if not dataclasses.is_dataclass(config_type):
        return set()
    hints = typing.get_type_hints(config_type)
    extras = typing.get_type_hints(config_type, include_extras=True)
    flags = set()
    for f in dataclasses.fields(config_type):
        if KeepCommas in getattr(extras.get(f.name), "__metadata__", ()):
            continue
        hint = hints.get(f.name)
        options = union_options(hint)
        if any(typing.get_origin(h) in (tuple, list) for h in options):
            flags.add("--" + f.name.replace("_", "-"))
    return flags


def split_comma_lists(args: list[str], flags: set[str]) -> list[str]:
    """``args`` with the values of the list flags in ``flags`` split at commas, so that
    ``--horizons 10,50 200`` and ``--horizons=10,50`` read as ``--horizons 10 50 200``."""
    out: list[str] = []
    in_list = False
    for arg in args:
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            in_list = flag in flags
            if in_list and eq and value.startswith("-"):
                # flags of another command (--extra-train-flags=--range-margin 0.5): one
                # value, passed on whole, commas and all
                out.append(arg)
                in_list = False
                continue
            if in_list and eq:
                out.append(flag)
                out += [v for v in value.split(",") if v]
                in_list = False
                continue
            out.append(arg)
        elif in_list and "," in arg:
            out += [v for v in arg.split(",") if v]
        else:
            out.append(arg)
    return out


def _parse_flags(command: Command, args: list[str], name: str) -> Any:
    """``tyro.cli`` with its boxed flag errors (a typo, a missing flag, a value of the wrong type)
    turned into one QbcError line; ``--help`` is printed as tyro draws it. Renamed flags and the
    comma form of list flags are rewritten first; a command's ``--config FILE`` gives the
    defaults that the flags override."""
    import tyro

    from qbc.cli.flag_types import REGISTRY  # lazy: the flag types load torch (policy configs)

    args = rename_flags(args, command.renamed_flags)
    args = split_comma_lists(args, list_flags(command.config_type))
    config_type, default, spec = command.config_type, None, command.config_file
    if spec is not None:
        config_type = with_config_flag(command.config_type, spec.help)
        path, args = split_config_flag(args)
        if path is not None:
            default = with_config(load_defaults(command.config_type, path, spec),
                                  command.config_type, spec.help)

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), warnings.catch_warnings():
            # A --config value outside its field's type (a Literal) is the command's own
            # check to refuse in one line; tyro would first warn about the default it was given.
            warnings.filterwarnings("ignore", message=r"The field `.*` is annotated with type")
            config = tyro.cli(config_type, args=args, prog=_prog(name), description=command.help,
                              registry=REGISTRY, default=default)
    except SystemExit as exc:
        if exc.code in (0, None):
            sys.stderr.write(captured.getvalue())
            raise
        message = _flatten_box(captured.getvalue())
        raise QbcError(f"{message}; '{_prog(name)} --help' lists the flags") from None
    sys.stderr.write(captured.getvalue())  # anything else tyro had to say
    return config if spec is None else without_config(config, command.config_type)


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qbc`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        try:
            print(_usage())
        except BrokenPipeError:
            sys.stdout = open(os.devnull, "w")
            return 141
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
    return _run(_load(name), rest, name)


def run_script(config_type: type, run: Callable[[Any], Any], name: str,
               argv: list[str] | None = None) -> int:
    """The entry of a ``scripts/*.py`` that calls a library function with a config dataclass:
    flags parsed as a command's are (a bad flag is one line) and the same boundary around the
    run (a QbcError is one line on stderr, exit 2; see :func:`describe_error`). Returns the
    exit code: ``sys.exit(run_script(Config, run, "name"))`` (an int that ``run`` returns is the
    exit code when it succeeds)."""
    doc = (config_type.__doc__ or name).strip().splitlines()[0]
    results: list[Any] = []
    command = Command(config_type, lambda cfg: results.append(run(cfg)), doc)
    code = _run(command, list(sys.argv[1:] if argv is None else argv), f"scripts/{name}.py")
    if code == 0 and results and type(results[0]) is int:  # the script's own exit code
        return results[0]
    return code


def _prog(name: str) -> str:
    """How a command calls itself in its messages: 'qbc NAME', or a script's path."""
    return name if name.endswith(".py") else f"qbc {name}"


def _run(command: Command, rest: list[str], name: str) -> int:
    """Parse ``rest`` and run ``command`` inside the boundary; the exit code."""
    try:
        with _warnings_as_lines(name):
            config = _parse_flags(command, rest, name)
            command.run(config)
    except KeyboardInterrupt:
        print(f"{_prog(name)}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `qbc ... | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")  # as the Python docs advise for SIGPIPE
        return 141
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001  (the command boundary: every exception ends here)
        message, code = describe_error(exc, name)
        print(f"{_prog(name)}: error: {message}", file=sys.stderr)
        return code
    return 0
