"""qbc expert train --resume: a long SB3 training runs in parts (model and replay buffer go on)."""

import json

import pytest

from qbc.agents.sb3 import load_sb3_model, replay_buffer_path, train_sb3_expert
from qbc.cli import main
from qbc.errors import InvalidValueError, OutputExistsError

SCALAR = "qbc/ScalarStable-v0"


@pytest.mark.slow
def test_resume_continues_the_model_and_its_replay_buffer(tmp_path):
    path = train_sb3_expert(SCALAR, algo="td3", timesteps=120, path=tmp_path / "m",
                            progress=False)
    assert replay_buffer_path(path).is_file()
    with pytest.raises(OutputExistsError, match="--resume"):
        train_sb3_expert(SCALAR, algo="td3", timesteps=10, path=path, progress=False)
    train_sb3_expert(SCALAR, algo="td3", timesteps=50, path=path, progress=False, resume=True)
    model = load_sb3_model(path, "td3")
    assert model.num_timesteps == 170
    model.load_replay_buffer(replay_buffer_path(path))
    assert model.replay_buffer.size() == 170  # the first part's transitions were kept
    with pytest.raises(InvalidValueError, match="no model"):
        train_sb3_expert(SCALAR, algo="td3", timesteps=10, path=tmp_path / "none",
                         progress=False, resume=True)


@pytest.mark.slow
def test_cli_resume_reports_the_total_over_the_parts(tmp_path, capsys):
    out = str(tmp_path / "e" / "scalar-td3.zip")
    base = ["expert", "train", "--env", SCALAR, "--algo", "td3", "--out", out,
            "--eval-episodes", "1", "--no-progress"]
    assert main([*base, "--timesteps", "110"]) == 0
    assert main([*base, "--timesteps", "40"]) == 2  # exists: refused without --resume
    assert "--resume" in capsys.readouterr().err
    assert main([*base, "--timesteps", "40", "--resume"]) == 0
    assert "150 steps" in capsys.readouterr().out
    report = json.loads((tmp_path / "e" / "scalar-td3.json").read_text())
    assert report["total_timesteps"] == 150 and report["parts"] == 2
    assert report["total_train_seconds"] >= report["train_seconds"]
    assert load_sb3_model(out, "td3").num_timesteps == 150


def test_an_interrupted_training_is_saved_and_resumes(tmp_path, monkeypatch):
    from stable_baselines3.common.callbacks import BaseCallback

    import qbc.agents.sb3 as sb3

    class StopAt60(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 60:
                raise KeyboardInterrupt
            return True

    monkeypatch.setattr(sb3, "_progress_callback", lambda *a: StopAt60())
    with pytest.raises(KeyboardInterrupt):
        train_sb3_expert(SCALAR, algo="td3", timesteps=500, path=tmp_path / "m", progress=False)
    assert load_sb3_model(tmp_path / "m", "td3").num_timesteps == 60
    monkeypatch.undo()
    train_sb3_expert(SCALAR, algo="td3", timesteps=20, path=tmp_path / "m", progress=False,
                     resume=True)
    assert load_sb3_model(tmp_path / "m", "td3").num_timesteps == 80


def test_cli_resume_after_an_interrupted_part_counts_its_steps(tmp_path, monkeypatch, capsys):
    # the interrupted part writes no report; the total comes from the model's own count
    from stable_baselines3.common.callbacks import BaseCallback

    import qbc.agents.sb3 as sb3

    class StopAt60(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 60:
                raise KeyboardInterrupt
            return True

    out = str(tmp_path / "e" / "scalar-td3.zip")
    base = ["expert", "train", "--env", SCALAR, "--algo", "td3", "--out", out,
            "--eval-episodes", "1", "--no-progress"]
    monkeypatch.setattr(sb3, "_progress_callback", lambda *a: StopAt60())
    assert main([*base, "--timesteps", "500"]) != 0
    monkeypatch.undo()
    assert main([*base, "--timesteps", "40", "--resume"]) == 0
    report = json.loads((tmp_path / "e" / "scalar-td3.json").read_text())
    assert report["total_timesteps"] == load_sb3_model(out, "td3").num_timesteps == 100
