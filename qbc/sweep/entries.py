"""Entries of a sweep file: unknown keys refused with the closest valid one, and named entries
("name" or {name = "name", params = {...}}) in one form. Used by :mod:`qbc.sweep.spec` and
:mod:`qbc.sweep.chunk_axes`."""

from __future__ import annotations

import difflib
from typing import Any

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
