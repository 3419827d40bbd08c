"""Reliability round three, another black-box pass (issue 34): quantizers and tokenizers check
their parameters when made, ``expected_action`` takes only probabilities, a tokenizer is not
saved over a folder, an observation encoder spec gives each setting once, and ``--resume``
continues only from the step where the saved run stopped."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from round_three import TRAIN_TINY, files_under, refused, tiny_dataset  # noqa: F401 (fixture)

from qbc.cli import main
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError

ACTIONS = np.random.default_rng(0).normal(size=(50, 2))


# -- quantizers: parameters checked when made ------------------------------------------------------
@pytest.mark.parametrize("name,params,needle", [
    ("uniform", {"quantile": "x"}, "uniform: quantile must be a number, got 'x'"),
    ("smooth", {"n_bins": 1}, "smooth: n_bins must be an integer >= 2, got 1"),
    ("uniform", {"low": "a", "high": 1.0}, "uniform: low must be a number, got 'a'"),
    ("uniform", {"n_bins": True}, "uniform: n_bins must be an integer, got True"),
    ("sign", {"fit_scale": "no"}, "sign: fit_scale must be true or false, got 'no'"),
    ("lloyd_max", {"design": 3}, "lloyd_max: design must be text, got 3"),
    ("theorem6", {"A": "x"}, "theorem6: A must be a number, got 'x'"),
])
def test_quantizer_parameters_are_refused_when_it_is_made(name, params, needle):
    """They were accepted by make_quantizer and refused only at fit (quantile="x"), or, like
    fit_scale="no" (taken as true), never."""
    from qbc.quantizers import get_quantizer_class, make_quantizer

    with pytest.raises(InvalidValueError, match="^" + re.escape(needle)):
        make_quantizer(name, **params)
    with pytest.raises(InvalidValueError, match="^" + re.escape(needle)):
        get_quantizer_class(name)(**params)


def test_quantizer_parameters_of_numpy_kinds_pass():
    from qbc.quantizers import make_quantizer

    q = make_quantizer("uniform", n_bins=np.int64(4), low=np.float32(-1), high=1)
    assert q.fit().n_levels == 4
    assert make_quantizer("vq", n_bins=4, standardize=np.bool_(False)).fit(ACTIONS).n_levels == 4


@pytest.mark.parametrize("kwargs,needle", [
    ({"per_dim": "no"}, "ActionTokenizer: per_dim must be true or false, got 'no'"),
    ({"n_bins": "8"}, "ActionTokenizer: n_bins must be an integer, got '8'"),
    ({"quantizer": 3}, "ActionTokenizer: quantizer must be text, got 3"),
    ({"quantizer_params": 3}, "ActionTokenizer: quantizer_params must be a dict"),
    ({"quantizer_params": {"quantile": "x"}}, "uniform: quantile must be a number, got 'x'"),
    ({"quantizer": "smooth", "n_bins": 1}, "smooth: n_bins must be an integer >= 2, got 1"),
])
def test_tokenizer_settings_are_refused_when_made_and_in_fit(kwargs, needle):
    """``per_dim="no"`` fitted one quantizer per dimension, as if true."""
    from qbc.tokenizer import ActionTokenizer

    with pytest.raises(InvalidValueError, match="^" + re.escape(needle)):
        ActionTokenizer(**kwargs)
    params = kwargs.pop("quantizer_params", None)
    kwargs.update(params if isinstance(params, dict) else {})
    if params is not None and not isinstance(params, dict):
        return  # fit takes the quantizer's parameters as keywords
    with pytest.raises(InvalidValueError, match="^" + re.escape(needle)):
        ActionTokenizer.fit(ACTIONS, **kwargs)
    tok = ActionTokenizer(n_bins=4)
    with pytest.raises(InvalidValueError, match="^" + re.escape(needle)):
        tok.fit(ACTIONS, **kwargs)
    assert (tok.quantizer, tok.n_bins, tok.per_dim, tok.quantizer_params) == (
        "uniform", 4, True, {})  # a refused fit changes nothing


# -- expected_action: probabilities only -----------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    from qbc.tokenizer import ActionTokenizer

    return ActionTokenizer.fit(ACTIONS, n_bins=4)


@pytest.mark.parametrize("probs,needle", [
    (np.full((3, 4), 0.25), "must have shape (N, 2, 4)"),
    (np.full((3, 2, 5), 0.2), "must have shape (N, 2, 4)"),
    (np.full((3, 2, 4), np.nan), "24 non-finite and 0 negative values"),
    (np.tile([-0.5, 0.5, 0.5, 0.5], (3, 2, 1)), "0 non-finite and 6 negative values"),
    (np.ones((3, 2, 4)), "must sum to 1 over the tokens of each position"),
    (np.array([[["a"] * 4] * 2]), "must be real numbers"),
])
def test_expected_action_refuses_what_is_not_probabilities(tok, probs, needle):
    """A wrong shape raised numpy's einsum ValueError; NaN or negative entries gave NaN or
    meaningless actions without a word."""
    with pytest.raises(InvalidValueError, match=re.escape(needle)):
        tok.expected_action(probs)


def test_expected_action_of_probabilities_is_the_mean_codeword(tok):
    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=(5, 2)).astype(np.float32)
    want = np.einsum("ndk,dk->nd", probs.astype(np.float64), tok.codebooks())
    np.testing.assert_allclose(tok.expected_action(probs), want, rtol=1e-5)


# -- saving a tokenizer over a folder --------------------------------------------------------------
def test_tokenizer_save_over_a_folder_is_typed_and_writes_nothing(tok, tmp_path):
    """IsADirectoryError escaped (from os.replace, after the temporary file was written)."""
    from qbc.infra.files import atomic_write_json

    (tmp_path / "d").mkdir()
    before = files_under(tmp_path)
    for save in (lambda: tok.save(tmp_path / "d"), lambda: tok.save(tmp_path / "d", False),
                 lambda: atomic_write_json(tmp_path / "d", {})):
        with pytest.raises(OutputExistsError, match="/d' is a folder; give a file name"):
            save()
    assert files_under(tmp_path) == before


# -- observation encoder specs: each setting once --------------------------------------------------
@pytest.mark.parametrize("spec,needle", [
    ("qrp:k=8,k=9", "setting k is given twice in 'qrp:k=8,k=9'"),
    ("qrp:", "'qrp:' has an empty setting"),
    ("qrp:k=8,,bits=2", "has an empty setting"),
    ("qrp:k=8,", "has an empty setting"),
])
def test_obs_encoder_spec_with_a_repeated_or_empty_setting_is_refused(spec, needle):
    """k=8,k=9 trained with k=9 (the last one won); 'qrp:' was taken as the defaults."""
    from qbc.policy.obs_encoder import obs_encoder_config, parse_obs_encoder

    with pytest.raises(InvalidValueError, match=re.escape(needle)):
        parse_obs_encoder(spec)
    assert parse_obs_encoder("qrp")["k"] == 16
    assert obs_encoder_config({"type": "qrp"}).k == 16  # a stored config of the defaults


def test_obs_encoder_repeated_setting_on_the_command_line(tmp_path, capsys):
    refused(capsys, tmp_path, ["train", "--dataset", "test/none-v0", "--out",
                               str(tmp_path / "r"), "--obs-encoder", "qrp:k=8,k=9"],
            "setting k is given twice")


def test_chunk_tokenizer_params_given_twice_are_refused():
    from qbc.training.chunk_data import parse_params

    assert parse_params("scale=20,quantizer=kmeans") == {"scale": 20, "quantizer": "kmeans"}
    with pytest.raises(InvalidValueError, match="gives scale twice"):
        parse_params("scale=20,scale=30")


# -- --resume: from where the saved run stopped ----------------------------------------------------
@pytest.fixture
def finished_run(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "r"
    args = ["train", "--dataset", tiny_dataset, "--out", str(out), "--bins", "8",
            "--eval-interval", "1", *TRAIN_TINY]
    assert main(args) == 0
    capsys.readouterr()
    return out, args


def _with_steps(args, steps):
    i = args.index("--steps")
    return [*args[:i + 1], str(steps), *args[i + 2:], "--resume"]


@pytest.mark.parametrize("edit", [{"step": 1_000_000}, {"step": 1}])
def test_resume_from_an_edited_step_is_a_corrupt_file(finished_run, capsys, edit):
    """Step 1,000,000 with --steps 6 exited 0 without training a step (step -3 was refused);
    step 1 would have trained again from the wrong point of the schedule."""
    out, args = finished_run
    path = out / "last" / "trainer_state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    err = refused(capsys, out, _with_steps(args, 6), "trainer_state.json",
                  f"step {edit['step']} is not where the run stopped")
    assert "CorruptFileError" in err or "start again with --overwrite" in err


def test_resume_below_the_step_reached_is_refused(finished_run, capsys):
    """--steps 1 on a run at step 2 exited 0 reporting 'budget: 1 steps'."""
    out, args = finished_run
    refused(capsys, out, _with_steps(args, 1), "has already reached step 2",
            "at least 2 steps")


def test_finished_and_extended_runs_still_resume(finished_run, capsys):
    out, args = finished_run
    assert main(_with_steps(args, 2)) == 0  # finished: nothing more to do, as before
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == 2
    assert main(_with_steps(args, 3)) == 0
    assert json.loads((out / "last" / "trainer_state.json").read_text())["step"] == 3


def test_restore_progress_names_the_file(tmp_path):
    from qbc.training.checkpoint import check_resumed_step

    (tmp_path / "last").mkdir()
    (tmp_path / "last" / "config.json").write_text(json.dumps({"train": {"steps": 10}}))
    check_resumed_step(tmp_path, 10, 10, 10)
    with pytest.raises(CorruptFileError, match=r"trainer_state\.json: step 11 is not where"):
        check_resumed_step(tmp_path, 11, 11, 20)  # beyond the recorded budget
    with pytest.raises(CorruptFileError, match="its schedule is at step 4"):
        check_resumed_step(tmp_path, 5, 4, 20)
    with pytest.raises(InvalidValueError, match="already reached step 10"):
        check_resumed_step(tmp_path, 10, 10, 6)
