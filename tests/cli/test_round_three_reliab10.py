"""Reliability round three, a fresh black-box pass (issue 34): settings that a command would
ignore are refused (``qbc rollout --temperature`` without sampling, ``--resync-every`` /
``--model-sample`` without ``--augment model``, a DAgger schedule's setting under another
``--beta``), and a config dataclass's fields are checked against their annotated kinds
(``TrainConfig(tensorboard="no")``, ``--train-overrides '{"tensorboard": "no"}'``)."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from round_three import TRAIN_TINY, files_under, refused, tiny_dataset  # noqa: F401 (fixtures)

from qbc.errors import InvalidValueError

#: A DAgger run small enough to finish quickly where a refusal is missing.
DAGGER = ["--rounds", "1", "--episodes-per-round", "2", "--max-episode-steps", "5",
          "--eval-episodes", "1", "--steps", "1", "--batch-size", "8", "--no-progress",
          "--model.d-model", "8", "--model.n-layers", "1", "--model.n-heads", "1"]



# -- settings a command would ignore ---------------------------------------------------------------
@pytest.mark.parametrize("extra,needle", [
    (["--temperature", "0.5"], "--temperature 0.5 applies to --decode sample"),
    (["--decode", "mean", "--temperature", "2"], "--decode mean would ignore it"),
    (["--resync-every", "3"], "--resync-every and --model-sample apply to --augment model"),
    (["--model-sample"], "--resync-every and --model-sample apply to --augment model"),
])
def test_rollout_settings_it_would_ignore_are_refused(tmp_path, capsys, extra, needle):
    """They ran to the end, the setting unused, and metrics.json said nothing of it."""
    refused(capsys, tmp_path, ["rollout", "--out", str(tmp_path / "o"), "--env",
                               "qbc/ScalarStable-v0", "--expert", "lqr", "--episodes", "1",
                               "--horizons", "3", *extra], needle)


@pytest.mark.parametrize("extra,needle", [
    (["--beta-value", "0.3"], "--beta-value sets the 'constant' schedule; --beta linear"),
    (["--beta-decay", "0.3"], "--beta-decay sets the 'exp' schedule"),
    (["--beta", "exp", "--beta-step", "0.5"], "--beta exp reads only --beta-decay"),
])
def test_dagger_setting_of_another_schedule_is_refused(tmp_path, capsys, extra, needle):
    refused(capsys, tmp_path, ["dagger", "--env", "qbc/ScalarStable-v0", "--out",
                               str(tmp_path / "d"), *DAGGER, *extra], needle)


def test_dagger_schedule_settings_that_apply_pass():
    from qbc.interactive.config import DaggerConfig, check_schedule_settings

    for beta, extra in [("linear", {"beta_step": 0.5}), ("exp", {"beta_decay": 0.3}),
                        ("constant", {"beta_value": 0.3})]:
        check_schedule_settings(DaggerConfig(env="qbc/ScalarStable-v0", out="d", beta=beta,
                                             **extra))


# -- config fields of the wrong kind ---------------------------------------------------------------
@pytest.mark.parametrize("field,value,needle", [
    ("tensorboard", "no", "--tensorboard must be true or false, got 'no'"),
    ("per_dim", "false", "--per-dim must be true or false"),
    ("batch_size", 16.0, "--batch-size must be an integer, got 16.0"),
    ("seed", True, "--seed must be an integer, got True"),
    ("lr", "0.1", "--lr must be a number"),
    ("out", None, "--out must be a path, got None"),
    ("model", {"d_model": 16}, "--model must be a ModelConfig"),
])
def test_train_config_fields_of_the_wrong_kind_are_refused(field, value, needle):
    """A string for a bool switched it on (``tensorboard="no"``), a float batch size or a
    dict for the model failed deep inside training (a TypeError)."""
    from qbc.training import TrainConfig, validate_config

    cfg = dataclasses.replace(TrainConfig(dataset="qbc/x-v0"), **{field: value})
    with pytest.raises(InvalidValueError, match="^" + needle.replace("(", r"\(")):
        validate_config(cfg)


def test_train_config_paths_given_as_text_pass(tmp_path):
    from qbc.training import TrainConfig, validate_config

    validate_config(TrainConfig(dataset="qbc/x-v0", out=str(tmp_path / "r"), lr=1))


def test_dagger_train_overrides_of_the_wrong_kind_are_refused(tmp_path, capsys):
    refused(capsys, tmp_path, ["dagger", "--env", "qbc/ScalarStable-v0", "--out",
                               str(tmp_path / "d"), *DAGGER, "--train-overrides",
                               '{"tensorboard": "no"}'],
            "--tensorboard must be true or false, got 'no'")


# -- qbc bench --json: one output file like every other ----------------------------------------
def test_bench_json_folder_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    """It measured for minutes, then failed to write over the folder (the results lost)."""
    import qbc.cli.bench as bench

    def measured(*args, **kwargs):
        raise AssertionError("measured before --json was checked")

    monkeypatch.setattr(bench, "_measure", measured)
    (tmp_path / "b").mkdir()
    refused(capsys, tmp_path, ["bench", "--quick", "--json", str(tmp_path / "b"),
                               "--overwrite"], "--json", "is a folder; give a file name")
    (tmp_path / "b.json").write_text("{}")
    refused(capsys, tmp_path, ["bench", "--quick", "--json", str(tmp_path / "b.json")],
            "exists; pass --overwrite", "choose another --json")


# -- Policy.act: observations that are not real numbers --------------------------------------------
@pytest.fixture(scope="module")
def tiny_policy():
    from qbc.policy import ModelConfig, Normalizer, Policy, build_policy
    from qbc.tokenizer import ActionTokenizer

    rng = np.random.default_rng(0)
    tok = ActionTokenizer.fit(rng.normal(size=(50, 2)), n_bins=8)
    module = build_policy("ar-transformer", ModelConfig(d_model=8, n_layers=1, n_heads=1),
                          obs_dim=3, act_dim=2, tokenizer=tok)
    norm = Normalizer.fit(rng.normal(size=(50, 3)), rng.normal(size=(50, 2)))
    return Policy(module, norm, tok)


@pytest.mark.parametrize("obs,needle", [
    (np.array([["a", "b", "c"]]), "observations must be real numbers, got an array of dtype <U1"),
    (np.ones((2, 3), complex), "dtype complex128"),
    (np.array([[None] * 3]), "dtype object"),
    ([[0.0, 1.0, 2.0], [0.0]], "observations must be a rectangular array of numbers"),
])
def test_policy_act_refuses_observations_that_are_not_real_numbers(tiny_policy, obs, needle):
    """Text and ragged rows raised numpy's ValueError; complex numbers lost their imaginary
    part with a warning and were acted on."""
    with pytest.raises(InvalidValueError, match=needle.replace("(", r"\(")):
        tiny_policy.act(obs)


def test_policy_act_beyond_float32_is_refused_without_numpy_warnings(tiny_policy):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidValueError, match="beyond float32"):
            tiny_policy.act(np.full((2, 3), 1e300))
    assert tiny_policy.act(np.zeros((2, 3), np.float16)).shape == (2, 2)


# -- k-means quantizers: their settings as qbc's errors -------------------------------------------
@pytest.mark.parametrize("name,params,needle", [
    ("kmeans", {"n_init": 0}, "kmeans: n_init must be an integer >= 1, got 0"),
    ("kmeans", {"seed": -1}, "kmeans: seed must be an integer in [0, 2^32), got -1"),
    ("vq", {"n_init": 1.5}, "vq: n_init must be an integer, got 1.5"),
    ("vq", {"standardize": "no"}, "vq: standardize must be true or false, got 'no'"),
])
def test_kmeans_quantizer_settings_are_typed_errors(name, params, needle):
    """scikit-learn's InvalidParameterError escaped at fit; standardize="no" standardized."""
    from qbc.quantizers import make_quantizer

    data = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(InvalidValueError, match=re.escape(needle)):
        make_quantizer(name, n_bins=4, **params).fit(data if name == "vq" else data[:, 0])
