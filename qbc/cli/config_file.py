"""``--config FILE``: a command's settings read from a file, then overridden by its flags.

FILE is a JSON object (a run's saved config, e.g. the ``train_config.json`` every ``qbc train``
writes) or a TOML file (``.toml``) with the same fields, a nested dataclass as a table
(``[model]``). Its values become the defaults that tyro parses the flags against
(``tyro.cli(..., default=...)``), so a flag given on the command line wins. A command opts in
with a :class:`ConfigFile` on its :class:`~qbc.cli.Command`, which names the keys a run writes
beside its settings (ignored) and the switches that only a command line may give.

An unknown key, a value of the wrong type or a file that cannot be read is one line naming the
key and the file (:class:`~qbc.errors.InvalidValueError` / :class:`~qbc.errors.CorruptFileError`),
raised before the command reads or writes anything.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.files import read_json_object, read_toml
from qbc.infra.validate import shown_value

#: The flag, and the line that ``--help`` adds for it.
FLAG = "--config"


@dataclass(frozen=True)
class ConfigFile:
    """How a command reads ``--config FILE``.

    ``record_keys``: top-level keys a run writes beside its settings (``run_id``, the dataset's
    hash, the resolved device): accepted and ignored. ``per_run``: fields that say what this
    invocation does to its output folder (``resume``, ``overwrite``): taken from the command line
    only, so that a run's saved settings never replace or continue that run by themselves.
    ``adjust(values, path)``: the file's values as the command wants them (e.g. a budget that the
    run derived, given back as the setting it was derived from)."""

    record_keys: frozenset[str] = frozenset()
    per_run: frozenset[str] = frozenset()
    adjust: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None
    saved: str = "runs/bc/train_config.json"
    """an example of the file a run of the command saves (named by the refusals)."""
    help: str = ("start from the settings in FILE (a run's saved config JSON, or a TOML file "
                 "of the same fields, nested settings as tables); flags given on the command "
                 "line override them.")


def key_values_as_flags(*names: str) -> Callable[[dict[str, Any], Path], dict[str, Any]]:
    """A :attr:`ConfigFile.adjust` for a command whose settings ``names`` are KEY=VALUE flags
    (:data:`qbc.cli.flag_types.KeyValues`) that its run saves as objects (a JSON object, a TOML
    table): each object is given back as the one JSON-object item such a flag takes."""

    def adjust(values: dict[str, Any], path: Path) -> dict[str, Any]:
        return {k: [json.dumps(v)] if k in names and isinstance(v, dict) else v
                for k, v in values.items()}

    return adjust


def split_config_flag(args: list[str]) -> tuple[Path | None, list[str]]:
    """``args`` without ``--config FILE`` (or ``--config=FILE``), and FILE (None if absent)."""
    path, rest, i = None, [], 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag != FLAG:
            rest.append(args[i])
        elif eq:
            path = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            path, i = args[i + 1], i + 1
        else:
            raise InvalidValueError(f"{FLAG} needs a file: {FLAG} runs/bc/train_config.json")
        i += 1
    if path is not None and not path:
        raise InvalidValueError(f"{FLAG} needs a file: {FLAG} runs/bc/train_config.json")
    return (None if path is None else Path(path)), rest


def read_settings(path: Path, saved: str = ConfigFile.saved) -> dict[str, Any]:
    """The key -> value table of a JSON or (``.toml``) TOML file; a missing, unreadable or
    malformed file is one line (naming ``saved``, an example of a run's saved settings)."""
    if path.is_dir():
        raise InvalidValueError(f"{FLAG} {str(path)!r} is a folder; give a file, e.g. "
                                f"{str(path / Path(saved).name)!r} for a run's settings")
    if not path.is_file():
        raise InvalidValueError(f"{FLAG} {str(path)!r}: no such file; give a run's saved config "
                                f"(e.g. {saved}) or a TOML file")
    if path.suffix.lower() != ".toml":
        return read_json_object(path, "config file")
    try:
        return read_toml(path, "config file")
    except OSError as exc:
        raise CorruptFileError(f"config file {str(path)!r} cannot be read ({exc})") from None


def load_defaults(config_type: type, path: Path, spec: ConfigFile) -> Any:
    """An instance of dataclass ``config_type`` holding the settings of the file at ``path``
    (the fields it does not give keep their defaults; a required one it does not give stays
    required on the command line: the instance is then built with a placeholder that tyro
    reports as missing)."""
    values = read_settings(path, spec.saved)
    if spec.adjust is not None:
        values = spec.adjust(values, path)
    values = {k: v for k, v in values.items()
              if k not in spec.record_keys and k not in spec.per_run}
    return _build(config_type, values, path, "")


def _build(config_type: type, values: dict[str, Any], path: Path, prefix: str) -> Any:
    """``config_type(**values)`` with every value checked against its field's type."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    hints = typing.get_type_hints(config_type)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {prefix}{close[0]!s}?)" if close else ""
            raise InvalidValueError(
                f"unknown setting {prefix + key!r} in {str(path)!r}{hint}; a config file holds "
                "the command's settings under their field names (see --help): fix or remove it")
    kwargs = {k: _value(v, hints[k], path, prefix + k) for k, v in values.items()}
    missing = [n for n, f in fields.items() if n not in kwargs and f.init
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:  # tyro asks for these on the command line (a default cannot stand for them)
        kwargs.update({n: tyro_missing() for n in missing})
    return config_type(**kwargs)


def tyro_missing() -> Any:
    """tyro's marker of a required value with no default."""
    import tyro  # lazy: `qbc --help` does not import tyro

    return tyro.MISSING


@functools.cache
def with_config_flag(config_type: type, help: str) -> type:
    """A subclass of dataclass ``config_type`` with one more field, ``config``, so that
    ``--config FILE`` is listed by ``--help`` with the command's flags. The flag itself is taken
    out of the arguments (:func:`split_config_flag`) before tyro parses them."""
    import tyro  # lazy: `qbc --help` does not import tyro

    flag = Annotated[Path | None, tyro.conf.arg(metavar="FILE", help=help,
                                               help_behavior_hint="(default: none)")]
    wrapper = dataclasses.make_dataclass(config_type.__name__,
                                         [("config", flag, dataclasses.field(default=None))],
                                         bases=(config_type,))
    wrapper.__doc__ = config_type.__doc__
    return wrapper


def with_config(config: Any, config_type: type, help: str) -> Any:
    """``config`` (a ``config_type``) as the instance of :func:`with_config_flag`'s type."""
    return with_config_flag(config_type, help)(**_fields_of(config, config_type))


def without_config(config: Any, config_type: type) -> Any:
    """The ``config_type`` of a parsed :func:`with_config_flag` instance."""
    return config_type(**_fields_of(config, config_type))


def _fields_of(config: Any, config_type: type) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config_type) if f.init}


def union_options(hint: Any) -> tuple[Any, ...]:
    """The types of a union type hint (``int | None`` -> ``(int, NoneType)``), else ``(hint,)``."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if is_union else (hint,)


def _value(value: Any, hint: Any, path: Path, key: str) -> Any:
    """``value`` (as JSON/TOML gives it) as field type ``hint`` wants it, or one line."""
    options = union_options(hint)
    if value is None and type(None) in options:
        return None
    for option in options:
        origin = typing.get_origin(option)
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value, path, key + ".")
        if dataclasses.is_dataclass(option) and isinstance(value, str) and type(None) in options:
            return value  # a spec string (--obs-encoder qrp:k=16,bits=2), read by the config
        if origin in (tuple, list) and isinstance(value, list):
            return tuple(value) if origin is tuple else value
        if option is typing.Any or _is_instance(value, option):
            return _as_float(value, path, key) if option is float else value
        if option is Path and isinstance(value, str):
            return Path(value)
    raise InvalidValueError(f"setting {key!r} in {str(path)!r} must be {_type_name(hint)}, "
                            f"got {value!r}")


def _as_float(value: int | float, path: Path, key: str) -> float:
    """A number of the file as a float; an integer beyond float's range is refused."""
    try:
        return float(value)
    except OverflowError:
        raise InvalidValueError(f"setting {key!r} in {str(path)!r} must be a finite number, "
                                f"got {shown_value(value)}") from None


def _is_instance(value: Any, option: Any) -> bool:
    if typing.get_origin(option) is typing.Literal:
        return isinstance(value, str)  # which one is the command's check (its message)
    if option is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if option is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(option, type) and isinstance(value, option)


def _type_name(hint: Any) -> str:
    """'an integer', 'a table of settings', 'an integer or none', ... for a field's type."""
    names = []
    for option in union_options(hint):
        if dataclasses.is_dataclass(option):
            names.append("a table of settings")
        elif option is type(None):
            names.append("none (null)")
        else:
            name = getattr(option, "__name__", str(option).replace("typing.", ""))
            names.append({"str": "text", "int": "an integer", "float": "a number",
                          "bool": "true or false", "Path": "a path"}.get(name, name))
    return " or ".join(names)
