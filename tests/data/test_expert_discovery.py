"""Experts a user can find and that datasets remember: every command's help names zoo:ENV and
actor folders, the zoo's actor is the default expert on its env, and a dataset made elsewhere
can be given its expert once (`qbc data set-expert`)."""

import json

import pytest

import qbc  # noqa: F401
from qbc.agents import make_expert
from qbc.cli import main
from qbc.data import dataset_path, write_dataset
from qbc.data.episodes import rollout_episodes
from qbc.data.expert_choice import (
    choose_expert,
    default_expert,
    remembered_expert,
    set_dataset_expert,
)

SCALAR = "qbc/ScalarStable-v0"
PENDULUM = "Pendulum-v1"


@pytest.mark.parametrize("command", ["collect", "rollout", "certify", "dagger",
                                     "data set-expert"])
def test_every_expert_flag_lists_the_zoo_and_actor_folders(command, capsys):
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "zoo:ENV" in text and "actor folder" in text and "sb3" in text, text


def test_make_expert_docstring_names_the_zoo():
    assert "zoo:" in make_expert.__doc__ and "actor" in make_expert.__doc__


def test_the_zoo_entry_is_the_default_expert_on_its_env():
    assert default_expert(PENDULUM)[0] == "zoo:Pendulum-v1"
    assert default_expert(SCALAR)[0] == "lqr"
    choice = choose_expert(None, None, None, None, PENDULUM)
    assert choice.name == "zoo:Pendulum-v1" and "zoo" in choice.source
    assert choose_expert(None, None, None, None, SCALAR).name == "lqr"
    assert choose_expert("lqr", None, None, None, PENDULUM).name == "lqr"  # a flag wins


def test_collect_defaults_to_the_zoo_actor_and_says_so(capsys):
    assert main(["collect", "--env", PENDULUM, "--dataset", "test/pend-zoo-v0", "--episodes",
                 "2", "--max-episode-steps", "20", "--no-progress"]) == 0
    captured = capsys.readouterr()  # the note comes after the run, on stdout
    lines = [line for line in captured.out.splitlines() if "(default" in line]
    assert len(lines) == 1 and "zoo:Pendulum-v1" in lines[0], captured.out
    assert remembered_expert("test/pend-zoo-v0")["name"] == "zoo:Pendulum-v1"
    # qbc's own envs keep lqr, silently
    assert main(["collect", "--env", SCALAR, "--dataset", "test/scalar-default-v0",
                 "--episodes", "2", "--max-episode-steps", "10", "--no-progress"]) == 0
    assert "(default" not in capsys.readouterr().out
    assert remembered_expert("test/scalar-default-v0")["name"] == "lqr"


def test_a_refused_collect_with_the_default_expert_prints_its_error_alone(capsys):
    assert main(["collect", "--env", PENDULUM, "--dataset", "test/pend-refused-v0",
                 "--episodes", "0", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and "--episodes" in captured.err
    assert captured.out == ""


def _foreign_dataset(dataset_id: str, env_id: str = SCALAR) -> None:
    """A dataset written without qbc's provenance, as Minari's own API would leave it."""
    expert = make_expert("linear", env_id, gain_scale=0.5)
    episodes = rollout_episodes(env_id, expert, 3, num_envs=3, seed=0,
                                env_kwargs={"max_episode_steps": 15})
    write_dataset(dataset_id, episodes, env=env_id, metadata=None)
    assert remembered_expert(dataset_id) is None


def test_set_expert_records_a_checked_expert_that_later_commands_use(tmp_path, capsys):
    _foreign_dataset("test/foreign-v0")
    assert main(["data", "set-expert", "--dataset", "test/foreign-v0", "--expert", "linear",
                 "--expert-params", "gain_scale=0.5"]) == 0
    out = capsys.readouterr().out
    assert "recorded" in out and "need no --expert" in out
    spec = remembered_expert("test/foreign-v0")
    assert spec["name"] == "linear" and spec["params"] == {"gain_scale": 0.5}
    meta = json.loads((dataset_path("test/foreign-v0") / "data" / "metadata.json").read_text())
    qbc_meta = meta["qbc"] if isinstance(meta["qbc"], dict) else json.loads(meta["qbc"])
    assert qbc_meta["expert_agreement"] < 1e-5  # the very expert that made the actions
    # certify now needs no --expert: it rebuilds the recorded one
    assert main(["certify", "--dataset", "test/foreign-v0", "--episodes", "2", "--horizon",
                 "10", "--sizes", "0.1", "--deltas", "0.01", "--horizons", "10", "--bins", "8",
                 "--out", str(tmp_path / "c")]) == 0
    cert = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert cert["expert"] == "linear" and cert["expert_spec"]["params"]["gain_scale"] == 0.5
    assert main(["data", "--dataset", "test/foreign-v0"]) == 0
    assert "qbc data set-expert" in capsys.readouterr().out


def test_set_expert_refuses_an_expert_that_does_not_fit(capsys):
    _foreign_dataset("test/foreign-bad-v0")
    before = (dataset_path("test/foreign-bad-v0") / "data" / "metadata.json").read_text()
    assert main(["data", "set-expert", "--dataset", "test/foreign-bad-v0",
                 "--expert", "zoo:Pendulum-v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "set-expert" in err
    assert (dataset_path("test/foreign-bad-v0") / "data" / "metadata.json").read_text() == before


def test_set_expert_records_the_model_files_checksum(tmp_path):
    import shutil

    from qbc.agents.expert_zoo import zoo_entry_dir
    from qbc.errors import InvalidValueError

    folder = tmp_path / "actor"
    shutil.copytree(zoo_entry_dir(PENDULUM), folder)
    expert = make_expert("actor", PENDULUM, path=str(folder))
    episodes = rollout_episodes(PENDULUM, expert, 2, num_envs=2, seed=0,
                                env_kwargs={"max_episode_steps": 15})
    write_dataset("test/foreign-pend-v0", episodes, env=PENDULUM, metadata=None)
    done = set_dataset_expert("test/foreign-pend-v0", "actor", {"path": str(folder)})
    assert done["expert_file_sha256"] and done["agreement"] < 1e-5
    assert choose_expert(None, None, None, "test/foreign-pend-v0").name == "actor"
    # a changed model file is not loaded from the metadata
    weights = folder / "actor.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(InvalidValueError, match="SHA-256"):
        choose_expert(None, None, None, "test/foreign-pend-v0")
