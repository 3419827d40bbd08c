"""The flag conventions every command shares: comma lists, renamed flags, typed choices."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qbc.cli import (
    Command,
    DeprecatedFlagWarning,
    _parse_flags,
    list_flags,
    rename_flags,
    split_comma_lists,
)


@dataclass
class _Config:
    horizons: tuple[int, ...] = (10,)
    names: tuple[str, ...] | None = None
    dataset: str = "d"
    seed: int = 0


def test_list_flags_are_the_tuple_fields():
    assert list_flags(_Config) == {"--horizons", "--names"}


def test_comma_form_is_split_and_other_flags_untouched():
    args = ["--horizons", "10,50", "200", "--dataset", "a,b", "--names=x,y", "--seed", "-1"]
    assert split_comma_lists(args, {"--horizons", "--names"}) == [
        "--horizons", "10", "50", "200", "--dataset", "a,b", "--names", "x", "y",
        "--seed", "-1"]


def test_a_list_flag_holding_another_commands_flags_passes_whole():
    # the reproduce commands pass train flags this way; split, tyro read them as its own flags
    arg = "--extra-train-flags=--model.head plain --select-by val-loss"
    assert split_comma_lists([arg, "--seeds", "0,1"], {"--extra-train-flags", "--seeds"}) == [
        arg, "--seeds", "0", "1"]


def test_old_flag_spelling_warns_and_is_renamed():
    with pytest.warns(DeprecatedFlagWarning, match="--dataset-id is deprecated.*--dataset"):
        out = rename_flags(["--dataset-id=x", "--seed", "1"], {"--dataset-id": "--dataset"})
    assert out == ["--dataset=x", "--seed", "1"]


def test_parse_flags_applies_both_conventions():
    command = Command(_Config, run=lambda c: c, help="test",
                      renamed_flags={"--dataset-id": "--dataset"})
    with pytest.warns(DeprecatedFlagWarning):
        cfg = _parse_flags(command, ["--horizons", "5,6", "--dataset-id", "q"], "test")
    assert cfg.horizons == (5, 6) and cfg.dataset == "q"


# -- the conventions on the real commands -------------------------------------------------------
def _parse(name, *args):
    from qbc.cli import _load

    return _parse_flags(_load(name), list(args), name)


@pytest.mark.parametrize(("name", "old", "new", "field", "base"), [
    ("collect", "--dataset-id", "--dataset", "dataset", ["--env", "e"]),
    ("data", "--dataset-id", "--dataset", "dataset", []),
    ("bench", "--env-id", "--env", "env", []),
    ("expert train", "--env-id", "--env", "env", []),
    ("expert train", "--path", "--out", "out", []),
    ("expert export", "--path", "--expert-path", "expert_path", ["--env", "e"]),
])
def test_an_old_spelling_warns_and_gives_the_same_config(name, old, new, field, base):
    with pytest.warns(DeprecatedFlagWarning, match=f"{old} is deprecated.*use {new}"):
        by_old = _parse(name, *base, old, "x/y-v0")
    assert by_old == _parse(name, *base, new, "x/y-v0")
    assert getattr(by_old, field) == "x/y-v0"


@pytest.mark.parametrize(("name", "base", "flag", "values", "expected"), [
    ("compressive run", [], "--k", ["16", "32"], (16, 32)),
    ("compressive run", [], "--bits", ["1", "full"], ("1", "full")),
    ("rollout", ["--out", "o"], "--horizons", ["10", "50"], (10, 50)),
    ("certify", ["--dataset", "d", "--out", "o"], "--sizes", ["0.1", "0.3"], (0.1, 0.3)),
    ("ste benchmark", [], "--hidden", ["64", "32"], (64, 32)),
    ("bench", [], "--env-sizes", ["1", "8"], (1, 8)),
])
def test_a_list_flag_reads_the_same_space_or_comma_separated(name, base, flag, values, expected):
    field = flag[2:].replace("-", "_")
    spaced = _parse(name, *base, flag, *values)
    assert getattr(spaced, field) == expected
    assert _parse(name, *base, flag, ",".join(values)) == spaced
    assert _parse(name, *base, f"{flag}={','.join(values)}") == spaced


def test_key_value_flags_keep_their_commas():
    from qbc.cli.collect import CollectArgs
    from qbc.cli.dagger import DaggerArgs

    assert "--expert-params" not in list_flags(CollectArgs)
    assert not {"--expert-params", "--train-overrides"} & list_flags(DaggerArgs)


def test_expert_params_as_pairs_or_json_give_the_same_settings():
    from qbc.cli.collect import collect_config

    base = ["--env", "e", "--dataset", "d", "--expert", "sb3", "--expert-path", "m.zip"]
    by_json = collect_config(_parse("collect", *base, "--expert-params",
                                    '{"algo": "td3", "noise_std": 0.5, "K": [1, 2]}'))
    by_pairs = collect_config(_parse("collect", *base, "--expert-params", "algo=td3",
                                     "noise_std=0.5", "K=[1,2]"))
    assert by_pairs == by_json
    assert by_json.expert_params == {"algo": "td3", "noise_std": 0.5, "K": [1, 2],
                                     "path": "m.zip"}


def test_dagger_dict_flags_as_pairs_or_json():
    from qbc.cli.dagger import dagger_config

    base = ["--env", "e", "--out", "o"]
    by_pairs = dagger_config(_parse("dagger", *base, "--expert-params", "gain_scale=0.8",
                                    "--train-overrides", "warmup_steps=5", "device=cpu"))
    by_json = dagger_config(_parse("dagger", *base, "--expert-params", '{"gain_scale": 0.8}',
                                   "--train-overrides", '{"warmup_steps": 5, "device": "cpu"}'))
    assert by_pairs == by_json
    assert by_pairs.train_overrides == {"warmup_steps": 5, "device": "cpu"}


def test_key_values_reads_json_scalars_else_text_and_refuses_a_bare_word():
    from qbc.cli.flag_types import key_values
    from qbc.errors import InvalidValueError

    assert key_values(("a=1", "b=x", "c=true", "d=null", 'e="1"', "f="), "--p") == {
        "a": 1, "b": "x", "c": True, "d": None, "e": "1", "f": ""}
    assert key_values('{"a": 1}', "--p") == key_values(("a=1",), "--p") == {"a": 1}
    assert key_values({"a": 1}, "--p") == {"a": 1}
    with pytest.raises(InvalidValueError, match="--p is not valid JSON"):
        key_values(("td3",), "--p")
    with pytest.raises(InvalidValueError, match="no name before"):
        key_values(("=3",), "--p")


@pytest.mark.parametrize("form", [["qrp:k=8,bits=3,seed=2"], ["k=8", "bits=3", "seed=2"],
                                  ["qrp", "k=8", "bits=3", "seed=2"], ["k=8,bits=3,seed=2"]])
def test_obs_encoder_as_pairs_or_spec_gives_the_same_typed_settings(form):
    from qbc.policy.obs_encoder import ObsEncoderConfig

    cfg = _parse("train", "--dataset", "d", "--out", "o", "--obs-encoder", *form)
    assert cfg.obs_encoder == ObsEncoderConfig(k=8, bits=3, seed=2)
    assert _parse("train", "--dataset", "d", "--out", "o").obs_encoder is None
    assert _parse("train", "--dataset", "d", "--out", "o", "--obs-encoder", "none"
                  ).obs_encoder is None


def test_obs_encoder_given_in_python_is_read_into_its_dataclass():
    from qbc.errors import InvalidValueError
    from qbc.policy.obs_encoder import ObsEncoderConfig
    from qbc.training import TrainConfig

    enc = ObsEncoderConfig(k=8, quantizer="uniform")
    assert TrainConfig(dataset="d", obs_encoder="qrp:k=8,quantizer=uniform").obs_encoder == enc
    assert TrainConfig(dataset="d", obs_encoder={"k": 8, "quantizer": "uniform"}
                       ).obs_encoder == enc
    with pytest.raises(InvalidValueError, match="'bit=2'"):
        TrainConfig(dataset="d", obs_encoder="qrp:k=8,bit=2")


# -- fields with fixed choices: Literal[...] ---------------------------------------------------
def _choice_fields():
    """(prefix, field name, choices) of every Literal field of TrainConfig and ModelConfig."""
    import typing

    from qbc.policy import ModelConfig
    from qbc.training import TrainConfig

    for prefix, cls in (("", TrainConfig), ("model.", ModelConfig)):
        for name, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is typing.Literal:
                yield prefix, name, typing.get_args(hint)


def test_the_fixed_choices_are_literals():
    names = {p + n for p, n, _ in _choice_fields()}
    assert {"select_by", "token_target", "augment", "transition_head", "model.head",
            "model.std"} <= names


@pytest.mark.parametrize("prefix, name, choices", list(_choice_fields()),
                         ids=[p + n for p, n, _ in _choice_fields()])
def test_help_lists_the_choices_and_the_library_refuses_others(cli, prefix, name, choices):
    """tyro shows the choices; a value outside them is refused by the settings check (the
    same message from Python and the command line), not by tyro."""
    import dataclasses

    from qbc.errors import InvalidValueError
    from qbc.training import TrainConfig
    from qbc.training.config import validate_config

    flag = "--" + (prefix + name).replace("_", "-")
    assert f"{flag} {{{','.join(choices)}}}" in cli(["train", "--help"],
                                                    env={"COLUMNS": "80"}).stdout
    cfg = TrainConfig(dataset="d", augment="model", policy="mlp-gaussian" if name == "std"
                      else "ar-transformer")
    if prefix:
        cfg.model = dataclasses.replace(cfg.model, **{name: "nonsense"})
    else:
        cfg = dataclasses.replace(cfg, **{name: "nonsense"})
    with pytest.raises(InvalidValueError, match=f"{flag} must be .*got 'nonsense'"):
        validate_config(cfg)
