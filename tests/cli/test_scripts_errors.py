"""Scripts that call the library directly (scripts/reproduce_results.py, learner_vs_floor.py,
...) end bad input in one line and exit 2, through the same boundary as the qbc commands
(:func:`qbc.cli.run_script`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from in_process import run_python
from repository import ROOT

from qbc.cli import run_script
from qbc.errors import InvalidValueError


@pytest.mark.slow
@pytest.mark.parametrize("argv, words", [
    (["scripts/reproduce_results.py", "--only", "no-such-result", "--quick"],
     ["scripts/reproduce_results.py: error: unknown result 'no-such-result'"]),
    (["scripts/quantized_expert_scaling.py", "--bogus"],
     ["Unrecognized options: --bogus", "'scripts/quantized_expert_scaling.py --help'"]),
])
def test_scripts_end_bad_input_in_one_line(argv, words, tmp_path):
    done = run_python(argv, cwd=ROOT, env={"MINARI_DATASETS_PATH": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert all(w in err for w in words), err


@dataclass
class Config:
    """A script's settings."""

    n: int = 1


def _run(cfg: Config) -> int:
    if cfg.n < 0:
        raise InvalidValueError("--n must be >= 0")
    return cfg.n


def test_run_script_returns_the_scripts_exit_code_or_2(capsys):
    assert run_script(Config, _run, "demo", ["--n", "0"]) == 0
    assert run_script(Config, _run, "demo", ["--n", "1"]) == 1  # the script's own code
    assert run_script(Config, _run, "demo", ["--n", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "scripts/demo.py: error: --n must be >= 0"
