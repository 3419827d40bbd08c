"""Data-parallel training: `torchrun -m qbc.cli train` (and `train-chunked`) follows the
single-process run.

Tolerances of the 2-process comparisons: the global batch is the same 64 rows, but DDP averages
two 32-row gradients ((g0 + g1) / 2) where one process sums 64 rows, and the matrix products run
on 32-row blocks; float32 sums in another order differ in the last bits (about 1e-7 relative).
AdamW divides each gradient by its running RMS, so such differences pass into the weights at up
to a fraction of the learning rate per step for parameters whose gradient is tiny. Measured after
20 steps (lr 1e-3, weights of size ~1): max |w_ddp - w_single| ~6e-6, losses equal to ~1e-8
relative. The tests allow 1e-4 on weights (a tenth of one lr-sized step) and 1e-5 relative on
losses: loose enough for rounding, far tighter than any real difference (a wrong shard, a
missing gradient average or another batch changes the losses at the 1e-2 level). With one
process the DDP path is exact: same weights bit for bit.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_runs import DATASET, _assert_same_run, _free_port, _metrics, _torchrun, dataset
from safetensors.torch import load_file

from qbc.data import load_demonstrations
from qbc.errors import InvalidValueError
from qbc.policy import ModelConfig
from qbc.training import TrainConfig, run_train, train
from qbc.training.distributed import DistContext, session

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build")

__all__ = ["dataset"]  # the fixture of tests/ddp_runs.py, used here by name

#: the flags of both runs (the single-process run gets the same values as a TrainConfig)
FLAGS = ["--dataset", DATASET, "--steps", "20", "--batch-size", "64", "--eval-interval", "5",
         "--warmup-steps", "5", "--bins", "16", "--rollout-episodes", "0", "--no-progress",
         "--model.d-model", "32", "--model.n-heads", "2", "--device", "cpu"]


def _config(out: Path, **kw) -> TrainConfig:
    base = dict(dataset=DATASET, out=out, steps=20, batch_size=64, eval_interval=5,
                warmup_steps=5, bins=16, rollout_episodes=0, progress=False, device="cpu",
                model=ModelConfig(d_model=32, n_heads=2))
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow  # one torchrun launch: ~20 s on 2 busy cores, mostly imports
def test_torchrun_two_processes_follow_the_single_process_run(tmp_path, dataset, capsys):
    run_train(_config(tmp_path / "single"))
    proc = _torchrun([*FLAGS, "--out", str(tmp_path / "ddp")])
    assert proc.stdout.count("trained ar-transformer") == 1  # rank 0 alone prints the summary
    _assert_same_run(tmp_path / "single", tmp_path / "ddp", steps=[5, 10, 15, 20])
    conf = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert conf["world_size"] == 2 and conf["resolved_device"] == "cpu"
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = json.loads((tmp_path / "single" / "summary.json").read_text())
    mse = {m["step"]: m["val_action_mse"] for m in _metrics(tmp_path / "ddp")}
    # both keep the checkpoint of the lowest validation action error, the same one
    assert summary["steps"] == 20 and summary["best_step"] == min(mse, key=mse.get)
    assert summary["best_step"] == single["best_step"]
    assert not list(tmp_path.glob("ddp/**/.*.tmp"))  # no torn writes from a second writer


@pytest.mark.slow  # one torchrun launch: ~20 s on 2 busy cores, mostly imports
def test_torchrun_resumes_a_checkpoint_and_ends_where_the_uninterrupted_run_ends(tmp_path,
                                                                                  dataset):
    full = _config(tmp_path / "full")
    run_train(full)
    cut = replace(full, out=tmp_path / "cut")
    part = train(cut, load_demonstrations(DATASET), stop_at=10)  # interrupted at step 10
    assert part.step == 10
    _torchrun([*FLAGS, "--out", str(cut.out), "--resume"])  # every rank loads out/last
    assert [m["step"] for m in _metrics(cut.out)] == [5, 10, 15, 20]
    _assert_same_run(full.out, cut.out, steps=[15, 20])


@pytest.mark.slow
def test_the_ddp_path_with_one_process_is_exact(tmp_path, dataset, monkeypatch):
    """RANK/WORLD_SIZE set as torchrun would for one process: the run goes through the process
    group and DistributedDataParallel, and matches the plain run bit for bit."""
    demos = load_demonstrations(DATASET)
    plain = train(_config(tmp_path / "plain", steps=8, eval_interval=4), demos)
    for k, v in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(k, v)
    ddp = train(_config(tmp_path / "ddp", steps=8, eval_interval=4), demos)
    assert not dist.is_initialized()  # the session destroyed its process group
    assert [m["train_loss"] for m in ddp.metrics] == [m["train_loss"] for m in plain.metrics]
    assert [m["val_loss"] for m in ddp.metrics] == [m["val_loss"] for m in plain.metrics]
    a = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    conf = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert conf["world_size"] == 1


def test_shards_partition_the_global_batch_and_need_equal_sizes():
    batch = {"obs": torch.arange(12.0).reshape(6, 2), "tokens": torch.arange(6)}
    parts = [DistContext(rank=r, world_size=3, active=True).shard(batch) for r in range(3)]
    assert torch.equal(torch.cat([p["obs"] for p in parts]), batch["obs"])
    assert [p["tokens"].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(InvalidValueError, match="multiple of the 4 processes"):
        DistContext(rank=0, world_size=4, active=True).shard(batch)


def test_without_torchrun_the_context_is_a_single_process_no_op(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with session(torch.device("cpu")) as ctx:
        assert not ctx.active and ctx.is_main and ctx.world_size == 1
        module = torch.nn.Linear(2, 1)
        assert ctx.wrap(module, torch.device("cpu")) is module
        assert ctx.mean(1.5) == 1.5 and ctx.share({"a": 1}) == {"a": 1}
        assert ctx.main_first(lambda: 7) == 7
    assert not dist.is_initialized()
