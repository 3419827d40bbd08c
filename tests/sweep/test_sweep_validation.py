"""Sweeps refuse bad cell settings before they start (nothing created), ``qbc sweep report``
refuses a damaged results table in one line, and two sweeps sharing the dataset cache wait for
each other instead of failing on the dataset lock."""

from __future__ import annotations

import threading

import pytest
from repository import ROOT
from sweep_files import BASE
from sweep_files import sweep_doc as _doc

from qbc.cli import main
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.sweep.spec import spec_from_dict


@pytest.mark.parametrize("edits, words", [
    ({"train__lr": float("inf")}, ["[train] lr", "inf"]),
    ({"train__warmup_steps": -5}, ["[train] warmup_steps", "-5"]),
    ({"data__expert_noise": float("inf")}, ["[data] expert_noise", "inf"]),
    ({"data__expert_noise": float("nan")}, ["[data] expert_noise", "nan"]),
    ({"train__quantile": 0.7}, ["[train] quantile"]),
    ({"rollout__divergence_threshold": float("inf")}, ["[rollout] divergence_threshold"]),
    ({"train__model": {"d_model": 0}}, ["[train] model", "d-model", "got 0"]),
    ({"train__model": {"d_model": "abc"}}, ["[train] model", "'abc'"]),
    ({"train__model": {"d_model": 16, "n_heads": 3}}, ["divisible"]),
    ({"train__policies": ["chunk-ar-transformer"], "grid__chunk_lens": [25]},
     ["chunk_lens [25]", "20-step episodes"]),
    # 'sampled' draws smooth's tokens; a deterministic quantizer's cells were silently trained
    # one-hot instead (the runner's mapping, gone): refused as qbc train refuses it
    ({"train__token_target": "sampled", "grid__quantizers": ["uniform", "smooth"]},
     ["token_target 'sampled'", "['uniform', 'smooth']", "one-hot"]),
])
def test_bad_cell_settings_are_refused_when_the_file_is_read(edits, words):
    with pytest.raises(InvalidValueError) as info:
        spec_from_dict(_doc(**edits), source="s.toml")
    assert all(w in str(info.value) for w in words), str(info.value)


def test_the_sweep_command_refuses_before_creating_anything(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(BASE.replace("steps = 5", "steps = 5\nlr = inf"))
    out = tmp_path / "new" / "sweep"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "[train] lr" in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists()


def test_shipped_sweep_configs_still_pass():
    from qbc.sweep import load_spec

    for path in sorted((ROOT / "scripts" / "sweeps").rglob("*.toml")):
        load_spec(path)


# -- results tables --------------------------------------------------------------------------------
def _table(tmp_path):
    from qbc.sweep.table import append_rows

    path = tmp_path / "results.csv"
    append_rows(path, [{"cell": "a", "policy": "p", "H": 10, "regret": 1.5}])
    append_rows(path, [{"cell": "b", "policy": "p", "H": 10, "regret": 2.25}])
    return path


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[:-3], "cut mid-row"),          # '2.' of '2.25' left: read as 2.0 before
    (lambda b: b[:-1], "cut mid-row"),
    (lambda b: b"\x00\xff\xfe" + b[3:], "not a text CSV table"),
    (lambda b: bytes(range(256)) * 4, "not a text CSV table"),
    (lambda b: b + b"c,,,\n", "line 4"),          # a row with too few fields
    (lambda b: b.replace(b"1.5", b"1.5,7"), "line 2"),  # one too many
    (lambda b: b.replace(b"1.5", b"abc"), "line 2 cannot be read .regret 'abc' is not a number"),
    (lambda b: b.replace(b"10,2.25", b"-3,2.25"), "H '-3' is not a horizon >= 1"),  # was read
    (lambda b: b.replace(b"10,2.25", b",2.25"), "H '' is not a horizon >= 1"),
])
def test_a_damaged_results_table_is_one_corrupt_file_error(tmp_path, damage, words):
    from qbc.sweep.table import read_table

    path = _table(tmp_path)
    assert [r["regret"] for r in read_table(path)] == [1.5, 2.25]
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptFileError, match=words):
        read_table(path)


def test_sweep_report_on_a_cut_table_is_one_line(tmp_path, capsys):
    path = _table(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    assert main(["sweep", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cut mid-row" in err and err.count("\n") == 1, err


# -- the shared dataset cache ----------------------------------------------------------------------
FIRST_SWEEP = """
import sys
from qbc.data import dataset_lock
from qbc.sweep import load_spec
from qbc.sweep.cells import expand_cells, needed_datasets
from qbc.sweep.runner import _collect_missing

(ds,) = needed_datasets(expand_cells(load_spec(sys.argv[1])))
with dataset_lock(ds.dataset_id):
    print("locked", flush=True)
    sys.stdin.readline()  # the test says when to go on
    assert _collect_missing(ds, num_envs=2)
print("done", flush=True)
"""


@pytest.mark.slow
def test_a_second_sweep_waits_for_the_dataset_lock_and_reuses_the_dataset(tmp_path):
    import os
    import subprocess
    import sys

    from qbc.data import dataset_exists, dataset_path
    from qbc.sweep import load_spec
    from qbc.sweep.cells import expand_cells, needed_datasets
    from qbc.sweep.runner import ensure_dataset

    config = tmp_path / "s.toml"
    config.write_text(BASE)
    (ds,) = needed_datasets(expand_cells(load_spec(config)))
    outcome = {}

    def second_sweep():
        try:
            outcome["collected"] = ensure_dataset(ds, num_envs=2)
        except Exception as exc:  # noqa: BLE001  (recorded for the assertion)
            outcome["error"] = exc

    first = subprocess.Popen([sys.executable, "-c", FIRST_SWEEP, str(config)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari")})
    try:
        assert first.stdout.readline().strip() == "locked"  # the first sweep holds the lock
        thread = threading.Thread(target=second_sweep)
        thread.start()
        thread.join(timeout=1)  # the second sweep is blocked on the lock by now
        assert "error" not in outcome, outcome
        first.stdin.write("go\n")
        first.stdin.flush()
        assert first.stdout.readline().strip() == "done"
    finally:
        first.communicate(timeout=120)
    thread.join()
    assert first.returncode == 0
    assert outcome == {"collected": False}  # waited, then reused the first sweep's dataset
    assert dataset_exists(ds.dataset_id)
    assert dataset_path(ds.dataset_id).is_dir()
