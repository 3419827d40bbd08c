"""What the data-parallel tests share (tests/training/test_ddp.py, test_ddp_chunked.py): the
dataset fixture, the torchrun launcher and the comparison of a 2-process run with the
single-process one, within the tolerances test_ddp.py's docstring explains."""

import json
import os
import socket
from pathlib import Path

import pytest
from in_process import CliResult, run_python
from safetensors.torch import load_file

from qbc.data.collect import CollectConfig, collect

DATASET = "test/scalar-ddp-v0"
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-4


@pytest.fixture
def dataset():
    """10 LQR episodes of qbc/ScalarStable-v0 in this test's MINARI_DATASETS_PATH."""
    pytest.importorskip("qbc.agents.experts")
    collect(CollectConfig(env="qbc/ScalarStable-v0", dataset_id=DATASET, episodes=10,
                          num_envs=10))
    return DATASET


def _torchrun(args: list[str], nproc: int = 2, command: str = "train") -> CliResult:
    """``torchrun --nproc-per-node NPROC --standalone -m qbc.cli COMMAND ARGS``: the launcher
    runs in this process (tests/in_process.py), its ranks in processes of their own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(MINARI_DATASETS_PATH=os.environ["MINARI_DATASETS_PATH"], OMP_NUM_THREADS="1")
    argv = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone",
            "-m", "qbc.cli", command, *args]
    proc = run_python(argv, env=env, replace_env=True)
    assert proc.returncode == 0, f"torchrun {argv[2:]} failed:\n{proc.stdout}\n" \
                                 f"{proc.stderr[-4000:]}"
    return proc


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path, steps: list[int],
                     keys: tuple[str, ...] = ("train_loss", "val_loss", "val_action_mse")
                     ) -> None:
    """Losses of the records at ``steps`` and the final weights agree within the tolerances."""
    ma = {m["step"]: m for m in _metrics(a)}
    mb = {m["step"]: m for m in _metrics(b)}
    assert sorted(ma) == sorted(mb)
    for s in steps:
        for key in keys:
            assert mb[s][key] == pytest.approx(ma[s][key], rel=LOSS_RTOL), (s, key)
        assert mb[s]["lr"] == ma[s]["lr"]
    wa = load_file(str(a / "last" / "model.safetensors"))
    wb = load_file(str(b / "last" / "model.safetensors"))
    assert sorted(wa) == sorted(wb)  # same checkpoint format: the unwrapped module's names
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert diff < WEIGHT_ATOL, f"max weight difference {diff:.3g}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
