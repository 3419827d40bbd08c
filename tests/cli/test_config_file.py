"""``qbc train --config FILE``: a run's train_config.json (or a TOML file of the same fields)
gives the settings, flags given on the command line override them, and a bad file is one line
that writes nothing (qbc/cli/config_file.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbc.cli.config_file import ConfigFile, load_defaults, split_config_flag
from qbc.cli.train import CONFIG_FILE, budget_as_given
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.training import TrainConfig

#: Keys of train_config.json that differ from run to run of the same settings.
PER_RUN = ("out", "run_id")


@pytest.fixture
def root(tmp_path, tiny_lin_copy, monkeypatch) -> Path:
    """A folder with minari/ (qbc/lin-v0) and run/ (a tiny run on it), datasets read there."""
    tiny_lin_copy(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def _settings(run: Path) -> dict:
    conf = json.loads((run / "train_config.json").read_text())
    return {k: v for k, v in conf.items() if k not in PER_RUN}


def test_a_runs_config_fed_back_gives_the_same_settings(root, cli):
    res = cli(["train", "--config", root / "run" / "train_config.json", "--out", root / "again"],
              cwd=root)
    assert res.returncode == 0, res.stderr
    assert _settings(root / "again") == _settings(root / "run")
    again = json.loads((root / "again" / "train_config.json").read_text())
    assert again["out"] == str(root / "again")


def test_a_flag_overrides_the_files_field(root, cli):
    res = cli(["train", "--config", root / "run" / "train_config.json", "--out", root / "b4",
               "--bins", "4", "--model.d-model", "8"], cwd=root)
    assert res.returncode == 0, res.stderr
    want = _settings(root / "run")
    want["bins"], want["model"]["d_model"] = 4, 8
    got = _settings(root / "b4")
    assert got.pop("dataset_sha256") == want.pop("dataset_sha256")
    assert got == want


def test_a_toml_file_with_a_model_table(root, cli):
    (root / "settings.toml").write_text(
        'dataset = "qbc/lin-v0"\nbins = 6\nsteps = 2\nbatch_size = 16\neval_interval = 2\n'
        "warmup_steps = 1\nprogress = false\nrollout_episodes = 0\n\n"
        "[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n")
    res = cli(["train", "--config", "settings.toml", "--out", "t", "--steps", "3"], cwd=root)
    assert res.returncode == 0, res.stderr
    conf = json.loads((root / "t" / "train_config.json").read_text())
    assert (conf["bins"], conf["steps"], conf["batch_size"]) == (6, 3, 16)
    assert (conf["model"]["d_model"], conf["model"]["n_layers"], conf["model"]["head"]) == \
        (16, 1, "ordered")


@pytest.mark.parametrize("text, name, words", [
    ('{"bins": 8, "bnis": 4}', "bad.json", ["unknown setting 'bnis'", "did you mean bins"]),
    ('bins = 8\n[model]\nd_modl = 3\n', "bad.toml",
     ["unknown setting 'model.d_modl'", "did you mean model.d_model"]),
    ('bins = "many"\n', "bad.toml", ["setting 'bins'", "must be an integer, got 'many'"]),
    ('model = 3\n', "bad.toml", ["setting 'model'", "got 3"]),
    ("bins = [", "bad.toml", ["is not valid TOML"]),
    ("[1, 2]", "bad.json", ["holds a JSON list, not an object"]),
    pytest.param("lr = 1" + "0" * 400 + "\n", "bad.toml",
                 ["setting 'lr'", "must be a finite number, got an integer of 401 digits"],
                 id="float-beyond-range"),
])
def test_a_bad_file_is_one_line_and_writes_nothing(root, cli, text, name, words):
    (root / name).write_text(text)
    res = cli(["train", "--config", name, "--dataset", "qbc/lin-v0", "--out", "o"], cwd=root)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbc train: error:"), res.stderr
    assert name in lines[0] and all(w in lines[0] for w in words), lines[0]
    assert not (root / "o").exists()


@pytest.mark.parametrize("value", [10 ** 400, -(10 ** 400)])
def test_an_integer_beyond_float_range_is_refused_in_one_line(root, cli, value):
    """The range check converted it to float first: OverflowError, an internal error."""
    (root / "huge.json").write_text(f'{{"warmup_steps": {value}}}')
    res = cli(["train", "--config", "huge.json", "--dataset", "qbc/lin-v0", "--out", "o"],
              cwd=root)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "--warmup-steps must be" in lines[0] and "integer of 401 digits" in lines[0]
    assert not (root / "o").exists()


def test_a_missing_file_or_value_is_one_line(root, cli):
    res = cli(["train", "--config", "nowhere.json"], cwd=root)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "qbc train: error: --config 'nowhere.json': no such file; give a run's saved config "
        "(e.g. runs/bc/train_config.json) or a TOML file"]
    res = cli(["train", "--config", "run"], cwd=root)
    assert res.returncode == 2 and "'run' is a folder; give a file, e.g. " in res.stderr
    res = cli(["train", "--dataset", "qbc/lin-v0", "--config"], cwd=root)
    assert res.returncode == 2 and "--config needs a file" in res.stderr


def test_a_required_setting_the_file_lacks_is_still_required(root, cli):
    (root / "no_dataset.toml").write_text("bins = 8\n")
    res = cli(["train", "--config", "no_dataset.toml", "--out", "o"], cwd=root)
    assert res.returncode == 2 and "--dataset" in res.stderr and not (root / "o").exists()


def test_the_files_overwrite_and_resume_are_not_read(root, cli):
    """A run's own settings, --overwrite included, never replace that run by themselves."""
    conf = json.loads((root / "run" / "train_config.json").read_text())
    conf.update(out=str(root / "run"), overwrite=True, resume=True)
    (root / "again.json").write_text(json.dumps(conf))
    before = (root / "run" / "train_config.json").read_text()
    res = cli(["train", "--config", "again.json"], cwd=root)
    assert res.returncode == 2 and "pass --overwrite" in res.stderr, res.stderr
    assert (root / "run" / "train_config.json").read_text() == before


def test_help_lists_the_flag_and_shows_the_files_values_as_defaults(root, cli):
    res = cli(["train", "--help"], env={"COLUMNS": "80"})
    assert res.returncode == 0 and "--config FILE" in res.stdout
    (root / "s.toml").write_text("bins = 5\n")
    res = cli(["train", "--config", "s.toml", "--help"], cwd=root, env={"COLUMNS": "80"})
    assert res.returncode == 0
    assert "(default: 5)" in res.stdout.split("--bins INT", 1)[1].split("--per-dim")[0]


def test_a_budget_from_epochs_is_derived_again(tmp_path):
    """train_config.json records the resolved steps; a run whose summary says they came from
    --epochs gets them derived again (and so the same minimum before early stopping)."""
    conf = {"dataset": "qbc/lin-v0", "steps": 10_000, "patience": 10, "dataset_sha256": "x"}
    path = tmp_path / "train_config.json"
    path.write_text(json.dumps(conf))
    assert load_defaults(TrainConfig, path, CONFIG_FILE).steps == 10_000  # no summary.json
    (tmp_path / "summary.json").write_text(json.dumps({"budget": {"from": "--epochs"}}))
    cfg = load_defaults(TrainConfig, path, CONFIG_FILE)
    assert (cfg.steps, cfg.patience) == (None, 10)
    (tmp_path / "summary.json").write_text(json.dumps({"budget": {"from": "--steps"}}))
    assert budget_as_given(conf, path) == conf


def test_split_config_flag_and_record_keys(tmp_path):
    assert split_config_flag(["--bins", "4", "--config", "a.toml"]) == (Path("a.toml"),
                                                                         ["--bins", "4"])
    assert split_config_flag(["--config=a.json", "--x"]) == (Path("a.json"), ["--x"])
    assert split_config_flag(["--bins", "4"]) == (None, ["--bins", "4"])
    with pytest.raises(InvalidValueError, match="--config needs a file"):
        split_config_flag(["--config=", "--bins", "4"])
    path = tmp_path / "c.json"
    path.write_text('{"dataset": "d", "run_id": "r", "resume": true}')
    with pytest.raises(InvalidValueError, match="unknown setting 'run_id'"):
        load_defaults(TrainConfig, path, ConfigFile())
    cfg = load_defaults(TrainConfig, path, ConfigFile(record_keys=frozenset({"run_id"}),
                                                      per_run=frozenset({"resume"})))
    assert (cfg.dataset, cfg.resume) == ("d", False)
    path.write_text("{")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_defaults(TrainConfig, path, ConfigFile())


def test_train_chunked_reads_its_runs_config_too(root, cli):
    base = ["train-chunked", "--no-progress", "--rollout-episodes", "0"]
    res = cli([*base, "--dataset", "qbc/lin-v0", "--out", "c1", "--steps", "2", "--chunk-k", "4"],
              cwd=root)
    assert res.returncode == 0, res.stderr
    res = cli([*base, "--config", "c1/train_config.json", "--out", "c2"], cwd=root)
    assert res.returncode == 0, res.stderr
    assert _settings(root / "c2") == _settings(root / "c1")


@pytest.mark.parametrize("text, words", [
    ('{"dataset": "qbc/lin-v0", "model": {"head": "bogus"}}', "--model.head must be one of"),
    ('{"dataset": "qbc/lin-v0", "policy": "nope"}', "nope"),
])
def test_a_config_value_outside_its_choices_is_the_error_line_alone(root, cli, text, words):
    """tyro used to warn about the file's value (a second stderr line) before qbc refused it."""
    (root / "bad.json").write_text(text)
    res = cli(["train-chunked", "--config", "bad.json", "--out", "o"], cwd=root)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], res.stderr
    assert not (root / "o").exists()
