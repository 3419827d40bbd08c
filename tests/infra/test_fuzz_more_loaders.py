"""The loaders tests/infra/test_fuzz_loaders.py does not reach, under the same mutations (bytes
flipped, cut, inserted; JSON fields dropped, added, retyped, made huge, non-finite, thousands of
digits long or nested thousands deep): a run's metrics.jsonl, its weights and tokenizer, the
trainer state a resume reads, ``--config`` files (JSON and TOML), a DAgger run's files, a
transition model, the .npy actions of ``qbc tokenize`` and a Minari dataset's HDF5 file. Each
loads faithfully (and then works) or raises one of qbc's typed errors in one line; 200
derandomised examples per loader, a few seconds each."""

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
    _dump_toml,
    byte_mutation,
    dataset_root,  # noqa: F401 (a fixture)
    mutate_copy,
    mutated,
    scratch,  # noqa: F401 (a fixture)
    typed_or_loaded,
)

# 200 derandomised examples per loader: the fuzzers run in the full suite, not the fast lane.
pytestmark = pytest.mark.slow


# -- metrics.jsonl ---------------------------------------------------------------------------------
METRICS = "".join(json.dumps({"step": s, "train_loss": 1.0 / s, "lr": 1e-3}) + "\n"
                  for s in range(1, 6)).encode()


@FUZZ
@given(data=st.data())
def test_fuzz_metrics_logs(scratch, data):  # noqa: F811
    from qbc.training.checkpoint import read_metrics

    first = json.loads(METRICS.splitlines()[0])
    raw = data.draw(st.one_of(mutated(METRICS), mutated(METRICS, first).map(
        lambda line: line + b"\n" + METRICS)))
    (scratch / "metrics.jsonl").write_bytes(raw)

    def use(records: list[dict[str, Any]]) -> None:
        assert all(isinstance(r, dict) and isinstance(r.get("step", 0), int) for r in records)

    typed_or_loaded(lambda: read_metrics(scratch / "metrics.jsonl", upto=10), use)


# -- a run's checkpoint: weights and tokenizer; the trainer state of last/ -------------------------
@pytest.fixture(scope="module")
def run_folder(tiny_lin_run):
    return tiny_lin_run / "run"


@pytest.mark.parametrize("name", ["best/model.safetensors", "best/tokenizer.json"])
@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_weights_and_tokenizer(run_folder, scratch, name, data):  # noqa: F811
    from qbc.policy import load_policy

    folder = scratch / "ckpt"
    mutate_copy(data, run_folder / "best", folder, Path(name).name)

    def use(policy: Any) -> None:
        out = policy.act(np.zeros((2, policy.obs_dim), np.float32))
        assert out.shape == (2, policy.act_dim) and np.isfinite(out).all()

    typed_or_loaded(lambda: load_policy(folder), use)


@pytest.mark.parametrize("name", ["trainer_state.json", "trainer.safetensors"])
@FUZZ
@given(data=st.data())
def test_fuzz_trainer_states(run_folder, scratch, name, data):  # noqa: F811
    import torch

    from qbc.training import TrainConfig
    from qbc.training.checkpoint import load_last, restore_progress
    from qbc.training.optim import make_optimizer, make_scheduler

    out = scratch / "run"
    mutate_copy(data, run_folder / "last", out / "last", name)
    conf = json.loads((run_folder / "last" / "config.json").read_text())["train"]
    cfg = TrainConfig(dataset="x-v0", steps=4, warmup_steps=1)

    def load() -> tuple[int, dict]:
        module, _, _, state = load_last(out, conf)
        optimizer = make_optimizer(module, cfg)
        return restore_progress(out, state, optimizer, make_scheduler(optimizer, cfg),
                                torch.Generator(), np.random.default_rng(0))

    rng = torch.random.get_rng_state()
    try:
        typed_or_loaded(load, lambda got: None if got[0] >= 0 else pytest.fail(str(got)))
    finally:
        torch.random.set_rng_state(rng)


# -- --config files --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".toml"])
@FUZZ
@given(data=st.data())
def test_fuzz_config_files(run_folder, scratch, suffix, data):  # noqa: F811
    from qbc.cli.config_file import load_defaults
    from qbc.cli.train import CONFIG_FILE
    from qbc.training import TrainConfig, validate_config

    doc = json.loads((run_folder / "train_config.json").read_text())
    if suffix == ".json":
        raw = data.draw(mutated(json.dumps(doc).encode(), doc))
    else:
        small = {"lr": 0.001, "steps": 20, "bins": 8, "quantizer": "uniform",
                 "model": {"d_model": 16, "n_layers": 1, "n_heads": 2}}
        text = _dump_toml({k: v for k, v in small.items() if k != "model"}
                          | {"model": small["model"]}).encode()
        raw = data.draw(st.one_of(byte_mutation(text), mutated(json.dumps(small).encode(), small)
                                  .map(lambda b: _json_as_toml(b))))
    path = scratch / f"c{suffix}"
    path.write_bytes(raw)

    def use(cfg: Any) -> None:
        if isinstance(cfg, TrainConfig) and isinstance(cfg.dataset, str):
            validate_config(cfg)

    typed_or_loaded(lambda: load_defaults(TrainConfig, path, CONFIG_FILE), use)


def _json_as_toml(raw: bytes) -> bytes:
    """A mutated JSON document written as TOML (top-level scalars, then tables)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    if not isinstance(doc, dict):
        return b"x = 1\n"
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    try:
        return _dump_toml(scalars | tables).encode()
    except (ValueError, TypeError, RecursionError):
        return raw


# -- a DAgger run's files --------------------------------------------------------------------------
ROUNDS = (b"round,beta,episodes,steps,expert_labels,dataset,val_loss,regret,policy\n"
          b"0,1.0,4,80,80,d/round-0-v0,0.5,0.25,r/round-0\n"
          b"1,0.5,4,80,160,d/round-1-v0,0.4,0.125,r/round-1\n")


@pytest.mark.parametrize("name", ["rounds.csv", "timing.csv"])
@FUZZ
@given(data=st.data())
def test_fuzz_dagger_tables(scratch, name, data):  # noqa: F811
    from qbc.interactive.run_files import _read_csv

    (scratch / name).write_bytes(data.draw(byte_mutation(ROUNDS)))

    def use(rows: list[dict[str, Any]]) -> None:
        assert all(isinstance(r, dict) for r in rows)

    typed_or_loaded(lambda: _read_csv(scratch / name), use)


# -- a transition model ----------------------------------------------------------------------------
# (transition_folder: the shared fixture of conftest.py)
@pytest.mark.parametrize("name", ["transition.json", "transition.safetensors"])
@FUZZ
@given(data=st.data())
def test_fuzz_transition_models(transition_folder, scratch, name, data):  # noqa: F811
    from qbc.rollout.augment import load_transition_model

    folder = scratch / "tm"
    mutate_copy(data, transition_folder, folder, name)

    def use(model: Any) -> None:
        mean = model.predict(np.zeros((2, model.obs_dim), np.float32),
                             np.zeros((2, model.n_tokens), np.int64))
        assert np.shape(mean)[0] == 2

    typed_or_loaded(lambda: load_transition_model(folder), use)


# -- qbc tokenize's actions file -------------------------------------------------------------------
@pytest.fixture(scope="module")
def actions_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("npy") / "a.npy"
    np.save(path, np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32))
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_actions_files(actions_file, scratch, data):  # noqa: F811
    from qbc.cli.tokenize import load_actions_file
    from qbc.tokenizer import ActionTokenizer

    path = scratch / "a.npy"
    path.write_bytes(data.draw(byte_mutation(actions_file)))

    def use(actions: np.ndarray) -> None:
        ActionTokenizer.fit(actions, quantizer="uniform", n_bins=4)

    typed_or_loaded(lambda: load_actions_file(path), use)


# -- a Minari dataset's HDF5 file ------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_dataset_hdf5_files(dataset_root, scratch, data):  # noqa: F811
    from qbc.data import load_demonstrations

    root = scratch / "minari"
    mutate_copy(data, dataset_root, root, Path("test") / "fz-v0" / "data" / "main_data.hdf5")

    def use(demos: Any) -> None:
        assert demos.observations.shape[0] == demos.actions.shape[0] > 0

    typed_or_loaded(lambda: load_demonstrations("test/fz-v0", root=root), use)


def test_a_dataset_claiming_arrays_beyond_memory_is_a_corrupt_file(dataset_root, monkeypatch):  # noqa: F811
    """Found by the fuzzer on another seed: a damaged HDF5 header claimed a 256 MiB array, and
    under a memory limit h5py's MemoryError escaped as an internal error."""
    import minari

    from qbc.data import load_demonstrations
    from qbc.errors import CorruptFileError

    def too_large(self):
        raise MemoryError("Unable to allocate 256. MiB for an array with shape (33554438,)")

    monkeypatch.setattr(minari.MinariDataset, "iterate_episodes", too_large)
    with pytest.raises(CorruptFileError, match="holds arrays larger than the memory available"):
        load_demonstrations("test/fz-v0", root=dataset_root)
