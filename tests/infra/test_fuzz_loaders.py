"""Every loader under hypothesis: a valid file, mutated (bytes flipped, cut, inserted; JSON fields
dropped, added, retyped, made huge or non-finite), loads faithfully — and then works — or raises
one of qbc's typed errors with a one-line message. Never another exception, a crash or a hang.

Each test builds its valid file once (module fixtures) and mutates it in memory into a fresh
temporary file per example; 200 derandomised examples per loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from loader_fuzz import (
    FUZZ,
    ODD_VALUES,
    _apply,
    _dump_toml,
    _paths,
    byte_mutation,
    dataset_root,
    mutate_copy,
    mutated,
    scratch,
    typed_or_loaded,
)
from tiny import TINY_CHUNK_TOKENIZERS, TINY_MODEL

# 200 derandomised examples per loader: the fuzzers run in the full suite, not the fast lane.
pytestmark = pytest.mark.slow

__all__ = ["dataset_root", "scratch"]  # the fixtures of tests/loader_fuzz.py, used here by name


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


@pytest.mark.parametrize("field, value", [("activation", []), ("output", {"a": 1}),
                                          ("activation", 3)])
def test_an_actor_json_field_of_another_type_is_a_corrupt_file(actor_folder, tmp_path, field,
                                                               value):
    """Found by the fuzzer on other seeds: a list as the activation raised TypeError."""
    import shutil

    from qbc.agents.actor import read_actor_meta
    from qbc.errors import CorruptFileError

    folder = tmp_path / "actor"
    shutil.copytree(actor_folder, folder)
    meta = json.loads((folder / "actor.json").read_text())
    (folder / "actor.json").write_text(json.dumps({**meta, field: value}))
    with pytest.raises(CorruptFileError, match=f"{field} must be one of"):
        read_actor_meta(folder)


@pytest.mark.parametrize("bound", [10 ** 400, 1e300, "x"])
def test_an_actor_json_bound_beyond_float32_is_a_corrupt_file(actor_folder, tmp_path, bound):
    """Found by the fuzzer on other seeds: an integer bound of 400 digits raised OverflowError;
    1e300 loaded and acted with infinite bounds."""
    import shutil

    from qbc.agents.actor import read_actor_meta
    from qbc.errors import CorruptFileError

    folder = tmp_path / "actor"
    shutil.copytree(actor_folder, folder)
    meta = json.loads((folder / "actor.json").read_text())
    meta["action_space"]["high"] = [bound]
    (folder / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="action_space .*finite"):
        read_actor_meta(folder)


def test_a_chunk_codeword_no_probe_reaches_is_checked_too(chunk_files, tmp_path):
    """Found by the fuzzer on another seed: an RVQ codeword set to -1e308 loaded (no probe
    chunk encodes to it) and then decoded chunks to -inf."""
    from qbc.chunking import ChunkTokenizer
    from qbc.errors import CorruptFileError

    state = json.loads(chunk_files["rvq"])
    state["fitted"]["levels_"][1]["fitted"]["codebook_"][6][0] = -1e308
    path = tmp_path / "rvq.json"
    path.write_text(json.dumps(state))
    with pytest.raises(CorruptFileError, match="a token decodes to a non-finite action"):
        ChunkTokenizer.load(path)


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
