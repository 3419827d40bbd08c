"""Entries of a sweep file: unknown keys refused with the closest valid one, and named entries
("name" or {name = "name", params = {...}}) in one form. Used by :mod:`qbc.sweep.spec` and
:mod:`qbc.sweep.chunk_axes`."""

from __future__ import annotations

import difflib
import math
from typing import Any

from qbc.envs.make import check_env_id, make_env
from qbc.errors import InvalidValueError


def check_keys(where: str, keys: Any, valid: list[str], source: str) -> None:
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidValueError(
                f"unknown key {key!r} in {where} of {source}.{hint} "
                f"Valid keys: {', '.join(sorted(valid))}."
            )


def normalize_named(entry: Any, key: str, source: str = "the sweep file") -> dict[str, Any]:
    """An entry of the [grid] list ``key``: "name" or {name = "name", params = {...}} ->
    {"name": ..., "params": {...}} (an expert's ``envs`` is left out: see :func:`expert_envs`)."""
    what = {"experts": "expert", "chunk_tokenizers": "chunk tokenizer"}.get(key, key)
    if isinstance(entry, str):
        return {"name": entry, "params": {}}
    if isinstance(entry, dict):
        keys = ["name", "params", "envs"] if key == "experts" else ["name", "params"]
        check_keys(f"a table of [grid] {key}", entry, keys, source)
        if not isinstance(entry.get("name"), str):
            raise InvalidValueError(f"a table of [grid] {key} in {source} needs name = \"...\"")
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise InvalidValueError(f"[grid] {key}: {what} {entry['name']!r}: params must be a "
                                    "table")
        return {"name": entry["name"], "params": dict(params)}
    raise InvalidValueError(
        f"[grid] {key} in {source}: {entry!r} is neither a name nor a table "
        "{name = ..., params = {...}}")


# -- [grid] envs ----------------------------------------------------------------------------------
#: Keywords gymnasium.make reads itself, or the sweep sets ([data] episode_steps): not env
#: constructor arguments.
_MAKE_KEYS = ("max_episode_steps", "autoreset", "apply_api_compatibility",
              "disable_env_checker", "render_mode")


def normalize_env(entry: Any, source: str = "the sweep file") -> dict[str, Any]:
    """An entry of [grid] envs: "id" or {name = "id", env_kwargs = {...}} (the env's
    constructor keywords, e.g. {noise_std = 0.0}) -> {"name": id, "env_kwargs": {...}}."""
    if isinstance(entry, str):
        return {"name": entry, "env_kwargs": {}}
    if isinstance(entry, dict):
        check_keys("a table of [grid] envs", entry, ["name", "env_kwargs"], source)
        kwargs = entry.get("env_kwargs", {})
        if not isinstance(entry.get("name"), str) or not isinstance(kwargs, dict):
            raise InvalidValueError(f"a table of [grid] envs in {source} needs name = \"ENV ID\" "
                                    "and optionally env_kwargs = {KEY = VALUE, ...}")
        return {"name": entry["name"], "env_kwargs": dict(kwargs)}
    raise InvalidValueError(f"[grid] envs in {source}: {entry!r} is neither an env id nor a "
                            "table {name = ..., env_kwargs = {...}}")


def env_label(name: str, kwargs: dict[str, Any]) -> str:
    """``qbc/LinearStable-v0`` or, with constructor keywords,
    ``qbc/LinearStable-v0(noise_std=0.0)`` (keys sorted): the ``env`` of a variant's rows."""
    if not kwargs:
        return name
    return f"{name}({','.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"


def check_env_entries(entries: list[Any], source: str = "the sweep file") -> None:
    """Every [grid] envs entry well formed, its id registered, its env_kwargs plain finite
    values that the env's constructor accepts (the env is made once with them), no variant
    listed twice: one line naming the entry otherwise."""
    seen = set()
    for entry in entries:
        env = normalize_env(entry, source)
        name, kwargs = env["name"], env["env_kwargs"]
        check_env_id(name)
        where = f"[grid] envs in {source}: env_kwargs of {name!r}"
        for key, value in kwargs.items():
            if key in _MAKE_KEYS:
                raise InvalidValueError(f"{where}: {key!r} is not a constructor argument (the "
                                        "sweep sets it); leave it out ([data] episode_steps sets "
                                        "the episode length)")
            if not (isinstance(value, (str, bool, int))
                    or (isinstance(value, float) and math.isfinite(value))):
                raise InvalidValueError(f"{where}: {key} = {value!r} is not a finite number, "
                                        "string or boolean")
        label = env_label(name, kwargs)
        if label in seen:
            raise InvalidValueError(f"[grid] envs in {source} lists {label} twice")
        seen.add(label)
        if kwargs:
            try:
                make_env(name, **kwargs).close()
            except InvalidValueError as exc:
                raise InvalidValueError(f"{where}: {exc}") from None


def env_ids(entries: list[Any]) -> list[str]:
    """The distinct env ids of [grid] envs entries, in order (variants share their id)."""
    return list(dict.fromkeys(normalize_env(e)["name"] for e in entries))
