"""The evaluation protocol as a library call: ``evaluate`` gives the numbers ``qbc rollout``
writes, prints nothing, and its report survives a JSON round trip."""

import json
import warnings

import pytest
from tiny import copy_tiny_lin_run

from qbc.errors import ClippedActionsWarning, InvalidValueError
from qbc.rollout.evaluate import evaluate
from qbc.rollout.inputs import EvalConfig, open_inputs
from qbc.rollout.report import METRIC_KEYS, RolloutReport, write_report

EVAL = {"episodes": 4, "horizons": (5, 10), "num_envs": 4, "progress": False}


@pytest.fixture
def lin(tiny_lin_run, tmp_path, monkeypatch):
    copy_tiny_lin_run(tiny_lin_run, tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def _without_timing(metrics):
    return {k: v for k, v in metrics.items() if k != "timing"}


def test_evaluate_gives_the_numbers_of_the_command(lin, cli, capsys):
    out = lin / "cmd"
    res = cli(["rollout", "--policy", lin / "run", "--out", out, "--episodes", "4",
               "--horizons", "10", "5", "--num-envs", "4", "--no-progress"])
    assert res.returncode == 0, res.stderr
    written = json.loads((out / "metrics.json").read_text())

    lines = []
    cfg = EvalConfig(out=lin / "lib", policy=str(lin / "run"), **EVAL)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        report = evaluate(cfg, log=lines.append)
    assert capsys.readouterr().out == ""  # the library prints nothing
    assert lines[0].startswith("coupling: exact") and lines[1].startswith("expert: lqr")
    assert lines[1].endswith("(from dataset qbc/lin-v0)")
    metrics = report.to_json()
    assert list(metrics) == list(written)  # the keys of metrics.json, in order
    assert _without_timing(json.loads(json.dumps(metrics))) == _without_timing(written)
    assert report.verdict is not None and report.verdict["floor"] == "quantized_expert"
    assert report.n_actions == 3 * 4 * 10

    write_report(lin / "lib", report)
    for name in ("metrics.json", "config.json", "per_step.csv", "regret_vs_horizon.png",
                 "state_deviation.png"):
        assert (lin / "lib" / name).stat().st_size > 0
    assert (lin / "lib" / "per_step.csv").read_bytes() == (out / "per_step.csv").read_bytes()
    config = json.loads((lin / "lib" / "config.json").read_text())
    assert list(config) == list(json.loads((out / "config.json").read_text()))


def test_the_report_round_trips_through_json(lin):
    cfg = EvalConfig(out=lin / "o", policy=str(lin / "run"), **EVAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippedActionsWarning)
        report = evaluate(cfg)
    text = json.dumps(report.to_json())
    back = RolloutReport.from_json(json.loads(text), report.config)
    assert json.dumps(back.to_json()) == text
    assert back.n_actions == report.n_actions and back.warnings == report.warnings
    assert "videos" not in report.to_json() and set(report.to_json()) == set(METRIC_KEYS) - {
        "videos"}
    write_report(lin / "back", back)  # without trajectories: metrics, config and the H plot
    assert json.loads((lin / "back" / "metrics.json").read_text()) == json.loads(text)
    assert not (lin / "back" / "per_step.csv").exists()


def test_the_expert_a_dataset_remembers_is_read_under_the_given_root(lin, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(lin / "elsewhere"))
    cfg = EvalConfig(out=lin / "o", policy=str(lin / "run"), quantized_expert=False, **EVAL)
    assert open_inputs(cfg).expert.source.startswith("default")
    inputs = open_inputs(cfg, datasets_root=lin / "minari")
    assert inputs.expert.source == "dataset qbc/lin-v0"
    assert set(inputs.actors) == {"expert", "policy"} and inputs.horizons == [5, 10]


def test_bad_settings_are_refused_before_anything_is_opened(tmp_path):
    with pytest.raises(InvalidValueError, match="--horizons must be positive integers"):
        open_inputs(EvalConfig(out=tmp_path / "o", env="qbc/ScalarUnstable-v0", horizons=(0,)))
    with pytest.raises(InvalidValueError, match="nothing to compare with the expert"):
        open_inputs(EvalConfig(out=tmp_path / "o", env="qbc/ScalarUnstable-v0"))
    assert not (tmp_path / "o").exists()


def test_clipping_is_a_warning_and_in_the_report(lin):
    cfg = EvalConfig(out=lin / "o", policy=str(lin / "run"), **EVAL)
    with pytest.warns(ClippedActionsWarning) as caught:
        report = evaluate(cfg)
    assert report.clipped_actions["quantized_expert"]["clipped"] > 0
    assert [str(w.message) for w in caught] == report.warnings
    assert report.warnings[0].startswith("quantized_expert: ")
