"""qbc sweep: grid expansion and keys, resumable result table, process pool, Ray, report, CLI.

One tiny 2 x 2 sweep (ScalarStable, quantizers uniform/smooth x seeds 0/1, 20 training steps,
8 episodes, H <= 30) is run once in-process as the reference; the other backends and the
killed-then-resumed run must reproduce its table exactly (time columns aside).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from repository import ROOT

from qbc.cli import main
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.sweep import (
    TIME_COLUMNS,
    expand_cells,
    load_spec,
    read_table,
    run_sweep,
    spec_from_dict,
    write_report,
)
from qbc.sweep.entries import normalize_env
from qbc.sweep.spec import experts_of, tomllib
from qbc.sweep.table import append_rows

parse_toml = tomllib.loads

TINY = """
[grid]
envs = ["qbc/ScalarStable-v0"]
quantizers = ["uniform", "smooth"]
bins = 8
n_demos = 6
seeds = [0, 1]
horizons = [10, 20, 30]

[data]
episode_steps = 30

[train]
policies = ["ar-transformer", "quantized-expert"]
steps = 20
batch_size = 32
eval_interval = 20
model = {d_model = 16, n_layers = 1, n_heads = 2}

[rollout]
episodes = 8
num_envs = 8
"""
N_CELLS, N_ROWS = 4, 4 * 2 * 3 + 2 * 3  # cells x policies x horizons, + smooth's nearest floor
ROWS_PER_CELL = {"uniform": 2 * 3, "smooth": 3 * 3}


def comparable(path: Path) -> list[dict]:
    """Rows without the time columns, sorted by (cell, policy, H)."""
    rows = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_table(path)]
    return sorted(rows, key=lambda r: (r["cell"], r["policy"], r["H"]))


@pytest.fixture(scope="module")
def env_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    config = root / "tiny.toml"
    config.write_text(TINY)
    yield root, config
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="module")
def reference(env_dirs):
    """The 2 x 2 sweep run once, in this process, one worker."""
    root, config = env_dirs
    out = root / "reference"
    result = run_sweep(load_spec(config), out, workers=1, progress=False)
    return out, result


# -- spec and cells --------------------------------------------------------------------------------
def test_cells_keys_and_dataset_cache_keys(env_dirs):
    _, config = env_dirs
    spec = load_spec(config)
    cells = expand_cells(spec)
    assert len(cells) == N_CELLS
    assert len({c.key for c in cells}) == N_CELLS
    # The dataset does not depend on the quantizer: 2 datasets (one per seed) for 4 cells.
    assert len({c.dataset.dataset_id for c in cells}) == 2
    assert all(c.dataset.dataset_id.startswith("qbc-sweep/") for c in cells)
    # Keys depend on content, not on the order the grid lists its values in.
    doc = parse_toml(TINY)
    doc["grid"]["quantizers"] = ["smooth", "uniform"]
    doc["grid"]["seeds"] = [1, 0]
    assert {c.key for c in expand_cells(spec_from_dict(doc))} == {c.key for c in cells}
    # ...and any setting that changes the numbers makes new keys.
    doc["train"]["steps"] = 21
    assert not {c.key for c in expand_cells(spec_from_dict(doc))} & {c.key for c in cells}


@pytest.mark.parametrize("table, key, hint", [
    ("train", "stpes", "steps"),
    ("grid", "quantiser", "quantizers"),
    ("rollout", "episode", "episodes"),
])
def test_unknown_key_names_key_and_closest_match(table, key, hint):
    doc = parse_toml(TINY)
    doc[table][key] = 1
    with pytest.raises(InvalidValueError) as info:
        spec_from_dict(doc)
    msg = str(info.value)
    assert repr(key) in msg and f"Did you mean {hint!r}" in msg and "\n" not in msg


def test_bad_names_and_values_are_refused():
    doc = parse_toml(TINY)
    doc["grid"]["quantizers"] = ["unifrom"]
    with pytest.raises(UnknownNameError, match="uniform"):
        spec_from_dict(doc)
    doc = parse_toml(TINY)
    doc["train"]["model"] = {"d_modle": 8}
    with pytest.raises(InvalidValueError, match="d_model"):
        spec_from_dict(doc)
    doc = parse_toml(TINY)
    doc["grid"]["bins"] = [8, "16"]
    with pytest.raises(InvalidValueError, match="integer"):
        spec_from_dict(doc)


@pytest.mark.parametrize("config", sorted((ROOT / "scripts" / "sweeps").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_shipped_configs_are_valid_and_the_size_they_say(config):
    spec = load_spec(config)
    cells = expand_cells(spec)
    g, policies = spec.grid, spec.train.policies
    pairs = sum(len(experts_of(spec, normalize_env(env)["name"]))  # (env variant, expert)
                for env in g.envs)
    per_step = any(not p.startswith("chunk-") for p in policies) * len(g.quantizers) * len(g.bins)
    chunk_ar = ("chunk-ar-transformer" in policies) * len(g.chunk_tokenizers) * len(g.bins)
    chunk_l1 = "chunk-mlp-l1" in policies
    assert len(cells) == pairs * len(g.n_demos) * len(g.seeds) * (
        per_step + (chunk_ar + chunk_l1) * len(g.chunk_lens))
    header = " ".join(config.read_text().splitlines()[:8])
    stated = [int(n) for n in re.findall(r"= (\d+) cells", header)]  # "... x 3 seeds = 18 cells"
    assert stated == [len(cells)], f"the header of {config.name} gives {stated} cells"


def test_cli_unknown_key_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("steps = 20", "stepz = 20"))
    assert main(["sweep", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'stepz'" in err and "'steps'" in err
    assert not (tmp_path / "o" / "results.csv").exists()


# -- the table -------------------------------------------------------------------------------------
def test_append_is_whole_and_reads_back_exactly(tmp_path):
    path = tmp_path / "results.csv"
    rows = [{"cell": "a", "policy": "p", "H": h, "regret": float(np.float64(1 / 3) * h),
             "val_loss": None} for h in (1, 2)]
    append_rows(path, rows)
    append_rows(path, [{**rows[0], "cell": "b"}])
    back = read_table(path)
    assert [r["cell"] for r in back] == ["a", "a", "b"]
    assert back[1]["regret"] == rows[1]["regret"] and back[0]["val_loss"] is None
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


# -- running -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sweep_runs_every_cell_once_and_rerun_does_nothing(env_dirs, reference):
    root, config = env_dirs
    out, first = reference
    assert len(first.executed) == N_CELLS and first.skipped == 0 and not first.failed
    rows = read_table(out / "results.csv")
    assert len(rows) == N_ROWS
    assert {r["policy"] for r in rows} == {"ar-transformer", "quantized-expert",
                                           "quantized-expert-nearest"}
    # the nearest-rounding floor (argmax's) is a row of the smooth cells only
    assert {r["quantizer"] for r in rows if r["policy"] == "quantized-expert-nearest"} == {
        "smooth"}
    assert all(np.isfinite(r["regret"]) and r["regret_ci_lo"] <= r["regret"] <= r["regret_ci_hi"]
               for r in rows)
    assert all(r["val_loss"] is not None for r in rows if r["policy"] == "ar-transformer")
    assert (out / "sweep_config.json").is_file()
    before = (out / "results.csv").read_bytes()
    again = run_sweep(load_spec(config), out, workers=1, progress=False)
    assert again.executed == [] and again.skipped == N_CELLS and again.datasets_collected == 0
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.slow
def test_same_seed_same_numbers_and_quantizers_differ(reference):
    rows = comparable(reference[0] / "results.csv")
    by = {(r["quantizer"], r["seed"], r["policy"], r["H"]): r["regret"] for r in rows}
    # smooth's stochastic rounding changes the quantized expert's trajectory: not the same
    # numbers as uniform (a check that the quantizer reaches the rollout).
    assert by[("uniform", 0, "quantized-expert", 30)] != by[("smooth", 0, "quantized-expert", 30)]
    # and the nearest-rounding floor is another actor than the stochastic one
    assert by[("smooth", 0, "quantized-expert-nearest", 30)] != by[
        ("smooth", 0, "quantized-expert", 30)]


@pytest.mark.slow
def test_workers_2_gives_the_same_table(env_dirs, reference):
    root, config = env_dirs
    out = root / "pool"
    result = run_sweep(load_spec(config), out, workers=2, progress=False)
    assert len(result.executed) == N_CELLS and not result.failed
    assert comparable(out / "results.csv") == comparable(reference[0] / "results.csv")


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_table(env_dirs, reference):
    root, config = env_dirs
    out = root / "killed"
    cmd = [sys.executable, "-m", "qbc.cli", "sweep", "--config", str(config), "--out", str(out),
           "--no-report", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = out / "results.csv"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if table.is_file() and len(table.read_text().splitlines()) > 1:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_at_kill = {r["cell"] for r in read_table(table)}
    assert 1 <= len(done_at_kill) < N_CELLS, "the sweep was not interrupted after its first cell"
    rows_at_kill = read_table(table)
    quantizer_of = {r["cell"]: r["quantizer"] for r in rows_at_kill}
    assert len(rows_at_kill) == sum(ROWS_PER_CELL[quantizer_of[c]] for c in done_at_kill)
    resumed = run_sweep(load_spec(config), out, workers=1, progress=False)
    assert resumed.skipped == len(done_at_kill)
    assert len(resumed.executed) == N_CELLS - len(done_at_kill)
    assert comparable(table) == comparable(reference[0] / "results.csv")


@pytest.mark.slow
def test_ray_backend_gives_the_same_table(env_dirs, reference):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra qbc[ray]")
    root, config = env_dirs
    out = root / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(load_spec(config), out, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert len(result.executed) == N_CELLS and not result.failed
    assert comparable(out / "results.csv") == comparable(reference[0] / "results.csv")


def test_failed_cell_writes_nothing_and_is_retried(env_dirs, monkeypatch, tmp_path):
    """Orchestration alone (run_cell replaced by a fake): a failing cell leaves no rows and an
    error.txt; the next run retries only that cell; a changed grid keeps old rows as stale."""
    import qbc.sweep.run as run_mod

    _, config = env_dirs
    calls = []

    def fake_run_cell(cell, work_root, demos=None):
        calls.append(cell["seed"])
        if cell["quantizer"] == "smooth" and cell["seed"] == 1 and len(calls) <= N_CELLS:
            raise FloatingPointError("boom")
        key = run_mod.Cell(**cell).key
        return {"cell": key, "rows": [{"cell": key, "policy": "p", "H": 1,
                                       "regret": float(cell["seed"])}], "seconds": 0.0}

    monkeypatch.setattr(run_mod, "run_cell", fake_run_cell)
    monkeypatch.setattr(run_mod, "ensure_dataset", lambda ds, **kwargs: False)
    out = tmp_path / "s"
    first = run_sweep(load_spec(config), out, progress=False)
    assert len(first.executed) == N_CELLS - 1 and len(first.failed) == 1
    (bad,) = first.failed
    assert "FloatingPointError: boom" in first.failed[bad]
    assert "boom" in (out / "cells" / bad / "error.txt").read_text()
    assert bad not in {r["cell"] for r in read_table(out / "results.csv")}
    second = run_sweep(load_spec(config), out, progress=False)
    assert second.executed == [bad] and not second.failed
    assert len(read_table(out / "results.csv")) == N_CELLS
    doc = parse_toml(TINY)
    doc["grid"]["seeds"] = [0]
    third = run_sweep(spec_from_dict(doc), out, progress=False)
    assert third.executed == [] and third.skipped == 2 and third.stale == 2


def test_second_sweep_in_the_same_directory_is_refused(env_dirs, tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="the directory lock is POSIX only")
    _, config = env_dirs
    with open(tmp_path / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(InvalidValueError, match="another qbc sweep is running"):
            run_sweep(load_spec(config), tmp_path, progress=False)
    assert not (tmp_path / "results.csv").exists()


def test_ray_missing_is_one_clear_error(env_dirs, monkeypatch, tmp_path):
    _, config = env_dirs
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InvalidValueError, match=r'pip install "qbc\[ray\]"'):
        run_sweep(load_spec(config), tmp_path / "o", backend="ray", progress=False)


# -- report ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_report_aggregates_over_seeds_and_plots(reference, capsys):
    out = reference[0]
    assert main(["sweep", "report", str(out)]) == 0
    assert "regret ~ H^" in capsys.readouterr().out
    assert (out / "report.md").read_text().count("\n| qbc/ScalarStable-v0") >= 12
    assert (out / "regret_vs_H.png").stat().st_size > 1000
    report = write_report(out)
    rows = read_table(out / "results.csv")
    for s in report["summary"]:
        same = [r["regret"] for r in rows if r["quantizer"] == s["quantizer"]
                and r["policy"] == s["policy"] and r["H"] == s["H"]]
        assert s["n_seeds"] == len(same) == 2
        assert s["regret_mean"] == pytest.approx(np.mean(same))
        assert s["regret_ci_lo"] <= s["regret_mean"] <= s["regret_ci_hi"]


def test_sweep_report_says_which_smooth_floor_its_quantized_expert_rows_are():
    from qbc.sweep.report import _floor_note

    smooth = {"policy": "quantized-expert", "quantizer": "smooth"}
    assert "round stochastically" in " ".join(_floor_note([smooth]))
    assert "is not in this table" in " ".join(_floor_note([smooth]))  # a sweep made before
    nearest = {**smooth, "policy": "quantized-expert-nearest"}
    assert "nearest rounding: the floor of an argmax" in " ".join(_floor_note([smooth, nearest]))
    assert _floor_note([{**smooth, "quantizer": "uniform"}, {**smooth, "policy": "mlp"}]) == []


def test_sweep_report_gives_no_interval_for_one_seed_and_explains_no_growth():
    from qbc.sweep.report import aggregate, growth_fits, markdown

    base = {"env": "qbc/ScalarStable-v0", "expert": "lqr", "quantizer": "uniform", "bins": 16,
            "n_demos": 50, "bin_width": 0.1, "state_dev_mean": 0.01, "diverged_fraction": 0.0}
    rows = [{**base, "policy": "flat", "seed": 0, "H": h, "regret": 1.0} for h in (10, 50, 200)]
    rows += [{**base, "policy": "grows", "seed": s, "H": h, "regret": h * (1 + 0.1 * s)}
             for s in (0, 1) for h in (10, 50, 200)]
    summary = aggregate(rows)
    fits = growth_fits(summary)
    text = markdown(summary, fits, "here")
    one = [ln for ln in text.splitlines() if "| flat |" in ln and "| 200 |" in ln]
    assert one and "1 (1 seed)" in one[0] and "[1, 1]" not in one[0]  # no zero-width interval
    two = [ln for ln in text.splitlines() if "| grows |" in ln and "| 200 |" in ln]
    assert "(1 seed)" not in two[0] and "[" in two[0]  # two seeds: an interval
    assert "With one seed there is no interval over seeds" in text
    assert {f["policy"]: f["better"] for f in fits}["flat"] == "no growth detected"
    assert '"no growth detected" replaces the better fit' in text
    both = markdown(summary, [f for f in fits if f["policy"] == "grows"], "here")
    assert "no growth detected" not in both  # said only where a fit says it
