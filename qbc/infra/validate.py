"""Checking a command's whole configuration before it touches anything.

Every command calls :func:`check_config` on its config dataclass first: every float field (also
in nested dataclasses such as ``--model.*``, and every float of a list field) must be finite,
every integer (also of a list field) must fit in 64 bits, every field named ``seed`` or
``*_seed`` must lie in [0, 2^32), and the fields given ``rules`` must lie in their ranges.
Sizes that would not fit in memory are refused by :func:`check_memory` with the estimate, and
a device name by :func:`check_device`, all before any output is created, replaced or deleted.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.errors import InvalidValueError

#: Seeds are 32-bit: numpy, torch and Gymnasium all accept them.
SEED_LIMIT = 2**32

#: Every integer setting must fit in 64 bits (numpy's and torch's sizes and indices are int64).
INT_LIMIT = 2**63


@dataclass(frozen=True)
class Rule:
    """The range of one number: ``lo <= x`` (``lo < x`` when ``lo_open``), ``x <= hi`` (``x <
    hi`` when ``hi_open``); ``integer`` refuses non-integers, ``optional`` allows None."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    optional: bool = False

    def holds(self, x: Any) -> bool:
        if x is None:
            return self.optional
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return False
        if isinstance(x, float) and not (math.isfinite(x) and (x.is_integer() or not
                                                               self.integer)):
            return False  # (an int is exact at any size; float() of one past 1e308 overflows)
        lo_ok = self.lo is None or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.lo == 0 and self.lo_open and self.hi is None:
            return "positive" if not self.integer else "a positive integer"
        if self.lo is not None and self.hi is not None:
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{kind} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return kind


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


POSITIVE = Rule(lo=0, lo_open=True)
NON_NEGATIVE = Rule(lo=0)
AT_LEAST_ONE = Rule(lo=1, integer=True)
FRACTION = Rule(lo=0, hi=1, hi_open=True)  # [0, 1)
SEED = Rule(lo=0, hi=SEED_LIMIT, hi_open=True, integer=True)


def flag_name(field: str) -> str:
    """'model.d_model' -> '--model.d-model' (tyro's spelling of the flag)."""
    return "--" + field.replace("_", "-")


def check_value(value: Any, rule: Rule, flag: str) -> None:
    """Raise InvalidValueError '<flag> must be <range>, got <value>' unless ``rule`` holds."""
    if not rule.holds(value):
        raise InvalidValueError(f"{flag} must be {rule.describe()}, got {shown_value(value)}")


def check_config(cfg: Any, rules: dict[str, Rule] | None = None, prefix: str = "") -> None:
    """Check every field of the dataclass ``cfg`` (nested ones as 'outer.inner'): the given
    ``rules``, finiteness of every float, and [0, 2^32) for every seed field. Flags are named
    ``--<prefix><field>``."""
    rules = dict(rules or {})
    _check_types(cfg, prefix)
    for name, value in _fields(cfg):
        leaf = name.rsplit(".", 1)[-1]
        rule = rules.pop(name, None)
        if rule is None and (leaf == "seed" or leaf.endswith("_seed")):
            rule = dataclasses.replace(SEED, optional=value is None)
        if rule is None and isinstance(value, float):
            rule = Rule()
        if rule is not None:
            check_value(value, rule, flag_name(prefix + name))
        for item in value if isinstance(value, (tuple, list)) else [value]:
            _check_item(item, flag_name(prefix + name))
    if rules:
        raise KeyError(f"rules for fields that {type(cfg).__name__} lacks: {sorted(rules)}")


def _check_item(item: Any, flag: str) -> None:
    """A float must be finite, an integer must fit in 64 bits (an item of a list flag too):
    larger ones overflow numpy and torch deep inside a command, often after its work."""
    if isinstance(item, float):
        check_value(item, Rule(), flag)
    elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= INT_LIMIT:
        raise InvalidValueError(f"{flag} must be an integer that fits in 64 bits (below 2^63), "
                                f"got {shown_value(item)}")


def shown_value(value: Any) -> str:
    """``repr(value)`` for a refusal, but an integer of more than 30 digits by its sign and
    length (a 400-digit number would fill the terminal)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"{'a negative' if value < 0 else 'an'} integer of {len(str(abs(value)))} digits"
    return repr(value)


def _check_types(cfg: Any, prefix: str) -> None:
    """Every field of the dataclass ``cfg`` (nested ones too) of its annotated kind, where that
    is a scalar (:func:`check_field_types`), a path or a dataclass: a Python caller's
    ``TrainConfig(tensorboard="no")`` would switch TensorBoard on, ``model={...}`` fail deep
    inside (the command line and config files give the right kinds already)."""
    try:
        hints = typing.get_type_hints(type(cfg))
    except Exception:  # noqa: BLE001  (annotations it cannot resolve: the fields' own checks)
        return
    for f in dataclasses.fields(cfg):
        value, flag = getattr(cfg, f.name), flag_name(prefix + f.name)
        options = _options(hints.get(f.name, Any))
        if value is None and type(None) in options:
            continue
        kinds = [o for o in options if o is not type(None)]
        if any(dataclasses.is_dataclass(o) for o in kinds):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                _check_types(value, f"{prefix}{f.name}.")
            elif not (isinstance(value, str) and str in kinds):  # a spec string passes
                raise InvalidValueError(f"{flag} must be a {kinds[0].__name__} (a dataclass of "
                                        f"settings), got {shown_value(value)}")
        elif kinds and all(o in _SCALARS or o is Path for o in kinds) and not any(
                _is_scalar(value, o) if o in _SCALARS else isinstance(value, (str, os.PathLike))
                for o in kinds):
            names = [_SCALARS.get(o, "a path") for o in kinds]
            raise InvalidValueError(f"{flag} must be {' or '.join(names)}"
                                    f"{' or none' if type(None) in options else ''}, got "
                                    f"{shown_value(value)}")


def _options(hint: Any) -> tuple[Any, ...]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _fields(cfg: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += _fields(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value))
    return out


def split_list_flag(values: str | tuple[str, ...] | list[str]) -> list[str]:
    """The items of a list flag given space- or comma-separated: "10,20", ("10", "20") and
    ("10,20", "30") -> ["10", "20"(, "30")], stripped, empty items dropped."""
    if isinstance(values, str):
        values = [values]
    return [v.strip() for item in values for v in str(item).split(",") if v.strip()]


def positive_ints(values: str | tuple | list, flag: str) -> list[int]:
    """``(10, 20, 50)``, ``("10,20", "50")`` or ``"10,20,50"`` -> [10, 20, 50], sorted and
    unique; positive integers only."""
    items = split_list_flag(values)
    text = ",".join(items)  # as the messages show it
    try:
        out = sorted({int(v) for v in items})
    except ValueError:
        raise InvalidValueError(
            f"{flag} must be integers like 10 20 50 (or 10,20,50), got {text!r}") from None
    if not out or out[0] < 1:
        raise InvalidValueError(f"{flag} must be positive integers, got {text!r}")
    return out


def check_all(checks: list[tuple[bool, str]]) -> None:
    """Raise InvalidValueError with the message of the first check that fails."""
    for ok, message in checks:
        if not ok:
            raise InvalidValueError(message)


def check_device(name: str, flag: str = "--device"):
    """The torch device ``name`` ('auto', 'cpu', 'cuda', 'cuda:1', ...) if this machine has it;
    otherwise InvalidValueError. 'meta' and other devices that hold no data are refused."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise InvalidValueError(
            f"{flag} {name!r} is not a torch device; use auto, cpu or cuda[:N]") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InvalidValueError(f"{flag} {name!r} cannot run qbc; use auto, cpu or cuda[:N]")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidValueError(
                f"{flag} {name}: CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InvalidValueError(f"{flag} {name}: this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidValueError(f"{flag} {name}: MPS is not available here; use --device cpu")
    return dev


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63


def check_memory(n_bytes: float, what: str, fix: str) -> None:
    """Refuse work whose estimated memory ``n_bytes`` exceeds what is available, saying the
    estimate, what it is for and how to make it smaller."""
    free = available_memory()
    if not math.isfinite(n_bytes) or n_bytes > free:
        raise InvalidValueError(f"{what} would need about {_gib(n_bytes)} of memory, more than "
                                f"the {_gib(free)} available; {fix}")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if math.isfinite(n) else "unbounded"


def check_finite_json(obj: Any, what: str) -> None:
    """Raise InvalidValueError when ``obj`` holds NaN or ±inf anywhere (floats, numpy scalars
    and arrays, inside mappings, sequences and dataclasses), naming where: for JSON files whose
    readers need every number (dataset metadata), checked before :func:`qbc.infra.files.json_safe`
    would write such a number as null."""
    import numpy as np

    def bad(value: Any, where: str) -> Iterator[str]:
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                yield f"{where} = {value}"
        elif isinstance(value, np.ndarray):
            if value.dtype.kind in "fc" and not np.isfinite(value).all():
                yield f"{where} (an array)"
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                yield from bad(getattr(value, f.name), f"{where}.{f.name}")
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from bad(v, f"{where}.{k}")
        elif isinstance(value, (list, tuple, set, frozenset)):
            for i, v in enumerate(value):
                yield from bad(v, f"{where}[{i}]")

    found = list(bad(obj, what))
    if found:
        raise InvalidValueError(f"{what} must hold finite numbers only (JSON has no NaN or "
                                f"inf): {', '.join(found[:5])}")


_SCALARS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def check_field_types(config_type: type, values: dict[str, Any], what: str) -> None:
    """Raise InvalidValueError naming the first key of ``values`` whose value is not of its
    field's scalar type in the dataclass ``config_type`` (int, float, bool, str, each maybe
    ``| None``; bool is no int, an int is a float); other fields and unknown keys are left to
    the constructor. ``what`` names the values' source in the message."""
    hints = typing.get_type_hints(config_type)
    names = [f.name for f in dataclasses.fields(config_type)]
    _check_scalar_kinds({n: hints[n] for n in names}, values, what)


def check_argument_types(func: Any, values: dict[str, Any], what: str) -> None:
    """:func:`check_field_types` for the arguments of ``func`` (a constructor): each value of
    ``values`` of the scalar kind its parameter is annotated with, numpy scalars as the Python
    ones they hold; ``QuantizerClass(quantile="x")`` or ``per_dim="no"`` are refused when made,
    not found (or taken as true) later. Annotations that cannot be resolved are not checked."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001  (a user's class with unresolvable annotations)
        return
    hints.pop("return", None)
    _check_scalar_kinds(hints, {k: _python_scalar(v) for k, v in values.items()}, what)


def _python_scalar(value: Any) -> Any:
    """A numpy scalar (np.int64(8), np.bool_(True)) as the Python one it holds."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _check_scalar_kinds(hints: dict[str, Any], values: dict[str, Any], what: str) -> None:
    for name, hint in hints.items():
        if name not in values:
            continue
        value, options = values[name], _options(hint)
        if value is None and type(None) in options:
            continue
        scalars = [o for o in options if o in _SCALARS]
        if len(scalars) != len([o for o in options if o is not type(None)]):
            continue  # a type other than these scalars: the constructor's to check
        if not any(_is_scalar(value, o) for o in scalars):
            raise InvalidValueError(f"{what}: {name} must be "
                                    f"{' or '.join(_SCALARS[o] for o in scalars)}, got "
                                    f"{shown_value(value)}")


def _is_scalar(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if kind is str:  # a path where text is expected works the same
        return isinstance(value, (str, os.PathLike))
    return isinstance(value, kind)
