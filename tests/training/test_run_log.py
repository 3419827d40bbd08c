"""Run logs: qbc train writes TensorBoard event files (and an offline W&B run) beside
metrics.jsonl."""

import json
import struct

import pytest

from qbc.cli import main
from qbc.training.run_log import RunLog, record_scalars

TINY = ["--steps", "20", "--eval-interval", "10", "--bins", "8", "--batch-size", "16",
        "--rollout-episodes", "2", "--no-progress", "--model.d-model", "16", "--model.n-heads",
        "2"]


def read_scalars(folder):
    """{tag: [(step, value)]} from the TFRecord event files in ``folder``."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4  # length, its crc, the record, its crc
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def _dataset():
    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--episodes", "6", "--dataset",
                 "test/tb-v0", "--max-episode-steps", "30", "--no-progress"]) == 0


def test_train_writes_readable_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboardX")
    _dataset()
    out = tmp_path / "run"
    assert main(["train", "--dataset", "test/tb-v0", "--out", str(out), *TINY]) == 0
    scalars = read_scalars(out / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [10, 20]
    assert {"train/lr", "train/samples_per_s", "eval/train_loss", "eval/val_loss",
            "rollout/regret", "rollout/policy_mean_return"} <= set(scalars)
    metrics = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [v for _, v in scalars["eval/train_loss"]] == pytest.approx(
        [m["train_loss"] for m in metrics])
    summary = json.loads((out / "summary.json").read_text())
    assert scalars["rollout/regret"] == [(20, pytest.approx(summary["rollout"]["regret"]))]
    assert summary["run_logs"] == ["tensorboard"]
    # --overwrite clears the old curves; --no-tensorboard writes none
    assert main(["train", "--dataset", "test/tb-v0", "--out", str(out), "--overwrite",
                 "--no-tensorboard", *TINY]) == 0
    assert not (out / "tensorboard").exists()


def test_run_log_skips_non_numbers_and_is_silent_when_off(tmp_path):
    log = RunLog(tmp_path / "off", tensorboard=False)
    log.scalars({"a": 1.0}, 1)
    log.close()
    assert not (tmp_path / "off").exists()
    assert record_scalars({"step": 3, "elapsed_s": 1.0, "val_loss": 0.5}, "eval") == {
        "eval/val_loss": 0.5}


def test_wandb_offline_run(tmp_path):
    pytest.importorskip("wandb")
    log = RunLog(tmp_path / "w", {"lr": 1e-3}, tensorboard=False, wandb=True)
    log.scalars({"train/loss": 0.5, "note": "text", "nan": float("nan")}, 1)
    log.close()
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
