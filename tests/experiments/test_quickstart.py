"""The tiny quickstart: the whole pipeline end to end, with its report."""

import copy
import json
import re
from pathlib import Path

import pytest

from qbc.cli import main
from qbc.experiments.quickstart_report import format_report, format_summary, table_horizons

# Every test here reads the one tiny quickstart run (the whole pipeline, end to end).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_cli_run(tmp_path_factory, cli):
    """``qbc quickstart --tiny`` as the README runs it: default output folder, relative to the
    working directory. (the folder it ran in, what the command left); one run shared by every
    test of this file."""
    root = tmp_path_factory.mktemp("qs")
    return root, cli(["quickstart", "--tiny", "--no-progress"], cwd=root)


def test_tiny_quickstart_writes_the_report(tiny_cli_run):
    tmp_path, done = tiny_cli_run
    assert done.returncode == 0, done.stderr
    text = done.stdout
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


# --- the report a newcomer reads (the same tiny run) ------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tiny_cli_run):
    """The ``--tiny`` quickstart's result dict (results.json, with ``"out"`` as
    :func:`run_quickstart` returns it) and report text."""
    root, done = tiny_cli_run
    assert done.returncode == 0, done.stderr
    (out,) = (root / "runs").glob("quickstart-*")
    result = {**json.loads((out / "results.json").read_text()), "out": str(out)}
    return result, (out / "report.md").read_text()


def _section(report: str, heading: str) -> list[str]:
    body = report.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def test_tiny_report_says_it_is_a_smoke_test_at_the_top(tiny_run):
    result, report = tiny_run
    top = "\n".join(report.splitlines()[:4])
    assert "Smoke test" in top and "mean anything" in top
    # a full run's report carries no such warning
    assert "Smoke test" not in format_report({**result, "tiny": False}, [])


@pytest.mark.parametrize("term, needle", [("ρ", "ρ"), ("P-EIISS", "P-EIISS"), ("ε_q", "ε_q"),
                                          ("κ(δ)", "κ(")])
def test_report_defines_each_symbol_where_it_first_appears(tiny_run, term, needle):
    _, report = tiny_run
    first = next(line for line in report.splitlines() if needle in line)
    assert first.startswith(f"- **{term}**: ") and len(first) > 40, first


def test_results_table_shows_each_horizon_once(tiny_run):
    result, report = tiny_run
    hs = result["plan"]["horizons"]
    assert hs[len(hs) // 2] == hs[-1]  # the case: the tiny plan's middle and last horizon coincide
    header, separator, *rows = [line for line in _section(report, "Results") if line[0] == "|"]
    cells = header.strip("|").split(" | ")
    learner = [c for c in cells[:cells.index("slope")] if "H=" in c]
    shown = [re.search(r"H=(\d+)", c).group(1) for c in learner]
    assert len(shown) == len(set(shown)) == 1, header
    assert all(line.count("|") == header.count("|") for line in (separator, *rows))
    assert table_horizons([10, 20, 50, 100, 200, 500]) == [100, 500]


def _best(rows, env):
    best = min((r for r in rows if r["env"] == env), key=lambda r: r["learner"]["regret"][-1])
    return f"{best['quantizer']}/{best['bins']}"


def test_what_this_shows_is_computed_from_the_numbers(tiny_run):
    result, report = tiny_run
    h = result["plan"]["horizons"][-1]
    bullets = _section(report, "What this shows")
    envs = list(dict.fromkeys(r["env"] for r in result["rows"]))
    assert len(bullets) == len(envs)
    for env, bullet in zip(envs, bullets, strict=True):
        assert bullet.startswith(f"- **{env.split('/')[-1]}**")
        assert f"lowest learner regret at H={h}: {_best(result['rows'], env)} " in bullet
        gaps = [r["learner"]["regret"][-1] - r["quantized_expert"]["regret"][-1]
                for r in result["rows"] if r["env"] == env]
        assert f"{max(gaps):.3g}" in bullet
    # Make the other tokenizer the best on the first env: the sentence follows the numbers.
    changed = copy.deepcopy(result)
    env = envs[0]
    loser = max((r for r in changed["rows"] if r["env"] == env),
                key=lambda r: r["learner"]["regret"][-1])
    loser["learner"]["regret"][-1] = 0.0
    new = _section(format_report(changed, []), "What this shows")[0]
    assert f"lowest learner regret at H={h}: {loser['quantizer']}/{loser['bins']} (0)" in new
    assert "below the floor" in new


def test_report_links_one_video_per_env_and_the_files_exist(tiny_run):
    pytest.importorskip("imageio")
    import imageio.v3 as iio

    result, report = tiny_run
    links = [line for line in _section(report, "Videos") if line.startswith("- ")]
    envs = list(result["envs"])
    assert len(links) == len(envs)
    for env_id, line in zip(envs, links, strict=True):
        assert line.startswith(f"- {env_id}, learner ")
        target = line.rsplit("(", 1)[1].rstrip(")")
        frames = iio.imread(Path(result["out"]) / target)
        assert frames.shape[0] == result["plan"]["video_horizon"] + 1


def test_the_floors_divergence_sits_beside_the_learners(tiny_run):
    # the target reads "diverging no more often than its floor": both columns are shown
    result, report = tiny_run
    header, _, *rows = [line for line in _section(report, "Results") if line[0] == "|"]
    cells = header.strip("| ").split(" | ")
    learner_div, floor_div = cells.index("diverged"), cells.index("q#π* diverged")
    for line, r in zip(rows, result["rows"], strict=True):
        values = line.strip("| ").split(" | ")
        assert values[learner_div] == f"{r['learner']['diverged']:.0%}"
        assert values[floor_div] == f"{r['quantized_expert']['diverged']:.0%}"
    summary_header = format_summary(result).splitlines()[1 + bool(result.get("tiny"))]
    assert summary_header.split().count("div") == 2
