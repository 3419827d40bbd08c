"""The multimodal experiment (qbc.experiments.multimodal, scripts/multimodal.py) on a tiny
configuration: every learner and decoding gets a row with success, modes and regret, the
expert's row is the detour expert's, and the same seed gives the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.experiments.multimodal import MultimodalConfig, run_multimodal
from qbc.experiments.reproduce import RESULTS, multimodal_headline

TINY = {"envs": ("qbc/DetourUnstable-v0",), "learners": ("mlp-mse", "ar-transformer:uniform"),
        "decodings": ("sample:0.5", "argmax"), "bins": 8, "n_demos": 6, "steps": 3, "episodes": 5}


@pytest.mark.slow
def test_tiny_run_has_every_row_and_repeats(tmp_path, one_torch_thread):
    first = run_multimodal(MultimodalConfig(out=tmp_path / "a", **TINY))
    policies = [r["policy"] for r in first["rows"]]
    assert policies == ["expert", "mlp-mse", "q#pi* (uniform)", "ar-transformer:uniform sample:0.5",
                        "ar-transformer:uniform argmax"]
    expert = first["rows"][0]
    assert expert["success"] == 1.0 and expert["modes"]["none"] == 0.0 and expert["regret"] == 0
    for r in first["rows"]:
        assert 0 <= r["success"] <= 1 and sum(r["modes"].values()) == pytest.approx(1.0)
        assert r["success_ci95"][0] <= r["success"] <= r["success_ci95"][1]
    table = (tmp_path / "a" / "results.md").read_text()
    assert "| qbc/DetourUnstable-v0 | ar-transformer:uniform sample:0.5 |" in table
    again = run_multimodal(MultimodalConfig(out=tmp_path / "b", **TINY))
    assert again["rows"] == first["rows"]  # seeded data, training and sampled decoding
    values = multimodal_headline(tmp_path / "a")
    assert values["success[DetourUnstable-v0,expert]"] == 1.0
    assert "left[DetourUnstable-v0,ar-transformer:uniform sample:0.5]" in values
    assert RESULTS["multimodal"].headline is multimodal_headline


def test_bad_settings_are_refused_before_any_output(tmp_path):
    for bad in ("sample:0", "sample:x", "argmax:0.5"):
        with pytest.raises(InvalidValueError, match="temperature"):
            run_multimodal(MultimodalConfig(out=tmp_path / "x", decodings=(bad,)))
    with pytest.raises(UnknownNameError, match="decode mode"):
        run_multimodal(MultimodalConfig(out=tmp_path / "x", decodings=("greedy",)))
    with pytest.raises(UnknownNameError, match="quantizer"):
        run_multimodal(MultimodalConfig(out=tmp_path / "x", learners=("ar-transformer:nope",)))
    with pytest.raises(InvalidValueError, match="detour"):
        run_multimodal(MultimodalConfig(out=tmp_path / "x", envs=("qbc/ScalarStable-v0",)))
    assert not Path(tmp_path / "x").exists()
