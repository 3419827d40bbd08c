"""scripts/quantized_expert_range.py on a tiny dataset: one line per (dataset, margin) and the
means; a margin widens the range, so it can only change the quantized expert's regret."""

from __future__ import annotations

import importlib.util

from repository import ROOT

from qbc.data.collect import CollectConfig, collect

SCRIPT = ROOT / "scripts" / "quantized_expert_range.py"


def test_script_reports_each_margin(capsys):
    collect(CollectConfig(env="qbc/ScalarUnstable-v0", dataset_id="qbc/scalar-tiny-v0",
                          episodes=4, num_envs=4, max_episode_steps=20))
    spec = importlib.util.spec_from_file_location("quantized_expert_range", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(script.RangeConfig(datasets=["qbc/scalar-tiny-v0"], bins=8,
                                   margins=[0.0, 1.0], episodes=5, horizon=20))
    out = capsys.readouterr().out
    assert "qbc/scalar-tiny-v0  margin 0: regret" in out
    assert "qbc/scalar-tiny-v0  margin 1: regret" in out
    means = [line for line in out.splitlines() if line.startswith("  margin ")]
    assert len(means) == 2 and all("of 5 episodes" in line for line in means)
    regrets = [float(line.split("regret ")[1].split(",")[0]) for line in means]
    assert regrets[0] != regrets[1]  # 8 bins over twice the range: other codewords
