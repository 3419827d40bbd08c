"""Remembered experts: rollout and certify rebuild the expert a dataset was collected with."""

import json
from pathlib import Path

import numpy as np
import pytest

from qbc.cli import main
from qbc.data.collect import CollectConfig, collect
from qbc.data.expert_choice import choose_expert, policy_dataset, remembered_expert

SCALAR = "qbc/ScalarStable-v0"
TINY_TRAIN = ["--steps", "4", "--eval-interval", "2", "--bins", "8", "--batch-size", "16",
              "--rollout-episodes", "0", "--no-progress", "--model.d-model", "16",
              "--model.n-heads", "2"]


def _collect_linear(dataset_id="test/linear-v0"):
    assert main(["collect", "--env", SCALAR, "--expert", "linear", "--expert-params",
                 '{"gain_scale": 0.5}', "--episodes", "6", "--dataset", dataset_id,
                 "--max-episode-steps", "30", "--no-progress"]) == 0


@pytest.mark.slow
def test_rollout_without_expert_flags_uses_the_datasets_expert(tmp_path, capsys):
    _collect_linear()
    assert remembered_expert("test/linear-v0")["params"]["gain_scale"] == 0.5
    run = tmp_path / "run"
    assert main(["train", "--dataset", "test/linear-v0", "--out", str(run), *TINY_TRAIN]) == 0
    assert policy_dataset(run) == "test/linear-v0"
    roll = ["rollout", "--policy", str(run), "--episodes", "2", "--horizons", "10",
            "--no-progress"]
    assert main([*roll, "--out", str(tmp_path / "r1")]) == 0
    assert "expert: linear" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "r1" / "metrics.json").read_text())
    assert metrics["expert"]["name"] == "linear"
    assert metrics["expert"]["params"]["gain_scale"] == 0.5
    assert metrics["expert"]["source"] == "dataset test/linear-v0"
    # an explicit flag overrides the dataset's expert
    assert main([*roll, "--expert", "lqr", "--out", str(tmp_path / "r2")]) == 0
    metrics = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert metrics["expert"] == {"name": "lqr", "params": {}, "source": "--expert"}
    # parameters given without --expert replace the dataset expert's ones of the same name
    assert main([*roll, "--expert-params", '{"gain_scale": 0.9}',
                 "--out", str(tmp_path / "r3")]) == 0
    metrics = json.loads((tmp_path / "r3" / "metrics.json").read_text())
    assert metrics["expert"]["name"] == "linear"
    assert metrics["expert"]["params"]["gain_scale"] == 0.9


def test_certify_defaults_to_the_datasets_expert(tmp_path):
    assert main(["collect", "--env", "qbc/Arctan-v0", "--expert", "arctan", "--expert-params",
                 '{"scale": 0.5}', "--episodes", "4", "--dataset", "test/arctan-v0",
                 "--max-episode-steps", "20", "--no-progress"]) == 0
    args = ["certify", "--dataset", "test/arctan-v0", "--episodes", "2", "--horizon", "10",
            "--sizes", "0.1", "--deltas", "0.01", "--horizons", "10", "--bins", "8"]
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    cert = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert cert["expert"] == "arctan" and cert["expert_spec"]["params"]["scale"] == 0.5


def test_errors_name_the_flags_that_would_work(tmp_path, capsys):
    # an env without a zoo entry defaults to lqr, which only fits qbc's envs
    # (Pendulum-v1 defaults to its zoo actor: tests/data/test_expert_discovery.py)
    car = "MountainCarContinuous-v0"
    assert main(["collect", "--env", car, "--episodes", "1", "--dataset",
                 "test/p-v0", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--expert sb3 --expert-path PATH" in err
    assert f"qbc expert train --env {car}" in err

    class MovedSB3:  # records an sb3 spec whose zip is no longer where it was
        name, params = "sb3", {"path": str(tmp_path / "gone.zip"), "algo": "sac"}

        def act(self, obs, deterministic=True):
            return np.zeros((len(obs), 1), dtype=np.float32)

    collect(CollectConfig(env="Pendulum-v1", dataset_id="test/moved-v0", episodes=2,
                          max_episode_steps=10, progress=False), expert=MovedSB3())
    assert main(["certify", "--dataset", "test/moved-v0", "--out", str(tmp_path / "c"),
                 "--episodes", "1", "--horizon", "5", "--sizes", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gone.zip" in err and "--expert-path PATH" in err
    assert "collected with" in err
    assert not (tmp_path / "c").exists()  # refused before any output


def test_choice_rules_without_a_dataset():
    assert choose_expert(None, None, None, None).name == "lqr"
    assert choose_expert(None, "m.zip", None, None).to_dict() == {
        "name": "sb3", "params": {"path": "m.zip"}, "source": "default"}
    assert choose_expert("arctan", None, {"scale": 2.0}, "nope/missing-v0").params == {
        "scale": 2.0}


def test_an_aggregate_dataset_id_remembers_its_rounds_expert():
    # a DAgger round's policy records its training data as "round-0+round-1+..."; rollout
    # must rebuild the rounds' expert from it, not fall back to lqr
    _collect_linear("test/agg/round-0-v0")
    _collect_linear("test/agg/round-1-v0")
    joined = "test/agg/round-0-v0+test/agg/round-1-v0"
    assert remembered_expert(joined)["params"]["gain_scale"] == 0.5
    choice = choose_expert(None, None, None, "nope/missing-v0+" + joined)
    assert (choice.name, choice.params["gain_scale"]) == ("linear", 0.5)
    assert choice.source.startswith("dataset")


def test_expert_train_path_defaults_to_env_and_algorithm(tmp_path, monkeypatch):
    from qbc.agents.sb3 import default_expert_path, train_sb3_expert
    from qbc.cli.expert import TrainExpertConfig

    assert TrainExpertConfig().out is None
    assert default_expert_path("Pendulum-v1", "sac") == Path("experts/Pendulum-v1-sac.zip")
    assert default_expert_path("qbc/Arctan-v0", "td3") == Path("experts/qbc_Arctan-v0-td3.zip")
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("stable_baselines3")
    path = train_sb3_expert(SCALAR, algo="td3", timesteps=20, progress=False)
    assert path == Path("experts/qbc_ScalarStable-v0-td3.zip") and path.is_file()


def test_a_remembered_sb3_zip_loads_only_if_it_is_the_same_file(tmp_path, monkeypatch):
    pytest.importorskip("stable_baselines3")
    from qbc.agents.sb3 import train_sb3_expert
    from qbc.data.expert_choice import build_expert
    from qbc.errors import InvalidValueError

    path = train_sb3_expert(SCALAR, algo="td3", timesteps=20, progress=False,
                            path=tmp_path / "m.zip")
    assert main(["collect", "--env", SCALAR, "--expert", "sb3", "--expert-path", str(path),
                 "--expert-params", '{"algo": "td3"}', "--episodes", "2", "--dataset",
                 "test/sb3-v0", "--max-episode-steps", "10", "--no-progress"]) == 0
    choice = choose_expert(None, None, None, "test/sb3-v0")
    assert choice.name == "sb3" and choice.params["path"] == str(path)
    assert build_expert(choice, SCALAR).name == "sb3"
    with open(path, "ab") as f:  # the file changed since collect: not loaded from metadata
        f.write(b"\0")
    with pytest.raises(InvalidValueError, match="--expert-path PATH"):
        choose_expert(None, None, None, "test/sb3-v0")
    # naming the file is the user's decision
    assert choose_expert(None, path, None, "test/sb3-v0").params["path"] == str(path)
