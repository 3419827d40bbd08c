"""The mutations the loader fuzz tests share (tests/infra/test_fuzz_loaders.py,
test_fuzz_more_loaders.py): byte, JSON and text mutations of a valid file, the check that a
mutated file loads faithfully or raises one of qbc's typed errors in one line, a TOML writer for
mutated documents, and the scratch folder and tiny dataset the tests mutate copies of."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from qbc.errors import QbcError

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

#: Values a JSON field is replaced with: other types, huge and non-finite numbers, edge cases.
ODD_VALUES = [None, True, False, 0, -1, 1, 2, 10 ** 30, -(10 ** 30), 10 ** 400, 1e308, -1e308,
              float("inf"), float("-inf"), float("nan"), 0.5, "", "x", "0.1", [], [1, 2],
              [[1.0], [2.0, 3.0]], {}, {"a": 1}, "\u0000", 2 ** 63, -(2 ** 63) - 1]


# -- mutations -------------------------------------------------------------------------------------
def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys / indices) into a JSON document, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:8]):  # long arrays: their first items stand for the rest
            out += _paths(v, prefix + (i,))
    return out


def _apply(doc: Any, path: tuple, op: str, value: Any) -> Any:
    """``doc`` with the node at ``path`` replaced, deleted or given an extra key."""
    doc = copy.deepcopy(doc)
    if not path:
        return value if op == "replace" else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "add" and isinstance(parent[last], dict):
        parent[last]["unexpected_field"] = value
    elif op == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    elif op == "scale" and isinstance(parent[last], (int, float)) and not isinstance(
            parent[last], bool):
        parent[last] = parent[last] * value if isinstance(value, (int, float)) else value
    return doc


@st.composite
def json_mutation(draw: Any, doc: Any, paths: list[tuple]) -> bytes:
    """A mutated JSON text of ``doc`` (one or two structural edits)."""
    for _ in range(draw(st.integers(1, 2))):
        if not paths:
            break
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "delete", "add", "scale"]))
        value = draw(st.sampled_from(ODD_VALUES + [-3, 1e6, 1e-300]))
        try:
            doc = _apply(doc, path, op, value)
        except (KeyError, IndexError, TypeError, OverflowError):
            pass
        paths = _paths(doc)
    try:
        return json.dumps(doc).encode()  # NaN / Infinity tokens: Python's json reads them
    except (ValueError, OverflowError):
        return b"{}"


@st.composite
def byte_mutation(draw: Any, data: bytes) -> bytes:
    """``data`` with bytes flipped, a cut, or junk inserted."""
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "flip_many"]))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, max(0, len(data) - 1)))])
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        junk = draw(st.binary(min_size=1, max_size=16))
        return bytes(data[:at]) + junk + bytes(data[at:])
    for _ in range(1 if kind == "flip" else draw(st.integers(2, 20))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def text_mutation(draw: Any, data: bytes) -> bytes:
    """``data`` (JSON text) with a number made thousands of digits long (more than Python
    converts) or a value nested thousands deep (deeper than the parser's stack)."""
    import re

    text = data.decode("utf-8", errors="replace")
    numbers = [m.span() for m in re.finditer(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text)]
    if numbers and draw(st.booleans()):
        start, end = numbers[draw(st.integers(0, len(numbers) - 1))]
        return (text[:start] + "9" * draw(st.integers(4301, 6000)) + text[end:]).encode()
    colons = [m.end() for m in re.finditer(r":\s*", text)] or [0]
    at = colons[draw(st.integers(0, len(colons) - 1))]
    depth = draw(st.sampled_from([2000, 100_000]))
    return (text[:at] + "[" * depth + "0" + "]" * depth + ", " * (at == 0) + text[at:]).encode()


def mutated(data: bytes, doc: Any | None = None) -> st.SearchStrategy[bytes]:
    """Byte mutations of ``data``, and structural and textual ones of its JSON ``doc`` when
    given."""
    if doc is None:
        return byte_mutation(data)
    return st.one_of(byte_mutation(data), json_mutation(doc, _paths(doc)),
                     text_mutation(data))


def mutate_copy(data: Any, source: Path, copy: Path, name: str | Path) -> None:
    """Copy the folder ``source`` to ``copy`` (once: later examples reuse it) and write a drawn
    mutation (:func:`mutated`; JSON-aware for a ``.json`` file) of ``source / name`` over
    ``copy / name``."""
    if not copy.exists():
        shutil.copytree(source, copy)
    original = (source / name).read_bytes()
    doc = json.loads(original) if str(name).endswith(".json") else None
    (copy / name).write_bytes(data.draw(mutated(original, doc)))


def typed_or_loaded(load: Any, use: Any = None) -> None:
    """Call ``load()``; a QbcError must be one line; anything else fails the test. A loaded
    object is passed to ``use`` (which must work too: no load that fails later)."""
    try:
        obj = load()
    except QbcError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    if use is not None:
        try:
            use(obj)
        except QbcError as exc:  # a typed refusal of the use is fine, e.g. a shape check
            assert "\n" not in str(exc), str(exc)


@pytest.fixture
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="qbc-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)



def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else
                                              "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _dump_toml(doc: dict[str, Any]) -> str:
    lines = []
    for table, entries in doc.items():
        if not isinstance(entries, dict):
            lines.append(f"{table} = {_toml(entries)}")
            continue
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml(v)}" for k, v in entries.items() if v is not None]
    return "\n".join(lines) + "\n"



@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    import os

    from qbc.data.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        collect(CollectConfig(env="qbc/ScalarStable-v0", dataset_id="test/fz-v0", episodes=3,
                              num_envs=3, max_episode_steps=6, progress=False))
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return root
