"""What the round-two harness still found: envs that cannot be made with their default settings,
run files that are valid JSON of the wrong kind, and a full disk during the HDF5 write (h5py
used to crash the process, leaving the staging folder and the dataset lock behind)."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
from tiny import TINY_MODEL_FLAGS

from qbc.cli import main
from qbc.envs.make import make_env, make_vector_env
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.infra.files import read_json_object


def test_an_env_that_needs_arguments_is_one_line(tmp_path, capsys):
    with pytest.raises(InvalidValueError, match="cannot be made with its default settings"):
        make_env("qbc/LinearSystem-v0")
    with pytest.raises(InvalidValueError, match="qbc/LinearSystem-v0 cannot be made"):
        make_vector_env("qbc/LinearSystem-v0", 2)
    assert main(["collect", "--env", "qbc/LinearSystem-v0", "--dataset", "test/ls-v0",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "qbc/LinearSystem-v0 cannot be made" in err and "'A' and 'B'" in err, err
    assert "internal error" not in err


@pytest.fixture
def run(tmp_path):
    """A 4-step run on qbc/ScalarStable-v0."""
    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--dataset", "test/s-v0",
                 "--episodes", "4", "--max-episode-steps", "10", "--no-progress"]) == 0
    out = tmp_path / "run"
    assert main(["train", "--dataset", "test/s-v0", "--out", str(out), "--steps", "4",
                 "--rollout-episodes", "0", "--no-progress", *TINY_MODEL_FLAGS]) == 0
    return out


def test_rollout_of_a_run_whose_config_names_an_unmakeable_env(run, tmp_path, capsys):
    path = run / "best" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["env_id"] = "qbc/LinearSystem-v0"
    path.write_text(json.dumps(cfg))
    capsys.readouterr()
    assert main(["rollout", "--policy", str(run), "--out", str(tmp_path / "o"), "--episodes",
                 "2", "--horizons", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot be made" in err and "internal error" not in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["train_config.json", "last/config.json",
                                  "last/trainer_state.json"])
def test_resume_of_a_run_whose_file_is_a_json_list(run, capsys, name):
    (run / name).write_text("[1, 2]")
    capsys.readouterr()
    assert main(["train", "--dataset", "test/s-v0", "--out", str(run), "--steps", "4",
                 "--rollout-episodes", "0", "--resume", "--no-progress", *TINY_MODEL_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "JSON list, not an object" in err and err.count("\n") == 1, err


def test_read_json_object_refuses_other_json(tmp_path):
    for text in ("[]", "3", '"x"', "null"):
        (tmp_path / "c.json").write_text(text)
        with pytest.raises(CorruptFileError, match="not an object"):
            read_json_object(tmp_path / "c.json", "run config")
    (tmp_path / "c.json").write_text('{"a": 1}')
    assert read_json_object(tmp_path / "c.json") == {"a": 1}


def _raise_enospc(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _crash(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGSEGV)  # what h5py did after a failed write


@pytest.mark.parametrize("fault, words", [(_raise_enospc, "disk full while writing"),
                                          (_crash, "the HDF5 writer crashed")])
def test_a_failing_hdf5_write_leaves_no_staging_folder_and_no_lock(tmp_path, monkeypatch,
                                                                   capsys, fault, words):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    root = tmp_path / "minari"
    assert os.environ["MINARI_DATASETS_PATH"] == str(root)
    with monkeypatch.context() as patched:
        patched.setattr(HDF5Storage, "update_episodes", fault)
        assert main(["collect", "--env", "qbc/ScalarStable-v0", "--dataset", "test/f-v0",
                     "--episodes", "2", "--max-episode-steps", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err
    assert sorted(p.name for p in root.iterdir()) == []  # no staging folder, no lock file
    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--dataset", "test/f-v0",
                 "--episodes", "2", "--max-episode-steps", "5", "--no-progress"]) == 0
