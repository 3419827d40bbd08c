"""Success in sweeps: on an env that reports success (the detour task) every row of results.csv
carries the success rate with its 95% interval for the policy (learner, quantized expert, chunk
floor) and for the expert, and the report shows it; a table written before those columns
existed still loads and reports, without them."""

from __future__ import annotations

import csv

import pytest

from qbc.sweep import load_spec, read_table, run_sweep, write_report
from qbc.sweep.report import SUMMARY_COLUMNS
from qbc.sweep.table import COLUMNS

SUCCESS = ("success", "success_ci_lo", "success_ci_hi", "expert_success",
           "expert_success_ci_lo", "expert_success_ci_hi", "floor_success")

DETOUR = """
[grid]
envs = ["qbc/DetourStable-v0"]
experts = ["detour"]
quantizers = ["uniform"]
bins = 8
n_demos = 4
seeds = [0, 1]
horizons = [25, 50]
chunk_lens = [2]

[train]
policies = ["mlp-mse", "quantized-expert", "chunk-ar-transformer"]
steps = 5
batch_size = 16
eval_interval = 5
model = {d_model = 16, n_layers = 1, n_heads = 2, hidden = 16}

[rollout]
episodes = 6
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("success")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        (root / "s.toml").write_text(DETOUR)
        run_sweep(load_spec(root / "s.toml"), root / "out", workers=1, progress=False)
    return root / "out"


def test_rows_carry_success_with_intervals(swept):
    rows = read_table(swept / "results.csv")
    assert {r["policy"] for r in rows} == {"mlp-mse", "quantized-expert", "chunk-ar-transformer"}
    for r in rows:
        assert r["success_ci_lo"] <= r["success"] <= r["success_ci_hi"]
        assert r["expert_success_ci_lo"] <= r["expert_success"] <= r["expert_success_ci_hi"]
        assert (r["floor_success"] is not None) == (r["policy"] == "chunk-ar-transformer")
    assert all(r["expert_success"] == 1.0 for r in rows)  # the detour expert reaches the goal
    # one expert, one set of episodes: the same expert numbers in every cell at each H
    for h in (25, 50):
        assert len({(r["expert_success_ci_lo"], r["expert_success_ci_hi"]) for r in rows
                    if r["H"] == h}) == 1
    assert any(r["success"] != r["expert_success"] for r in rows)  # not copies of the expert's


def test_report_shows_success(swept):
    report = write_report(swept)
    qexp = [s for s in report["summary"] if s["policy"] == "quantized-expert" and s["H"] == 50]
    rates = [r["success"] for r in read_table(swept / "results.csv")
             if r["policy"] == "quantized-expert" and r["H"] == 50]
    assert qexp[0]["n_seeds"] == 2 and qexp[0]["success_mean"] == pytest.approx(sum(rates) / 2)
    assert 0 <= qexp[0]["success_ci_lo"] <= qexp[0]["success_mean"] <= qexp[0]["success_ci_hi"]
    assert qexp[0]["expert_success"] == 1.0
    returns = [r["return"] for r in read_table(swept / "results.csv")
               if r["policy"] == "quantized-expert" and r["H"] == 50]
    assert qexp[0]["return_mean"] == pytest.approx(sum(returns) / 2)
    assert qexp[0]["expert_return_mean"] is not None
    assert qexp[0]["return_mean"] != qexp[0]["expert_return_mean"]  # not the expert's copied
    text = (swept / "report.md").read_text()
    assert "success (95% CI) | expert success | return | expert return |" in text
    with open(swept / "summary.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[-6:] == ["success_mean", "success_ci_lo", "success_ci_hi", "expert_success",
                           "return_mean", "expert_return_mean"]


def test_table_without_success_columns_still_reports(swept, tmp_path):
    # a results.csv written before the success columns existed
    old_columns = [c for c in COLUMNS if c not in SUCCESS]
    rows = read_table(swept / "results.csv")
    (tmp_path / "results.csv").write_text(
        ",".join(old_columns) + "\n" + "".join(
            ",".join("" if r[c] is None else str(r[c]) for c in old_columns) + "\n"
            for r in rows))
    old = read_table(tmp_path / "results.csv")
    assert all(r["success"] is None for r in old)
    report = write_report(tmp_path)
    assert "success (95% CI)" not in (tmp_path / "report.md").read_text()
    with open(tmp_path / "summary.csv", newline="") as f:
        header = next(csv.reader(f))
    assert "success_mean" not in header
    assert set(SUMMARY_COLUMNS) <= set(header)
    assert len(report["summary"]) == len(write_report(swept)["summary"])
