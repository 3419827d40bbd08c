"""Same command, same seed -> same dataset, tokens, weights and metrics on CPU.

The chain collect -> train -> rollout runs twice through ``qbc.cli.main``: once in a fresh
interpreter (one subprocess running the three commands), once in this process after scrambling
every global random generator (so a result that leaned on unseeded global state would
differ). Both use one torch thread and the same relative paths in different folders; their
files are compared byte for byte where bytes are meaningful, and number for number where a file
also holds wall-clock times.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_MODEL_FLAGS

ENV = "qbc/LinearUnstable-v0"
DATASET = "qbc/repro-v0"
CHAIN = [
    ["collect", "--env", ENV, "--dataset", DATASET, "--episodes", "6", "--num-envs", "4",
     "--max-episode-steps", "30", "--expert-noise", "0.2", "--seed", "3"],
    # smooth binning: training draws stochastically rounded tokens from its own generator
    ["train", "--dataset", DATASET, "--out", "runs/bc", "--quantizer", "smooth", "--bins", "16",
     "--steps", "24", "--eval-interval", "8", "--batch-size", "32", "--warmup-steps", "4",
     "--seed", "5", "--rollout-episodes", "2", "--rollout-horizon", "15", "--no-progress",
     "--device", "cpu", *TINY_MODEL_FLAGS],
    # sampled decoding: the rollout's --seed must fix the samples
    ["rollout", "--policy", "runs/bc", "--out", "runs/rollout", "--episodes", "3",
     "--num-envs", "3", "--horizons", "5,20", "--decode", "sample", "--seed", "77"],
]
# Every test here compares the two runs of the chain (one of them in a fresh interpreter).
pytestmark = pytest.mark.slow
TIMING_KEYS = {"elapsed_s", "samples_per_s", "train_samples_per_s", "timing", "seconds"}


def _run_in_a_fresh_interpreter(folder: Path) -> None:
    """The chain's commands one after the other through ``qbc.cli.main`` in one new
    interpreter (whose global state nobody has touched), each as ``qbc ARGV`` would run."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(folder / "minari"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "123"}
    chain = ("import sys\nfrom qbc.cli import main\n"
             f"for argv in {CHAIN!r}:\n"
             "    if main(argv) != 0:\n"
             "        sys.exit(f'{argv[0]} failed')\n")
    proc = subprocess.run([sys.executable, "-c", chain], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _run_in_process(folder: Path, monkeypatch) -> None:
    from qbc.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder / "minari"))
    monkeypatch.chdir(folder)
    for argv in CHAIN:
        random.seed(999)  # scramble every global generator between the commands
        np.random.seed(999)  # noqa: NPY002  (the legacy global generator, on purpose)
        torch.manual_seed(999)
        assert main(argv) == 0, argv[0]


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    a = tmp_path_factory.mktemp("fresh_process")
    b = tmp_path_factory.mktemp("scrambled_globals")
    _run_in_a_fresh_interpreter(a)
    with pytest.MonkeyPatch.context() as mp:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _run_in_process(b, mp)
        finally:
            torch.set_num_threads(before)
    return a, b


def _same_bytes(a: Path, b: Path, rel: str) -> None:
    """Byte-equal files; a run's config is compared without its run id (drawn per run, so
    that --resume can tell two runs apart) but otherwise byte for byte."""
    if Path(rel).name in ("config.json", "train_config.json"):
        texts = [(root / rel).read_text() for root in (a, b)]
        ids = [json.loads(t).get("run_id") or (json.loads(t).get("train") or {}).get("run_id")
               for t in texts]
        if rel.startswith("runs/bc/"):
            assert all(isinstance(i, str) and len(i) == 32 for i in ids) and ids[0] != ids[1]
        assert texts[0].replace(str(ids[0]), "") == texts[1].replace(str(ids[1]), ""), rel
        return
    assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_same_dataset(two_runs):
    a, b = two_runs
    ds = Path("minari") / DATASET
    for rel in ("data/main_data.hdf5", "data/metadata.json", "qbc_config.json"):
        _same_bytes(a, b, str(ds / rel))
    import h5py

    with h5py.File(a / ds / "data" / "main_data.hdf5") as f:  # not all zeros / empty
        acts = np.concatenate([f[k]["actions"][()] for k in f])
    assert acts.shape == (6 * 30, 2) and np.isfinite(acts).all() and acts.std() > 0


def test_same_tokens_and_weights(two_runs):
    a, b = two_runs
    for sub in ("best", "last"):
        for name in ("model.safetensors", "tokenizer.json", "normalizer.json", "config.json"):
            _same_bytes(a, b, f"runs/bc/{sub}/{name}")
    for name in ("trainer.safetensors", "trainer_state.json"):
        _same_bytes(a, b, f"runs/bc/last/{name}")
    _same_bytes(a, b, "runs/bc/train_config.json")

    from qbc.data import load_demonstrations
    from qbc.tokenizer import ActionTokenizer

    os.environ["MINARI_DATASETS_PATH"] = str(a / "minari")  # restored by conftest's monkeypatch
    actions = load_demonstrations(DATASET).actions
    tokens = [ActionTokenizer.load(r / "runs/bc/best/tokenizer.json").encode(actions)
              for r in (a, b)]
    np.testing.assert_array_equal(tokens[0], tokens[1])
    assert len(np.unique(tokens[0])) > 4  # the tokens say something


def test_same_training_metrics(two_runs):
    a, b = two_runs

    def records(root):
        return [_without_timing(json.loads(line))
                for line in (root / "runs/bc/metrics.jsonl").read_text().splitlines()]

    assert records(a) == records(b)
    assert [r["step"] for r in records(a)] == [8, 16, 24]
    sa, sb = (_without_timing(json.loads((r / "runs/bc/summary.json").read_text()))
              for r in (a, b))
    assert sa == sb and sa["rollout"]["episodes"] == 2


def test_same_rollout_metrics(two_runs):
    a, b = two_runs
    ma, mb = (_without_timing(json.loads((r / "runs/rollout/metrics.json").read_text()))
              for r in (a, b))
    assert ma == mb
    _same_bytes(a, b, "runs/rollout/per_step.csv")
    _same_bytes(a, b, "runs/rollout/config.json")
    with open(a / "runs/rollout/per_step.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 0 and "policy" in ma["policies"]
