"""Round three's final pass (issue 34): the ordered head's settings where the run builds no
ordered head (a joint quantizer on several action dimensions, --model.head plain, no location
MLP) are refused before anything is written, in ``qbc train`` (once the dataset is read) and
``qbc dagger`` (from the env); a sweep gives each cell only the settings it uses, and refuses
location settings with a plain head (no cell would use them)."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import pytest
from round_three import TRAIN_TINY


@pytest.fixture
def planar_dataset():
    """3 short episodes of qbc/LinearStable-v0: 2-D actions."""
    from qbc.cli import main

    assert main(["collect", "--env", "qbc/LinearStable-v0", "--dataset", "test/p-v0",
                 "--episodes", "3", "--max-episode-steps", "8", "--no-progress"]) == 0
    return "test/p-v0"


@pytest.mark.parametrize("flags,named", [
    (["--model.loc-layers", "1"], "--model.loc-layers"),
    (["--model.loc-inputs", "obs"], "--model.loc-inputs"),
    (["--model.loc-layers", "3", "--model.hidden", "32"], "--model.loc-layers, --model.hidden"),
])
def test_train_refuses_location_settings_with_a_joint_quantizer_on_planar_actions(
        tmp_path, capsys, planar_dataset, flags, named):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", planar_dataset, "--quantizer", "vq", "--bins", "4",
                 *flags, "--out", str(out), *TRAIN_TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"qbc train: error: {named} set"), err
    assert "--quantizer vq is joint" in err and "leave" in err
    assert not out.exists()


@pytest.mark.parametrize("flags,named", [
    (["--model.head", "plain", "--model.loc-layers", "1"], "--model.loc-layers"),
    (["--model.head", "plain", "--model.loc-inputs", "obs"], "--model.loc-inputs"),
    (["--model.loc-layers", "0", "--model.hidden", "32"], "--model.hidden"),
])
def test_train_refuses_location_settings_without_a_location_before_reading_data(
        tmp_path, capsys, flags, named):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "test/absent-v0", *flags, "--out", str(out),
                 *TRAIN_TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{named} set" in err and "would ignore" in err, err
    assert not out.exists()


def test_location_settings_with_a_joint_quantizer_on_one_dimension_are_used():
    from qbc.policy import ModelConfig
    from qbc.training import TrainConfig
    from qbc.training.settings import check_head_settings, model_with_used_location

    model = ModelConfig(loc_layers=1, loc_inputs="obs", hidden=32)
    check_head_settings(TrainConfig(dataset="x-v0", quantizer="vq", model=model), act_dim=1)
    assert model_with_used_location("ar-transformer", model, "vq", 1) == model
    assert model_with_used_location("ar-transformer", model, "uniform", 2) == model
    assert model_with_used_location("ar-transformer", model, "vq", 2) == ModelConfig()
    # an MLP token policy reads --model.hidden itself: kept
    assert model_with_used_location("independent-categorical", model, "vq", 2) == model


def test_dagger_refuses_location_settings_with_a_joint_quantizer_on_planar_actions(
        tmp_path, capsys):
    from qbc.cli import main

    out = tmp_path / "dagger"
    assert main(["dagger", "--env", "qbc/LinearStable-v0", "--out", str(out), "--rounds", "1",
                 "--quantizer", "vq", "--model.loc-layers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--model.loc-layers sets" in err and "joint" in err, err
    assert not out.exists() and not any((tmp_path / "minari").iterdir())


# -- parsers: numbers of thousands of digits, nesting thousands deep -------------------------------
HUGE = "9" * 5000
DEEP = "[" * 100_000


@pytest.mark.parametrize("text", [f'{{"a": {HUGE}}}', DEEP, '{"a": 1}\xff'])
def test_read_json_turns_what_the_parser_cannot_take_into_one_line(tmp_path, text):
    from qbc.errors import CorruptFileError
    from qbc.infra.files import read_json

    path = tmp_path / "f.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(CorruptFileError, match="f.json") as got:
        read_json(path, what="tokenizer file")
    assert "\n" not in str(got.value)


@pytest.mark.parametrize("text", [f"a = {HUGE}", f"a = {DEEP}", "a = 1\n\xff"])
def test_sweep_and_config_files_too_deep_for_the_parser_are_one_line(tmp_path, capsys, text):
    from qbc.cli import main

    path = tmp_path / "f.toml"
    path.write_bytes(text.encode("latin-1"))
    for argv in (["sweep", "--config", str(path)], ["train", "--config", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "f.toml" in err and "internal error" not in err, err


@pytest.mark.parametrize("line", [f'{{"step": {HUGE}}}', DEEP, "not json"])
def test_a_damaged_metrics_line_before_the_last_is_refused(tmp_path, line):
    from qbc.errors import CorruptFileError
    from qbc.training.checkpoint import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text(f'{{"step": 1}}\n{line}\n{{"step": 3}}\n')
    with pytest.raises(CorruptFileError, match="line 2") as got:
        read_metrics(path, upto=10)
    assert "\n" not in str(got.value)
    path.write_text('{"step": 1}\n{"step": 2, "loss": 0.')  # a torn last line: dropped
    assert read_metrics(path, upto=10) == [{"step": 1}]


def test_flag_values_of_thousands_of_digits_are_one_line():
    from qbc.cli.flag_types import expert_params
    from qbc.errors import InvalidValueError
    from qbc.training.chunk_data import parse_params

    with pytest.raises(InvalidValueError, match="not valid JSON"):
        expert_params([f'{{"a": {HUGE}}}'])
    assert expert_params([f"a={HUGE}"]) == {"a": HUGE}
    assert parse_params(f"codes={HUGE}") == {"codes": HUGE}


# -- what the loader fuzzers found (tests/infra/test_fuzz_more_loaders.py), pinned ---------------
@pytest.mark.parametrize("text,words", [
    ("round,beta\n0," + "1" * 200_000 + "\n", "field larger than field limit"),
    ('round,beta\n0,"1\n', "not a readable CSV table"),
    ("round,beta\n0,1", "does not end with a whole row"),
])
def test_damaged_dagger_tables_are_one_line(tmp_path, text, words):
    from qbc.errors import CorruptFileError
    from qbc.interactive.run_files import _read_csv

    path = tmp_path / "rounds.csv"
    path.write_text(text)
    with pytest.raises(CorruptFileError, match=words) as got:
        _read_csv(path)
    assert "\n" not in str(got.value)
    path.write_text("round,beta\n0,1\n")
    assert _read_csv(path) == [{"round": 0, "beta": 1}]


@pytest.mark.parametrize("path,value", [(("config", "layers"), 10 ** 6),
                                        (("config", "hidden"), 10 ** 7),
                                        (("n_tokens",), 5), (("obs_dim",), -3),
                                        (("joint",), 1)])
def test_a_transition_model_description_is_checked_against_its_weights(transition_folder, path,
                                                                       value, tmp_path):
    import json
    import shutil
    import time

    from qbc.errors import CorruptFileError
    from qbc.rollout.augment import load_transition_model

    folder = shutil.copytree(transition_folder, tmp_path / "tm")  # the shared one stays intact
    meta_path = folder / "transition.json"
    meta = json.loads(meta_path.read_text())
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    meta_path.write_text(json.dumps(meta))
    start = time.monotonic()
    with pytest.raises(CorruptFileError, match="cannot be loaded") as got:
        load_transition_model(folder)
    assert "\n" not in str(got.value) and time.monotonic() - start < 5


def test_a_trainer_state_with_fields_of_the_wrong_type_is_refused(tmp_path):
    import torch

    from qbc.errors import CorruptFileError
    from qbc.training.checkpoint import restore_progress

    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    (tmp_path / "last").mkdir()
    from safetensors.torch import save_file
    save_file({"rng.batch": torch.Generator().get_state(),
               "rng.torch_cpu": torch.random.get_rng_state()},
              str(tmp_path / "last" / "trainer.safetensors"))
    state = {"step": 1, "optimizer_param_groups": "x", "scheduler": {}, "np_rng": None,
             "best": {"step": 1, "val_loss": None}}
    with pytest.raises(CorruptFileError, match="cannot be resumed from"):
        restore_progress(tmp_path, state, optimizer, scheduler, torch.Generator(), None)


def test_sweep_report_of_a_table_without_the_numbers_it_averages_is_one_line(tmp_path, capsys):
    from qbc.cli import main

    (tmp_path / "results.csv").write_text("cell,policy,H,regret\nc1,p,10,0.5\nc1,p,20,1.5\n")
    assert main(["sweep", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "have no state_dev_mean, diverged_fraction" in err, err
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "summary.csv").exists()


def test_an_actions_file_with_a_damaged_header_is_one_line(tmp_path):
    import numpy as np

    from qbc.cli.tokenize import load_actions_file
    from qbc.errors import CorruptFileError

    path = tmp_path / "a.npy"
    np.save(path, np.zeros((5, 2), np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"'<f4', ", b"'<f4'[, ", 1))  # a Python SyntaxError
    with pytest.raises(CorruptFileError, match="cannot read"):
        load_actions_file(path)


@pytest.mark.parametrize("contents,why", [
    (["a", "b"], "must be real numbers"), ([[float("nan"), 1.0]], "hold 1 non-finite values"),
    ([[[0.0]]], r"must be a non-empty \(N, D\) array, got shape \(1, 1, 1\)"),
    ([], r"must be a non-empty \(N, D\) array, got shape \(0,\)"),
    ([True, False], "must be real numbers")])
def test_an_actions_file_of_the_wrong_contents_is_named_in_its_refusal(tmp_path, contents, why):
    import numpy as np

    from qbc.cli.tokenize import load_actions_file
    from qbc.errors import InvalidValueError

    path = tmp_path / "acts.npy"
    np.save(path, np.array(contents))
    with pytest.raises(InvalidValueError, match=f"the actions in '.*acts.npy' {why}"):
        load_actions_file(path)


def test_a_sweep_with_a_plain_head_refuses_location_settings(tmp_path):
    from qbc.errors import InvalidValueError
    from qbc.sweep.spec import spec_from_dict

    spec = {"grid": {"envs": ["qbc/ScalarStable-v0"], "experts": ["lqr"]},
            "train": {"model": {"head": "plain", "loc_layers": 3}}}
    with pytest.raises(InvalidValueError, match=r"--model.loc-layers sets .*plain has none"):
        spec_from_dict(spec, source="s.toml")
    spec["train"]["model"] = {"head": "plain"}
    assert spec_from_dict(spec, source="s.toml").train.model == {"head": "plain"}


@pytest.mark.parametrize("contents", [[[float("nan"), 1.0], [0.0, 2.0]], [1 + 2j], ["a"]])
def test_the_tokenizer_and_an_actions_file_refuse_bad_actions_in_the_same_words(tmp_path,
                                                                                  contents):
    """One checker (qbc.quantizers.base.action_matrix) behind both: the file's refusal is the
    tokenizer's with the file named in place of 'actions'."""
    import numpy as np

    from qbc.cli.tokenize import load_actions_file
    from qbc.errors import InvalidValueError
    from qbc.tokenizer import ActionTokenizer

    path = tmp_path / "acts.npy"
    np.save(path, np.array(contents))
    with pytest.raises(InvalidValueError) as from_file:
        load_actions_file(path)
    with pytest.raises(InvalidValueError) as from_tokenizer:
        ActionTokenizer(n_bins=4).fit(np.array(contents))
    named = f"the actions in {str(path)!r}"
    assert str(from_file.value).replace(named, "actions") == str(from_tokenizer.value)
