"""Every loader under hypothesis: a valid file, mutated (bytes flipped, cut, inserted; JSON fields
dropped, added, retyped, made huge or non-finite), loads faithfully — and then works — or raises
one of qbc's typed errors with a one-line message. Never another exception, a crash or a hang.

Each test builds its valid file once (module fixtures) and mutates it in memory into a fresh
temporary file per example; 200 derandomised examples per loader.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import TINY_CHUNK_TOKENIZERS, TINY_MODEL

from qbc.errors import QbcError

# 200 derandomised examples per loader: the fuzzers run in the full suite, not the fast lane.
pytestmark = pytest.mark.slow

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


# -- tokenizer JSON --------------------------------------------------------------------------------
ACTIONS = np.random.default_rng(0).normal(size=(200, 2))


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    from qbc.tokenizer import ActionTokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    ActionTokenizer.fit(ACTIONS, quantizer="uniform", n_bins=8).save(path)
    return path.read_bytes()


def _use_tokenizer(tok: Any) -> None:
    tokens = tok.encode(ACTIONS[:10])
    out = tok.decode(tokens)
    assert out.shape == (10, 2) and np.isfinite(out).all()


@FUZZ
@given(data=st.data())
def test_fuzz_action_tokenizer_files(tokenizer_file, scratch, data):
    from qbc.tokenizer import ActionTokenizer

    raw = data.draw(mutated(tokenizer_file, json.loads(tokenizer_file)))
    (scratch / "t.json").write_bytes(raw)
    typed_or_loaded(lambda: ActionTokenizer.load(scratch / "t.json"), _use_tokenizer)


# -- chunk tokenizer files -------------------------------------------------------------------------
CHUNKS = np.random.default_rng(1).normal(size=(200, 4, 2))


@pytest.fixture(scope="module")
def chunk_files(tmp_path_factory):
    from qbc.chunking import make_chunk_tokenizer

    root = tmp_path_factory.mktemp("chunk")
    made = {kind: make_chunk_tokenizer(kind, **settings)
            for kind, settings in TINY_CHUNK_TOKENIZERS.items()}
    return {name: tok.fit(CHUNKS).save(root / f"{name}.json").read_bytes()
            for name, tok in made.items()}


def _use_chunk_tokenizer(tok: Any) -> None:
    chunks = tok.decode(tok.encode(CHUNKS[:10]))
    assert chunks.shape == (10, 4, 2) and np.isfinite(chunks).all()


@pytest.mark.parametrize("kind", ["fast", "rvq", "beast", "per-step"])
@FUZZ
@given(data=st.data())
def test_fuzz_chunk_tokenizer_files(chunk_files, scratch, kind, data):
    from qbc.chunking import ChunkTokenizer

    raw = data.draw(mutated(chunk_files[kind], json.loads(chunk_files[kind])))
    (scratch / "c.json").write_bytes(raw)
    typed_or_loaded(lambda: ChunkTokenizer.load(scratch / "c.json"), _use_chunk_tokenizer)


# -- actor folders ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def actor_folder():
    from qbc.agents.expert_zoo import zoo_entry_dir

    return zoo_entry_dir("Pendulum-v1")


@FUZZ
@given(data=st.data())
def test_fuzz_actor_folders(actor_folder, scratch, data):
    from qbc.agents import make_expert

    meta = (actor_folder / "actor.json").read_bytes()
    weights = (actor_folder / "actor.safetensors").read_bytes()
    which = data.draw(st.sampled_from(["actor.json", "actor.safetensors"]))
    folder = scratch / "actor"
    folder.mkdir(exist_ok=True)
    (folder / "actor.json").write_bytes(
        data.draw(mutated(meta, json.loads(meta))) if which == "actor.json" else meta)
    (folder / "actor.safetensors").write_bytes(
        data.draw(mutated(weights)) if which == "actor.safetensors" else weights)

    def use(expert: Any) -> None:
        out = expert.act(np.zeros((3, 3), np.float32))
        assert out.shape == (3, 1) and np.isfinite(out).all()

    typed_or_loaded(lambda: make_expert("actor", "Pendulum-v1", path=str(folder)), use)


# -- checkpoints' config ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from qbc.policy import ModelConfig, build_policy, save_checkpoint
    from qbc.policy.wrapper import Normalizer
    from qbc.tokenizer import ActionTokenizer

    root = tmp_path_factory.mktemp("ckpt")
    tok = ActionTokenizer.fit(ACTIONS, quantizer="uniform", n_bins=8)
    model = ModelConfig(**TINY_MODEL)
    module = build_policy("ar-transformer", model, 3, 2, tok)
    norm = Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32), np.zeros(2, np.float32),
                      np.ones(2, np.float32))
    save_checkpoint(root / "ckpt", module, norm, tok, {"seed": 0}, env_id="qbc/LinearStable-v0")
    return root / "ckpt"


@pytest.mark.parametrize("name", ["config.json", "normalizer.json"])
@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_files(checkpoint, scratch, name, data):
    from qbc.policy import load_policy

    folder = scratch / "ckpt"
    mutate_copy(data, checkpoint, folder, name)

    def use(policy: Any) -> None:
        out = policy.act(np.zeros((2, policy.obs_dim), np.float32))
        assert out.shape == (2, policy.act_dim) and np.isfinite(out).all()

    typed_or_loaded(lambda: load_policy(folder), use)


# -- sweep TOML configs ----------------------------------------------------------------------------
SWEEP = """
[grid]
envs = ["qbc/ScalarStable-v0"]
quantizers = ["uniform", "smooth"]
bins = [8]
n_demos = 6
seeds = [0, 1]
horizons = [10, 20]

[data]
episode_steps = 30
expert_noise = 0.1

[train]
policies = ["ar-transformer", "quantized-expert"]
steps = 20
lr = 0.001
warmup_steps = 2
model = {d_model = 16, n_layers = 1, n_heads = 2}

[rollout]
episodes = 8
num_envs = 8
"""


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


@st.composite
def toml_mutation(draw: Any) -> bytes:
    from qbc.sweep.spec import tomllib

    if draw(st.booleans()):
        return draw(byte_mutation(SWEEP.encode()))
    doc = tomllib.loads(SWEEP)
    paths = [p for p in _paths(doc) if p]
    for _ in range(draw(st.integers(1, 2))):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.sampled_from(["replace", "delete", "add", "scale"]))
        value = draw(st.sampled_from([v for v in ODD_VALUES if v is not None and v != 10 ** 400]
                                     + [-3, 1e6]))
        try:
            doc = _apply(doc, path, op, value)
        except (KeyError, IndexError, TypeError, OverflowError):
            pass
        paths = [p for p in _paths(doc) if p]
    return _dump_toml(doc).encode()


@FUZZ
@given(raw=toml_mutation())
def test_fuzz_sweep_configs(scratch, raw):
    from qbc.sweep import load_spec
    from qbc.sweep.cells import expand_cells

    (scratch / "s.toml").write_bytes(raw)
    typed_or_loaded(lambda: load_spec(scratch / "s.toml"), expand_cells)


# -- results tables --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def results_table(tmp_path_factory):
    from qbc.sweep.table import append_rows

    path = tmp_path_factory.mktemp("table") / "results.csv"
    for i in range(3):
        append_rows(path, [{"cell": f"c{i}", "env": "qbc/ScalarStable-v0", "policy": "p",
                            "H": 10 * (i + 1), "regret": 0.5 + i, "bins": 8}])
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_results_tables(results_table, scratch, data):
    from qbc.sweep.table import read_table

    raw = data.draw(byte_mutation(results_table))
    (scratch / "results.csv").write_bytes(raw)

    def use(rows: list[dict[str, Any]]) -> None:
        for row in rows:  # a faithful load: every row has the key columns of a complete row
            assert row["cell"] is not None and isinstance(row["H"], (int, type(None)))

    typed_or_loaded(lambda: read_table(scratch / "results.csv"), use)


# -- dataset metadata ------------------------------------------------------------------------------
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


@pytest.mark.parametrize("name", ["data/metadata.json", "qbc_config.json"])
@FUZZ
@given(data=st.data())
def test_fuzz_dataset_metadata(dataset_root, scratch, name, data):
    from qbc.data import load_demonstrations

    root = scratch / "minari"
    mutate_copy(data, dataset_root, root, Path("test") / "fz-v0" / name)

    def use(demos: Any) -> None:
        assert demos.observations.shape[0] == demos.actions.shape[0] > 0

    typed_or_loaded(lambda: load_demonstrations("test/fz-v0", root=root), use)
