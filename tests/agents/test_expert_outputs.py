"""``qbc expert train`` and ``qbc expert export`` write through the same claim / stage / publish
path as every other command: a refused or failed run leaves the old outputs as they were, and a
second writer of the same --out is refused; actor folders are checked against the env they act
on."""

from __future__ import annotations

import fcntl
import json
import shutil

import pytest

from qbc.agents import make_expert
from qbc.agents.expert_zoo import zoo_entry_dir
from qbc.cli import main
from qbc.errors import InvalidValueError
from qbc.infra.run_folder import lock_path_for

pytest.importorskip("stable_baselines3")

ENV = "Pendulum-v1"


def _tree(folder):
    """{relative path: bytes} of every file under ``folder`` (empty when it does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 120-step SAC expert of Pendulum-v1 (zip, report and actor folder), trained once."""
    root = tmp_path_factory.mktemp("expert")
    assert main(["expert", "train", "--env", ENV, "--timesteps", "120", "--out",
                 str(root / "p.zip"), "--eval-episodes", "1", "--no-progress"]) == 0
    return root


def _copy(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "e")
    return tmp_path / "e"


@pytest.mark.slow
def test_refused_export_overwrite_keeps_the_old_actor(trained, tmp_path, capsys):
    root = _copy(trained, tmp_path)
    report = json.loads((root / "p.json").read_text())
    (root / "p.json").unlink()  # no training report: the model's spaces tell
    before = _tree(root)
    # shapes differ: refused before anything is written
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env",
                 "qbc/ScalarStable-v0", "--out", str(root / "p-actor"), "--overwrite",
                 "--eval-episodes", "1"]) == 2
    assert "pass the --env it was trained on" in capsys.readouterr().err
    assert _tree(root) == before
    # same shapes, another env named in the training report
    report["config"]["env"] = "Pendulum-v0-other"
    (root / "p.json").write_text(json.dumps(report))
    before = _tree(root)
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env", ENV,
                 "--out", str(root / "p-actor"), "--overwrite", "--eval-episodes", "1"]) == 2
    assert "was trained on Pendulum-v0-other" in capsys.readouterr().err
    assert _tree(root) == before


def test_refused_export_to_a_new_folder_leaves_nothing(trained, tmp_path):
    root = _copy(trained, tmp_path)
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env",
                 "qbc/ScalarStable-v0", "--out", str(tmp_path / "new" / "a"),
                 "--eval-episodes", "1"]) == 2
    assert not (tmp_path / "new").exists()


def test_export_failing_midway_keeps_the_old_actor(trained, tmp_path, monkeypatch):
    import qbc.agents.export as export

    root = _copy(trained, tmp_path)
    before = _tree(root)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "evaluate_expert", fail)
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env", ENV,
                 "--out", str(root / "p-actor"), "--overwrite", "--eval-episodes", "1"]) == 2
    assert _tree(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["p-actor", "p.json", "p.replay.pkl", "p.zip"]


def test_export_overwrite_replaces_the_actor(trained, tmp_path):
    root = _copy(trained, tmp_path)
    (root / "p-actor" / "notes.txt").write_text("mine")
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env", ENV,
                 "--out", str(root / "p-actor"), "--overwrite", "--eval-episodes", "2"]) == 0
    meta = json.loads((root / "p-actor" / "actor.json").read_text())
    assert meta["evaluation"]["episodes"] == 2 and meta["env_id"] == ENV
    assert (root / "p-actor" / "notes.txt").read_text() == "mine"


def test_a_second_expert_train_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "x" / "q.zip"
    out.parent.mkdir()
    with open(lock_path_for(out), "a+") as held:  # a first writer holding the lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["expert", "train", "--env", ENV, "--timesteps", "120", "--out", str(out),
                     "--eval-episodes", "1", "--no-progress"]) == 2
    assert "another qbc expert train is writing" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == [".q.zip.lock"]


@pytest.mark.slow
def test_expert_train_overwrite_failing_keeps_the_old_expert(trained, tmp_path, monkeypatch):
    import qbc.agents.export as zoo
    import qbc.cli.expert as cli_expert

    root = _copy(trained, tmp_path)
    before = _tree(root)

    def fail(*args, **kwargs):
        raise InvalidValueError("export failed")

    monkeypatch.setattr(cli_expert, "export_actor", fail)
    assert zoo.export_actor is not fail
    assert main(["expert", "train", "--env", ENV, "--timesteps", "120", "--out",
                 str(root / "p.zip"), "--eval-episodes", "1", "--no-progress",
                 "--overwrite"]) == 2
    assert _tree(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["p-actor", "p.json", "p.replay.pkl", "p.zip"]


def test_an_actor_folder_labelled_for_another_env_is_refused(tmp_path, capsys):
    folder = tmp_path / "actor"
    shutil.copytree(zoo_entry_dir(ENV), folder)
    meta = json.loads((folder / "actor.json").read_text())
    meta["env_id"] = "qbc/SomethingElse-v0"
    (folder / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidValueError, match="exported for qbc/SomethingElse-v0, not"):
        make_expert("actor", ENV, path=str(folder))
    assert main(["collect", "--env", ENV, "--expert", "actor", "--expert-path", str(folder),
                 "--episodes", "1", "--dataset", "test/a-v0", "--no-progress"]) == 2
    assert "exported for qbc/SomethingElse-v0" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["[1]", '"a string"'])
def test_export_refuses_a_training_report_that_is_not_an_object(trained, tmp_path, capsys, text):
    # it was skipped, and with it the check of the env it was trained on (--resume refused it)
    root = _copy(trained, tmp_path)
    (root / "p.json").write_text(text)
    before = _tree(root)
    assert main(["expert", "export", "--expert-path", str(root / "p.zip"), "--env", ENV,
                 "--out", str(tmp_path / "a"), "--eval-episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "expert report" in err and "not an object" in err
    assert _tree(root) == before and not (tmp_path / "a").exists()


def test_expert_train_refuses_an_env_of_discrete_actions_before_anything(tmp_path, capsys):
    # SAC's assertion on Discrete(2) was an internal error
    assert main(["expert", "train", "--env", "CartPole-v1", "--timesteps", "10", "--out",
                 str(tmp_path / "c" / "x.zip"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "CartPole-v1 has Discrete actions" in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()
