"""The tiny quickstart: the whole pipeline end to end, with its report."""

import json

from qbc.cli import main


def test_tiny_quickstart_writes_the_report(tmp_path, capsys, monkeypatch):
    # As the README runs it: default output folder, relative to the working directory.
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--tiny", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "qbc quickstart" in text and "report:" in text
    (out,) = (tmp_path / "runs").glob("quickstart-*")
    report = (out / "report.md").read_text()
    assert "| env | tokenizer |" in report and "ScalarUnstable-v0" in report
    results = json.loads((out / "results.json").read_text())
    assert len(results["rows"]) == 4
    for row in results["rows"]:
        assert row["eps_q"] > 0
        for who in ("learner", "quantized_expert"):
            assert len(row[who]["regret"]) == len(results["plan"]["horizons"])
    for env in ("ScalarStable-v0", "ScalarUnstable-v0"):
        assert (out / f"regret_vs_H_{env}.png").stat().st_size > 1000
    # the run directory is refused a second time
    assert main(["quickstart", "--tiny", "--out", str(out), "--no-progress"]) == 2
