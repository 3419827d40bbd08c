"""Reliability round three, the helper's leftovers (issue 34): ``--resume`` with nothing to
resume is refused, a damaged sweep_config.json is refused (not replaced), and a sweep's
[train] decode takes ``sample:T`` as ``qbc rollout --decode`` does (one parser)."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import json

import pytest
from round_three import SWEEP, TRAIN_TINY, files_under, tiny_dataset  # noqa: F401 (fixtures)
from sweep_files import sweep_doc as _doc

from qbc.cli import main
from qbc.errors import CorruptFileError, InvalidValueError, UnknownNameError


# -- --resume with nothing to resume ---------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "train-chunked"])
@pytest.mark.parametrize("state", ["missing", "empty"])
def test_resume_without_a_run_is_refused_and_writes_nothing(tmp_path, capsys, tiny_dataset,
                                                            command, state):
    """It started a new run without a word (a typo in --out trained somewhere else)."""
    out = tmp_path / "run"
    if state == "empty":
        out.mkdir()
    extra = ["--chunk-k", "2", "--bins", "8"] if command == "train-chunked" else []
    before = files_under(tmp_path)
    assert main([command, "--dataset", tiny_dataset, "--out", str(out), *TRAIN_TINY, *extra,
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--resume" in err and "no resumable run" in err, err
    assert ("does not exist" if state == "missing" else "is empty") in err
    assert files_under(tmp_path) == before


def test_resume_help_says_a_missing_run_is_refused(capsys):
    for command in ("train", "train-chunked"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "without a run to" in text and "is refused" in text, command


# -- a damaged sweep_config.json is refused, not replaced ------------------------------------------
def _sweep_once(tmp_path):
    config = tmp_path / "s.toml"
    config.write_text(SWEEP)
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(config), "--out", str(out), "--no-progress", "--no-report"]
    assert main(args) == 0
    return args, out / "sweep_config.json"


def _damage(path, how):
    doc = json.loads(path.read_text())
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
        return "not valid JSON"
    if how == "binary":
        path.write_bytes(b"\x00\xff\xfe" * 20)
        return "not UTF-8"
    if how == "list":
        path.write_text("[1, 2]")
        return "JSON list"
    field, value, words = {
        "cells": ("cells", [{"key": 3}], "field 'cells'"),
        "cells-dict": ("cells", {"a": 1}, "field 'cells'"),
        "spec": ("spec", "grid", "field 'spec'"),
        "workers": ("run", {"workers": "two", "backend": "local", "address": None},
                    "field 'run.workers'"),
        "source": ("source", 5, "field 'source'"),
    }[how]
    doc[field] = value
    path.write_text(json.dumps(doc))
    return words


@pytest.mark.parametrize("how", ["truncated", "binary", "list", "cells", "cells-dict", "spec",
                                 "workers", "source", "spec-lr", "spec-key"])
@pytest.mark.slow
def test_a_damaged_sweep_config_is_refused_and_kept(tmp_path, capsys, how):
    args, path = _sweep_once(tmp_path)
    if how in ("spec-lr", "spec-key"):
        doc = json.loads(path.read_text())
        if how == "spec-lr":
            doc["spec"]["train"]["lr"] = "fast"
            words = "[train] lr"
        else:
            doc["spec"]["grid"]["binz"] = 3
            words = "'binz'"
        path.write_text(json.dumps(doc))
    else:
        words = _damage(path, how)
    before = files_under(tmp_path)
    capsys.readouterr()
    for argv in (args, ["sweep", "report", str(path.parent)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "sweep_config.json" in err and words in err, (argv, err)
        assert files_under(tmp_path) == before  # the damaged file is kept, nothing else written


def test_read_config_raises_the_typed_error(tmp_path):
    from qbc.sweep.table import read_config

    assert read_config(tmp_path / "absent.json") is None
    path = tmp_path / "sweep_config.json"
    path.write_text(json.dumps({"source": None, "spec": {}, "run": {"workers": 0},
                                "cells": []}))
    with pytest.raises(CorruptFileError, match="field 'run.workers' must be an integer >= 1"):
        read_config(path)


# -- [train] decode: one parser with qbc rollout --decode ------------------------------------------
@pytest.mark.parametrize("decode", ["argmax", "mean", "sample", "sample:0.5", "sample:2"])
def test_sweep_decode_takes_what_rollout_decode_takes(decode):
    from qbc.sweep.spec import spec_from_dict

    assert spec_from_dict(_doc(train__decode=decode), source="s.toml").train.decode == decode


@pytest.mark.parametrize("decode,error,words", [
    ("sample:0", InvalidValueError, "[train] decode in s.toml: the temperature of 'sample:0'"),
    ("sample:inf", InvalidValueError, "must be a number > 0"),
    ("sample:hot", InvalidValueError, "must be a number > 0"),
    ("argmax:2", InvalidValueError, "only sample takes a temperature"),
    ("greedy", UnknownNameError, "unknown decode mode 'greedy'"),
])
def test_sweep_decode_is_refused_as_rollout_refuses_it(decode, error, words):
    from qbc.sweep.spec import spec_from_dict

    with pytest.raises(error) as info:
        spec_from_dict(_doc(train__decode=decode), source="s.toml")
    assert words in str(info.value)


def test_chunk_cells_take_a_sample_temperature_and_refuse_mean():
    from qbc.sweep.spec import spec_from_dict

    chunk = {"train__policies": ["chunk-ar-transformer"], "grid__chunk_lens": [2]}
    assert spec_from_dict(_doc(**chunk, train__decode="sample:0.5"), source="s.toml")
    with pytest.raises(InvalidValueError, match="argmax or sample, not 'mean'"):
        spec_from_dict(_doc(**chunk, train__decode="mean"), source="s.toml")


def test_a_sweep_cell_rolls_out_with_the_temperature_it_was_given(tmp_path, monkeypatch):
    """The runner sets the mode and the temperature (it set decode_mode to 'sample:0.5')."""
    import qbc.sweep.runner
    from qbc.sweep import run_sweep
    from qbc.sweep.spec import spec_from_dict

    seen = {}

    def evaluate(env, actors, *args, **kwargs):
        policy = actors["ar-transformer"]
        seen.update(mode=policy.decode_mode, temperature=policy.temperature)
        raise RuntimeError("stop here")

    monkeypatch.setattr(qbc.sweep.runner, "evaluate_actors", evaluate)
    spec = spec_from_dict(_doc(train__decode="sample:0.5", train__steps=2), source="s.toml")
    result = run_sweep(spec, tmp_path / "sweep", progress=False)
    assert list(result.failed.values()) == ["RuntimeError: stop here"]
    assert seen == {"mode": "sample", "temperature": 0.5}


# -- the command boundary: any exception ends in one line ------------------------------------------
def test_a_base_exception_inside_a_command_is_an_internal_error_line(tmp_path, capsys,
                                                                     monkeypatch):
    """A BaseException that is no Exception (a library's or a plug-in's own) escaped the
    boundary with a traceback; Ctrl-C and sys.exit keep their meaning."""
    import numpy as np

    import qbc.cli.tokenize

    class Halt(BaseException):
        pass

    def load(path):
        raise Halt("stop")

    np.save(tmp_path / "a.npy", np.zeros((10, 1), np.float32))
    monkeypatch.setattr(qbc.cli.tokenize, "load_actions_file", load)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    out = tmp_path / "t.json"
    assert main(["tokenize", "--actions", str(tmp_path / "a.npy"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "internal error, please report it with the log" in err, err
    assert "Halt" in next((tmp_path / "tmp").rglob("*.log")).read_text()
    assert not out.exists()

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(qbc.cli.tokenize, "load_actions_file", interrupted)
    assert main(["tokenize", "--actions", str(tmp_path / "a.npy"), "--out", str(out)]) == 130


# -- a tokenizer file with fewer quantizers than its layout makes ----------------------------------
@pytest.mark.parametrize("quantizer,per_dim,keep,loads", [
    ("uniform", True, 1, False),   # one quantizer for 2 per-dim dimensions: was used for both
    ("uniform", True, 2, True),
    ("uniform", False, 1, True),   # shared: one for all dimensions
    ("uniform", False, 2, False),
    ("vq", True, 1, True),         # joint: one over R^2
])
def test_a_tokenizer_file_holds_the_quantizers_its_layout_makes(tmp_path, quantizer, per_dim,
                                                                keep, loads):
    import numpy as np

    from qbc.tokenizer import ActionTokenizer

    actions = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    tok = ActionTokenizer(quantizer, 4, per_dim).fit(actions)
    state = tok.state_dict()
    qs = state["quantizers"]
    state["quantizers"] = (qs * 2)[:keep]
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(state))
    if loads:
        assert ActionTokenizer.load(path).n_tokens == tok.n_tokens
        return
    with pytest.raises(CorruptFileError, match=f"{keep} quantizers for 2 action dimensions"):
        ActionTokenizer.load(path)


def test_train_refuses_resume_with_overwrite(tmp_path, capsys, tiny_dataset):
    """On a resumable run it resumed and ignored --overwrite (train-chunked refused it)."""
    out = tmp_path / "run"
    args = ["train", "--dataset", tiny_dataset, "--out", str(out), *TRAIN_TINY]
    assert main(args) == 0
    before = files_under(tmp_path)
    capsys.readouterr()
    assert main([*args, "--resume", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--resume and --overwrite exclude each other" in err, err
    assert files_under(tmp_path) == before


# -- accepted nonsense: flags that were ignored or named nothing -----------------------------------
def test_certify_refuses_fit_settings_beside_a_tokenizer(tmp_path, capsys, tiny_dataset):
    """--quantizer/--bins with --tokenizer were ignored without a word."""
    import numpy as np

    from qbc.tokenizer import ActionTokenizer

    tok = tmp_path / "tok.json"
    ActionTokenizer("uniform", 8).fit(np.linspace(-1, 1, 50)[:, None]).save(tok)
    out = tmp_path / "cert"
    for flags, named in ((["--quantizer", "kmeans"], "--quantizer"), (["--bins", "8"], "--bins")):
        assert main(["certify", "--dataset", tiny_dataset, "--tokenizer", str(tok), "--out",
                     str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{named} choose the tokenizer fitted without" in err, err
    assert not out.exists()


def test_expert_path_with_an_expert_that_reads_no_file_names_the_flag(tmp_path, capsys):
    """It said 'bad parameters for expert 'lqr' (got an unexpected keyword argument 'path')'."""
    import numpy as np

    from qbc.tokenizer import ActionTokenizer

    tok = tmp_path / "tok.json"
    ActionTokenizer("uniform", 8).fit(np.linspace(-1, 1, 50)[:, None]).save(tok)
    assert main(["rollout", "--env", "qbc/ScalarStable-v0", "--expert", "lqr", "--expert-path",
                 "m.zip", "--tokenizer", str(tok), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "expert 'lqr' reads no model file: leave --expert-path out" in err, err
    assert main(["rollout", "--env", "qbc/ScalarStable-v0", "--expert", "sb3", "--tokenizer",
                 str(tok), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()  # it said: missing a required argument: 'path'
    assert "expert 'sb3' loads a model file: pass it with --expert-path" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("root", ["missing", "file"])
def test_expert_list_refuses_a_root_that_is_no_folder(tmp_path, capsys, root):
    """It listed an empty zoo and exited 0."""
    path = tmp_path / "zoo"
    if root == "file":
        path.write_text("x")
    assert main(["expert", "list", "--root", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is not a folder" in err, err
