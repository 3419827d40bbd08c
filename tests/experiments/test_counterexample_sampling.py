"""Mean against sampled model states over seeds and heads (qbc.experiments.counterexample_sampling,
scripts/counterexample_sampling.py) and its headline reader."""

import json

import pytest

from qbc.cli import run_script
from qbc.experiments import counterexample_sampling as experiment
from qbc.experiments.counterexample_sampling import (
    SamplingComparisonConfig,
    range_table,
    run_sampling_comparison,
    sampling_summary,
    value_range,
)
from qbc.experiments.reproduce_headlines import counterexample_sampling_headline


def _row(head, seed, eps, h, mean, sampled, plain=0.5):
    return {"head": head, "seed": seed, "eps": eps, "H": h, "plain_loss": plain,
            "model_loss": mean * eps, "model_loss_over_eps": mean, "expert_loss": 0.0,
            "sampled_loss": sampled * eps, "sampled_loss_over_eps": sampled}


ROWS = [_row("gaussian", 0, 0.1, 10, 3.20, 3.25, plain=0.401),
        _row("gaussian", 1, 0.1, 10, 3.10, 3.05, plain=0.409),
        _row("gaussian", 0, 0.01, 10, 7.0, 7.5),
        _row("gaussian", 1, 0.01, 10, 7.0, 7.1),
        _row("tokens", 0, 0.1, 10, 3.2, 3.2, plain=0.401),
        _row("tokens", 0, 0.01, 10, 8.0, 10.0)]


def test_ranges_are_over_seeds_per_head_and_one_number_when_they_round_alike():
    assert value_range([3.101, 3.099], 2) == "3.10"
    assert value_range([3.2, 3.1, 3.15], 2) == "3.10–3.20"
    lines = range_table(ROWS).splitlines()
    assert lines[0].count("|") == 8 and "token head: mean x̂" in lines[0]
    assert lines[2] == "| 0.1 | 10 | 0.401–0.409 | 3.10–3.20 | 3.05–3.25 | 3.20 | 3.20 |"
    assert lines[3] == "| 0.01 | 10 | 0.500 | 7.00 | 7.10–7.50 | 8.00 | 10.00 |"


def test_summary_gives_the_extremes_of_sampled_minus_mean_and_where():
    summary = sampling_summary(ROWS)
    gaussian = summary["gaussian"]["10"]
    assert gaussian["max_sampled_minus_mean_over_eps"] == pytest.approx(0.5)
    assert gaussian["at_max"] == {"eps": 0.01, "seed": 0}
    assert gaussian["min_sampled_minus_mean_over_eps"] == pytest.approx(-0.05)
    assert gaussian["at_min"] == {"eps": 0.1, "seed": 1}
    assert summary["tokens"]["10"]["max_sampled_minus_mean_over_eps"] == pytest.approx(2.0)


def test_the_script_runs_every_head_and_seed_and_stores_the_rows_it_tabulates(tmp_path,
                                                                              monkeypatch):
    calls = []

    def table(eps_values, horizons, **kwargs):
        head, seed = kwargs["model_cfg"].head, kwargs["seed"]
        calls.append((head, seed, kwargs["model_cfg"].seed, kwargs["model_sample"]))
        shift = {"gaussian": 0.0, "tokens": 1.0}[head] + seed / 10
        return [{k: v for k, v in _row(head, seed, e, h, 3.0 + shift, 3.5 + shift).items()
                 if k not in ("head", "seed")} for e in eps_values for h in horizons]

    monkeypatch.setattr(experiment, "counterexample_table", table)
    argv = ["--gaussian-seeds", "0", "2", "--token-seeds", "1", "--eps", "0.1", "0.01",
            "--horizons", "10", "100", "--out", str(tmp_path)]
    assert run_script(SamplingComparisonConfig, run_sampling_comparison,
                      "counterexample_sampling", argv=argv) == 0
    assert calls == [("gaussian", 0, 0, True), ("gaussian", 2, 2, True), ("tokens", 1, 1, True)]
    rows = json.loads((tmp_path / "per_seed.json").read_text())
    assert len(rows) == 3 * 2 * 2 and {r["seed"] for r in rows if r["head"] == "tokens"} == {1}
    assert (tmp_path / "table.md").read_text().count("| 0.1 | 100 | 0.500 | 3.00–3.20 |") == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["seconds"]) == {"gaussian/seed0", "gaussian/seed2", "tokens/seed1"}
    headline = counterexample_sampling_headline(tmp_path)
    assert headline["mean_over_eps[head=gaussian,eps=0.1,H=100]"] == pytest.approx(3.1)
    assert headline["sampled_over_eps[head=tokens,eps=0.01,H=100]"] == pytest.approx(4.6)
    assert headline["max_sampled_minus_mean_over_eps[head=tokens,H=100]"] == pytest.approx(0.5)
    assert not [k for k in headline if "H=10]" in k]  # the largest H only
