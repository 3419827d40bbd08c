"""The chunk comparison's verdict (qbc.experiments.chunking_report) on hand-made summaries:
open-loop chunks that lower regret on a stable env and raise it on an unstable one confirm the
prediction; the reverse refutes it."""

from __future__ import annotations

import pytest

from qbc.experiments.chunking_report import prediction, replanning_effect

UNIFORM = "per-step(n_bins=64,quantizer=uniform)"


def rows(env: str, regret_k1: float, regret_k16: float, regret_replan: float) -> list[dict]:
    """One tokenizer's summary rows at H = 200 (and a smaller H that must be ignored)."""
    base = {"env": env, "policy": "chunk-ar-transformer", "chunk_tokenizer": UNIFORM,
            "diverged_fraction": 0.0}
    return [
        {**base, "H": 200, "chunk_len": 1, "execution": "open-loop", "regret_mean": regret_k1},
        {**base, "H": 200, "chunk_len": 16, "execution": "open-loop", "regret_mean": regret_k16},
        {**base, "H": 200, "chunk_len": 16, "execution": "receding:1",
         "regret_mean": regret_replan},
        {**base, "H": 10, "chunk_len": 16, "execution": "open-loop", "regret_mean": 0.0},
    ]


def test_prediction_holds_when_chunks_help_on_stable_and_hurt_on_unstable():
    summary = (rows("qbc/LinearStable-v0", 2.0, 1.0, 1.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0))
    lines, holds = prediction(summary)
    assert holds is True
    assert any("LinearStable-v0 (open-loop stable)" in line and "**holds**" in line
               for line in lines)
    assert replanning_effect(summary) == {"qbc/LinearStable-v0": (0, 1),
                                          "qbc/ScalarUnstable-v0": (1, 1)}


def test_prediction_fails_when_chunks_help_on_an_unstable_env():
    summary = (rows("qbc/LinearStable-v0", 2.0, 1.0, 1.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 1.0, 3.0))
    lines, holds = prediction(summary)
    assert holds is False
    assert any("ScalarUnstable-v0 (open-loop unstable)" in line and "**does not hold**" in line
               for line in lines)


def test_relative_form_compares_the_open_loop_penalty_across_envs():
    from qbc.experiments.chunking_report import open_loop_penalty, relative_prediction

    # chunks hurt everywhere, but 1.5x on the stable env and 4.5x on the unstable one
    summary = (rows("qbc/LinearStable-v0", 2.0, 3.0, 2.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0))
    assert open_loop_penalty(summary) == {"qbc/LinearStable-v0": 1.5,
                                          "qbc/ScalarUnstable-v0": 4.5}
    line, held = relative_prediction(summary)
    assert held is True and "**holds**" in line
    assert prediction(summary)[1] is False  # the absolute form: chunks did not help when stable
    line, held = relative_prediction(rows("qbc/LinearStable-v0", 2.0, 9.0, 2.5)
                                     + rows("qbc/ScalarUnstable-v0", 2.0, 3.0, 3.0))
    assert held is False and "**does not hold**" in line


def test_divergence_is_averaged_per_execution_at_the_largest_horizon():
    from qbc.experiments.chunking_report import divergence_by_execution

    summary = rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0)
    summary[1]["diverged_fraction"] = 0.5  # open-loop k = 16 at H = 200
    summary[3]["diverged_fraction"] = 1.0  # H = 10: ignored
    assert divergence_by_execution(summary) == {
        "qbc/ScalarUnstable-v0": {"k = 1": 0.0, "open-loop": 0.5, "receding:1": 0.0}}
    lines, _ = prediction(summary)
    assert "open-loop k > 1 50.0%" in lines[0]


@pytest.mark.slow
def test_script_on_a_folder_without_a_sweep_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "chunking_report.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1
    assert "summary.csv is missing" in done.stderr and not (tmp_path / "README.md").exists()
