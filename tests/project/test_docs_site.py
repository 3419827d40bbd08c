"""The documentation site (mkdocs.yml): it builds with --strict (no broken link, no page missing
from the nav, every docstring readable), every command has a generated reference page, every
results folder a page and a row in the generated index, and the README stays a front page."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
from repository import ROOT


def _hooks():
    spec = importlib.util.spec_from_file_location("qbc_mkdocs_hooks",
                                                  ROOT / "scripts" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[dev]') builds the site")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    out = tmp_path_factory.mktemp("site")
    # In this process (`mkdocs build --strict -d OUT` without a fresh interpreter that imports
    # torch again for the generated CLI pages): strict mode aborts on the first warning.
    config = load_config(str(ROOT / "mkdocs.yml"), strict=True, site_dir=str(out))
    try:
        build(config)
    except Abort as exc:
        pytest.fail(f"mkdocs build --strict: {exc}")
    return out


@pytest.mark.slow
def test_site_builds_strict_with_every_command_and_result(site):
    from qbc.cli import COMMANDS

    for command in COMMANDS:
        page = site / "reference" / "cli" / command.replace(" ", "-") / "index.html"
        assert page.exists(), f"no CLI reference page for qbc {command}"
        assert "--help" in page.read_text()
    index = (site / "results" / "index.html").read_text()
    for folder in _hooks().result_folders():
        name = folder.relative_to(ROOT / "docs" / "results").as_posix()
        assert (site / "results" / name / "index.html").exists(), f"no page for results/{name}"
        assert f">{name}<" in index, f"results/{name} has no row in the results index"
    for plot in (ROOT / "docs" / "results").rglob("*.png"):
        rel = plot.relative_to(ROOT / "docs").as_posix()
        assert (site / rel).exists(), rel
    assert (site / "reference" / "api" / "qbc.quantizers" / "index.html").exists()


@pytest.mark.slow
def test_results_pages_show_their_plots(site):
    # counterexample has no README: its generated page shows the plot and the table
    page = (site / "results" / "counterexample" / "index.html").read_text()
    assert "loss_vs_horizon.png" in page and "model-based" in page


def test_results_index_picks_up_any_new_folder(tmp_path, monkeypatch):
    hooks = _hooks()
    results = tmp_path / "docs" / "results"
    new = results / "learner_vs_floor_defaults"
    new.mkdir(parents=True)
    (new / "README.md").write_text("# New\n\n## Targets\n\n- Env, smooth: met by dart/argmax\n")
    (new / "plot.png").write_bytes(b"")
    (new / "reference.json").write_text(json.dumps({"full": {
        "commands": ["python scripts/x.py --out {out}"], "commit": "abc1234",
        "date": "2026-12-06", "values": {"regret[x]": {"value": 1.5}}}}))
    other = results / "no_readme"
    other.mkdir()
    (other / "reference.json").write_text(json.dumps({"full": {
        "commands": ["qbc y"], "commit": "def5678", "date": "2026-12-05",
        "values": {"k": {"value": 2.25}}}}))
    monkeypatch.setattr(hooks, "RESULTS", results)
    assert hooks.result_folders() == [new, other]
    index = hooks.results_index()
    assert "[learner_vs_floor_defaults](learner_vs_floor_defaults/README.md)" in index
    assert "Env, smooth: met by dart/argmax" in index and "abc1234" in index
    assert "2026-12-06" in index and "`python scripts/x.py --out {out}`" in index
    assert "[no_readme](no_readme/index.md)" in index and "`k` = 2.25" in index
    assert "![plot](plot.png)" in hooks._extras(new, "")
    verdict = results / "verdict"
    verdict.mkdir()
    (verdict / "README.md").write_text("# V\n\nintro\n\n**The prediction holds** here.\n")
    assert hooks.headline(verdict) == "**The prediction holds** here."


def test_cli_reference_is_the_commands_own_help():
    text = _hooks().cli_page("collect")
    assert text.startswith("# qbc collect") and "--max-episode-steps" in text
    assert "usage: qbc collect" in text


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    text = "\n".join(lines)
    # the two set-up commands, exactly
    assert "pip install torch==2.13.0 && pip install -e . && qbc quickstart" in text
    assert 'pip install -e ".[dev,ray,robotics]" && pytest -q' in text
    for link in ("docs/getting-started.md", "docs/guide/", "docs/results/"):
        assert link in text, link


def test_mkdocs_is_in_the_dev_and_docs_extras():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in ("docs", "dev"):
        names = " ".join(extras[extra])
        assert "mkdocs-material" in names and "mkdocstrings[python]" in names, extra


def test_the_tensorboard_extra_brings_the_viewer():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = [re.split(r"[<>=\[ ]", r)[0] for r in extras["tensorboard"]]
    assert "tensorboard" in names and "tensorboardX" in names
    assert "tensorboard --logdir" in (ROOT / "docs" / "guide" / "training.md").read_text()
