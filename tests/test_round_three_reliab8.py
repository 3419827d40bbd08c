"""Reliability round three, the helper's leftovers (issue 34): ``--resume`` with nothing to
resume is refused, a damaged sweep_config.json is refused (not replaced), and a sweep's
[train] decode takes ``sample:T`` as ``qbc rollout --decode`` does (one parser)."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import pytest
from test_round_three_leftovers import TRAIN_TINY, tiny_dataset  # noqa: F401 (fixtures)

from qbc.cli import main


def _files(root):
    return {p.relative_to(root): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


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
    before = _files(tmp_path)
    assert main([command, "--dataset", tiny_dataset, "--out", str(out), *TRAIN_TINY, *extra,
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--resume" in err and "no resumable run" in err, err
    assert ("does not exist" if state == "missing" else "is empty") in err
    assert _files(tmp_path) == before


def test_resume_help_says_a_missing_run_is_refused(capsys):
    for command in ("train", "train-chunked"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "without a run to" in text and "is refused" in text, command
