"""qbc sweep with chunk policies: chunk tokenizer, chunk length k and execution mode as axes.

The shipped quick config (scripts/sweeps/quick/chunking.toml: 2 tokenizers x k in {1, 4} = 4
cells, 2 execution modes, 2 horizons) is run once; every chunk policy must be trained once
(training calls counted), give one row per (execution mode, H), and a rerun must train nothing.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from repository import ROOT

import qbc.sweep.chunk_runner as chunk_runner
from qbc.cli import main
from qbc.errors import InvalidValueError
from qbc.sweep import expand_cells, load_spec, read_table, run_sweep, spec_from_dict, write_report
from qbc.sweep.spec import tomllib
from qbc.sweep.table import COLUMNS, append_rows

QUICK = ROOT / "scripts" / "sweeps" / "quick" / "chunking.toml"
N_CELLS, MODES, HORIZONS = 4, ("open-loop", "receding:1"), (10, 30)


def quick_doc() -> dict:
    return tomllib.loads(QUICK.read_text())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The quick config run once (training calls counted), then run again."""
    root = tmp_path_factory.mktemp("chunk-sweep")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    calls: list[tuple[str, int]] = []
    real = chunk_runner.train_chunked

    def counting(cfg, demos):
        calls.append((cfg.chunk_tokenizer, cfg.chunk_k))
        return real(cfg, demos)

    mp = pytest.MonkeyPatch()
    mp.setattr(chunk_runner, "train_chunked", counting)
    try:
        out = root / "sweep"
        first = run_sweep(load_spec(QUICK), out, progress=False)
        trained_first = list(calls)
        again = run_sweep(load_spec(QUICK), out, progress=False)
        yield out, first, again, trained_first, list(calls)
    finally:
        mp.undo()
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@pytest.mark.slow
def test_one_training_per_cell_and_one_row_per_mode_and_horizon(swept):
    out, first, _, trained, _ = swept
    assert len(first.executed) == N_CELLS and not first.failed
    assert sorted(trained) == sorted([("per-step", 1), ("per-step", 4), ("rvq", 1), ("rvq", 4)])
    rows = read_table(out / "results.csv")
    assert len(rows) == N_CELLS * len(MODES) * len(HORIZONS)
    assert len({(r["cell"], r["execution"], r["H"]) for r in rows}) == len(rows)
    assert {r["execution"] for r in rows} == set(MODES)
    assert {r["chunk_len"] for r in rows} == {1, 4}
    assert all(r["policy"] == "chunk-ar-transformer" and r["quantizer"] == "" for r in rows)
    assert all(r["decode_failures"] == 0 and r["decode_failure_rate"] == 0.0
               for r in rows)  # fixed-length codes never fail
    # 8 episodes of 30 steps (none cut short on this stable system): open-loop plans every k
    # steps, receding:1 every step
    plans = {(r["chunk_tokenizer"], r["chunk_len"], r["execution"]): r["chunks_predicted"]
             for r in rows}
    for (_, k, mode), n in plans.items():
        assert n == 8 * (math.ceil(30 / k) if mode == "open-loop" else 30)
    per_step = {r["chunk_len"]: r["tokens_per_chunk"] for r in rows
                if r["chunk_tokenizer"].startswith("per-step")}
    assert per_step[4] == 4 * per_step[1]  # k x D tokens
    # k = 1: open-loop and receding:1 are the same execution, on the same coupled episodes.
    by = {(r["chunk_tokenizer"], r["chunk_len"], r["execution"], r["H"]): r["regret"]
          for r in rows}
    for (tok, k, mode, h), regret in by.items():
        if k == 1:
            assert regret == by[(tok, k, "receding:1" if mode == "open-loop" else "open-loop", h)]
    # the chunk floor of every row: the expert's plans through the cell's tokenizer, same mode
    floor = {(r["chunk_tokenizer"], r["chunk_len"], r["execution"], r["H"]): r["floor_regret"]
             for r in rows}
    assert all(np.isfinite(v) for v in floor.values())
    assert all(r["floor_diverged_fraction"] == 0 for r in rows)  # LQR plans on a stable system
    for (tok, k, mode, h), regret in floor.items():
        if k == 1:  # a 1-action plan is the quantized expert's action, whatever the mode
            assert regret == floor[(tok, k, "receding:1" if mode == "open-loop" else "open-loop",
                                    h)]
        else:  # re-planning every step cannot be worse than open-loop by much here
            assert floor[(tok, k, "receding:1", h)] <= floor[(tok, k, "open-loop", h)] + 1e-9


@pytest.mark.slow
def test_rerun_skips_finished_cells_without_training(swept):
    _, _, again, trained_first, trained_all = swept
    assert again.executed == [] and again.skipped == N_CELLS
    assert trained_all == trained_first


@pytest.mark.slow
def test_report_groups_by_tokenizer_k_and_mode(swept):
    out = swept[0]
    report = write_report(out)
    summary = report["summary"]
    assert len(summary) == N_CELLS * len(MODES) * len(HORIZONS)  # one seed: nothing merged
    assert {(s["chunk_len"], s["execution"]) for s in summary} == {
        (k, m) for k in (1, 4) for m in MODES}
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"chunk_tokenizer", "chunk_len", "execution", "tokens_per_chunk",
            "decode_failures", "decode_failure_rate", "floor_regret",
            "floor_diverged_fraction"} <= set(header)
    assert (out / "regret_vs_chunk_len.png").is_file()


def test_keys_hold_k_tokenizer_and_modes():
    cells = expand_cells(load_spec(QUICK))
    assert len({c.key for c in cells}) == N_CELLS
    assert {(c.chunk_len, c.chunk_tokenizer_label) for c in cells} == {
        (k, t) for k in (1, 4) for t in ("per-step(n_bins=16,quantizer=uniform)", "rvq")}
    doc = quick_doc()
    doc["grid"]["chunk_lens"] = [4, 16]  # the k = 4 cells keep their keys; k = 16 are new
    again = {c.key for c in expand_cells(spec_from_dict(doc))}
    assert again & {c.key for c in cells} == {c.key for c in cells if c.chunk_len == 4}
    doc = quick_doc()
    doc["grid"]["executions"] = ["receding:1", "open-loop"]  # order does not matter
    assert {c.key for c in expand_cells(spec_from_dict(doc))} == {c.key for c in cells}
    doc["grid"]["executions"] = ["open-loop"]  # other modes: other rows, so new keys
    assert not {c.key for c in expand_cells(spec_from_dict(doc))} & {c.key for c in cells}


def test_per_step_policies_ignore_chunk_axes():
    doc = quick_doc()
    doc["grid"]["quantizers"] = ["uniform", "smooth"]
    doc["train"]["policies"] = ["ar-transformer", "quantized-expert", "chunk-mlp-l1"]
    cells = expand_cells(spec_from_dict(doc))
    step = [c for c in cells if not c.chunk_len]
    assert len(step) == 2 and all(c.policies == ["ar-transformer", "quantized-expert"]
                                  for c in step)
    l1 = [c for c in cells if c.chunk_len]  # one per k, no tokenizer, no bins
    assert sorted(c.chunk_len for c in l1) == [1, 4]
    assert all(c.policies == ["chunk-mlp-l1"] and c.bins == 0 for c in l1)


@pytest.mark.parametrize("key, value, words", [
    ("chunk_lens", [0, 4], "chunk_lens"),
    ("chunk_lens", ["4"], "chunk_lens"),
    ("executions", ["open-loop", "sometimes"], "executions"),
    ("executions", ["receding:4"], "receding:M with M <= 1"),
    ("executions", ["ensemble:0.1", "ensemble:0.10"], "twice"),
    ("chunk_tokenizers", ["fats"], "'fast'"),
    ("chunk_tokenizers", [{"name": "rvq", "params": {"levles": 2}}], "levels"),
    ("chunk_tokenizers", [{"name": "rvq", "parms": {}}], "'params'"),
])
def test_bad_chunk_axis_values_are_one_line_naming_the_key(key, value, words):
    doc = quick_doc()
    doc["grid"][key] = value
    with pytest.raises(InvalidValueError) as info:
        spec_from_dict(doc)
    msg = str(info.value)
    assert key in msg and words in msg and "\n" not in msg


def test_cli_bad_execution_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(QUICK.read_text().replace('"receding:1"', '"receding:one"'))
    assert main(["sweep", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "executions" in err and "receding:one" in err


def test_old_tables_read_new_columns_as_empty_and_take_new_rows(tmp_path):
    path = tmp_path / "results.csv"
    old_columns = [c for c in COLUMNS if c not in (
        "chunk_tokenizer", "chunk_len", "execution", "tokens_per_chunk", "decode_failures",
        "chunks_predicted", "decode_failure_rate")]
    path.write_text(",".join(old_columns) + "\n"
                    + ",".join({"cell": "a", "policy": "p", "H": "5", "regret": "0.25"}.get(c, "")
                               for c in old_columns) + "\n")
    (old,) = read_table(path)
    assert old["regret"] == 0.25 and old["chunk_len"] is None and old["execution"] == ""
    append_rows(path, [{"cell": "b", "policy": "q", "H": 5, "regret": 0.5, "chunk_len": 4,
                        "execution": "open-loop"}])
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    a, b = read_table(path)
    assert a == old and (b["chunk_len"], b["execution"], b["regret"]) == (4, "open-loop", 0.5)


@pytest.mark.slow
def test_rows_time_decoding_and_the_comparison_readme_lists_every_setting(swept):
    from qbc.experiments.chunking_report import policy_label, read_summary, write_readme

    out = swept[0]
    assert all(r["decode_actions_per_s"] > 0 for r in read_table(out / "results.csv"))
    write_report(out)
    text = write_readme(out).read_text()
    last = [r for r in read_summary(out) if r["H"] == max(HORIZONS)]
    assert len(last) == N_CELLS * len(MODES)
    for r in last:
        assert f"| {policy_label(r)} | {r['chunk_len']} | {r['execution']} |" in text
    assert "| chunk floor | learner / floor |" in text
    assert "qbc/LinearStable-v0 (open-loop stable)" in text
