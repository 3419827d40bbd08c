"""Data-parallel chunk training: `torchrun -m qbc.cli train-chunked` follows the single-process
run, as `qbc train`'s does (tests/training/test_ddp.py: the same launcher, tolerances and reasons).

The chunk runs: chunk-ar-transformer over per-step tokens (16 bins) of k = 4 chunks of the
ScalarStable LQR demonstrations, 20 steps of a 64-chunk global batch (2 x 32 under torchrun),
an evaluation every 5 steps. The 2-process run must write one loadable checkpoint (the
unwrapped module's names), select the same best step, and give a closing rollout (4 coupled
episodes) like the single-process run's.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from ddp_runs import _assert_same_run, _free_port, _metrics, _torchrun, dataset
from safetensors.torch import load_file

from qbc.data import load_demonstrations
from qbc.policy import ModelConfig, load_policy
from qbc.training.chunked import ChunkTrainConfig, run_train_chunked, train_chunked
from qbc.training.closing_rollout import ClosingRollout

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build")

__all__ = ["dataset"]  # the fixture of tests/ddp_runs.py, used here by name

DATASET = "test/scalar-ddp-v0"
KEYS = ("train_loss", "val_loss", "val_action_rmse")
FLAGS = ["--dataset", DATASET, "--chunk-k", "4", "--bins", "16", "--steps", "20",
         "--batch-size", "64", "--eval-interval", "5", "--warmup-steps", "5",
         "--rollout-episodes", "4", "--no-progress", "--model.d-model", "32",
         "--model.n-heads", "2", "--device", "cpu"]


def _config(out, **kw) -> ChunkTrainConfig:
    base = dict(dataset=DATASET, out=out, chunk_k=4, bins=16, steps=20, batch_size=64,
                eval_interval=5, warmup_steps=5, rollout_episodes=4, progress=False,
                device="cpu", model=ModelConfig(d_model=32, n_heads=2))
    return ChunkTrainConfig(**{**base, **kw})


@pytest.mark.slow  # one torchrun launch: ~25 s on 2 busy cores, mostly imports
def test_torchrun_train_chunked_follows_the_single_process_run(tmp_path, dataset):
    single = run_train_chunked(_config(tmp_path / "single"))
    proc = _torchrun([*FLAGS, "--out", str(tmp_path / "ddp")], command="train-chunked")
    assert proc.stdout.count("trained chunk-ar-transformer") == 1  # rank 0 alone prints
    _assert_same_run(tmp_path / "single", tmp_path / "ddp", steps=[5, 10, 15, 20], keys=KEYS)
    conf = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert conf["world_size"] == 2 and conf["resolved_device"] == "cpu"
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    rmse = {m["step"]: m["val_action_rmse"] for m in _metrics(tmp_path / "ddp")}
    assert summary["steps"] == 20 and summary["best_step"] == min(rmse, key=rmse.get)
    assert summary["best_step"] == single["best_step"] and summary["world_size"] == 2
    # the best checkpoint loads as a chunk policy and predicts what the single run's does
    a = load_policy(tmp_path / "single" / "best", device="cpu")
    b = load_policy(tmp_path / "ddp" / "best", device="cpu")
    obs = load_demonstrations(DATASET).observations[:64]
    (ca, fa), (cb, fb) = a.predict_chunks(obs), b.predict_chunks(obs)
    assert cb.shape == (64, 4, 1) and not fa.any() and not fb.any()
    assert np.mean(np.isclose(ca, cb, atol=1e-4)) > 0.95  # argmax ties may flip a rare bin
    # sane closing rollouts: same seeds and episodes, finite, the floor beside them
    ra, rb = single["rollout"], ClosingRollout.from_json(summary["rollout"])  # the file's
    assert rb.episodes == ra.episodes == 4 and np.isfinite(rb.regret)
    assert rb.actors["chunk_floor"].regret == pytest.approx(ra.actors["chunk_floor"].regret)
    assert rb.regret == pytest.approx(ra.regret, rel=0.05, abs=1e-3)
    assert not list(tmp_path.glob("ddp/**/.*.tmp"))  # no torn writes from a second writer


@pytest.mark.slow  # one torchrun launch
def test_torchrun_train_chunked_resumes_where_the_uninterrupted_run_ends(tmp_path, dataset):
    full = _config(tmp_path / "full", rollout_episodes=0)
    run_train_chunked(full)
    cut = replace(full, out=tmp_path / "cut")
    part = train_chunked(cut, load_demonstrations(DATASET), stop_at=10)  # interrupted
    assert part["steps"] == 10
    flags = [f if f != "4" or FLAGS[i - 1] != "--rollout-episodes" else "0"
             for i, f in enumerate(FLAGS)]
    _torchrun([*flags, "--out", str(cut.out), "--resume"], command="train-chunked")
    assert [m["step"] for m in _metrics(cut.out)] == [5, 10, 15, 20]
    _assert_same_run(full.out, cut.out, steps=[15, 20], keys=KEYS)


@pytest.mark.parametrize("policy", ["chunk-ar-transformer", "chunk-mlp-l1"])
def test_the_chunk_ddp_path_with_one_process_is_exact(tmp_path, dataset, monkeypatch, policy):
    """RANK/WORLD_SIZE set as torchrun would for one process: the chunk run goes through the
    process group and DistributedDataParallel, and matches the plain run bit for bit."""
    demos = load_demonstrations(DATASET)
    kw = dict(policy=policy, steps=8, eval_interval=4, rollout_episodes=0)
    if policy == "chunk-mlp-l1":
        kw.update(bins=64, model=ModelConfig(hidden=32, mlp_layers=1))
    plain = train_chunked(_config(tmp_path / "plain", **kw), demos)
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(k, v)
    ddp = train_chunked(_config(tmp_path / "ddp", **kw), demos)
    assert not dist.is_initialized()  # the session destroyed its process group
    assert ddp["world_size"] == 1 and ddp["rank"] == 0
    assert [m["train_loss"] for m in _metrics(tmp_path / "ddp")] == \
        [m["train_loss"] for m in _metrics(tmp_path / "plain")]
    assert ddp["final_train_loss"] == plain["final_train_loss"]
    a = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    conf = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert conf["world_size"] == 1


def test_a_global_batch_the_ranks_cannot_share_is_refused_before_writing(tmp_path, dataset,
                                                                         monkeypatch):
    """Three ranks cannot split 64 chunks equally: one line, before the run folder exists."""
    import contextlib

    import qbc.training.chunked as chunked
    from qbc.errors import InvalidValueError
    from qbc.training.distributed import DistContext

    @contextlib.contextmanager
    def three_ranks(device):
        yield DistContext(rank=0, world_size=3, active=True)

    monkeypatch.setattr(chunked, "session", three_ranks)
    with pytest.raises(InvalidValueError, match="--batch-size 64 is not a multiple of the 3"):
        train_chunked(_config(tmp_path / "out", rollout_episodes=0),
                      load_demonstrations(DATASET))
    assert not (tmp_path / "out").exists()
