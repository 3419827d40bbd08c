"""Round three's final pass (issue 34): the ordered head's settings where the run builds no
ordered head (a joint quantizer on several action dimensions, --model.head plain, no location
MLP) are refused before anything is written, in ``qbc train`` (once the dataset is read) and
``qbc dagger`` (from the env); a sweep gives each cell only the settings it uses."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import pytest
from test_round_three_leftovers import TRAIN_TINY


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
