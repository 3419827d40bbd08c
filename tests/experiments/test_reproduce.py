"""The reproduce-all tool (qbc.experiments.reproduce, scripts/reproduce_results.py)."""

import dataclasses

import pytest
from in_process import run_python
from repository import ROOT

from qbc.errors import UnknownNameError
from qbc.experiments import reproduce
from qbc.experiments.reproduce import (
    RESULTS,
    RESULTS_DIR,
    compare,
    format_rows,
    load_reference,
    select,
    update_reference,
    within,
)


def test_every_results_folder_is_a_registered_result_with_a_reference():
    # Folders holding results (anything beyond an index README) are exactly the registered ones.
    folders = {p.parent.relative_to(RESULTS_DIR).as_posix() for p in RESULTS_DIR.rglob("*")
               if p.is_file() and not (p.name == "README.md" and p.parent.name in ("results",
                                                                                  "sweeps"))}
    published = {name for name, result in RESULTS.items() if not result.pending}
    assert folders - published == {name for name, r in RESULTS.items()
                                   if r.pending and r.folder.is_dir()}
    assert published <= folders
    for result in (r for r in RESULTS.values() if r.pending and r.folder.is_dir()):
        # a pending result's folder keeps only an unfinished run's progress and a note on it
        kept = {p.name for p in result.folder.iterdir()}
        assert kept <= {*result.progress, "README.md"} and kept & set(result.progress), kept
    for result in (r for r in RESULTS.values() if not r.pending):
        ref = load_reference(result)
        for mode in ("quick", "full"):
            assert ref[mode]["values"], (result.name, mode)
            assert ref[mode]["commit"] and ref[mode]["date"], (result.name, mode)
            assert ref[mode]["commands"] == list(getattr(result, mode)), (result.name, mode)


def test_a_pending_result_has_no_folder_until_its_first_full_run(tmp_path, monkeypatch):
    # Registered with its commands and headline reader, published by the lead's first full run
    # with --update (which makes the folder); until then a run without names leaves it out.
    monkeypatch.setattr(reproduce, "RESULTS_DIR", tmp_path)
    pending = dataclasses.replace(RESULTS["multimodal_ledger"], name="not_yet", pending=True)
    monkeypatch.setitem(RESULTS, "not_yet", pending)
    assert "not_yet" in [r.name for r in RESULTS.values() if r.pending]
    assert not pending.folder.exists()
    assert pending not in select([]) and select(["not_yet"]) == [pending]  # by name
    path = update_reference(pending, "quick", {"success[x]": 1.0})
    assert path == tmp_path / "not_yet" / "reference.json"
    assert load_reference(pending)["quick"]["values"]["success[x]"]["value"] == 1.0


def test_a_full_run_of_a_pending_result_continues_from_the_progress_kept(tmp_path,
                                                                         monkeypatch):
    # the files of an unfinished full run kept in the result's folder are copied into the output
    # folder before the commands run (which see them); a quick run starts afresh
    monkeypatch.setattr(reproduce, "RESULTS_DIR", tmp_path / "results")
    script = ("python -c \"import pathlib, sys; out = pathlib.Path(sys.argv[1]); "
              "(out / 'seen.txt').write_text(str((out / 'results.csv').exists()))\" {out}")
    study = dataclasses.replace(RESULTS["learner_vs_floor_six_envs"], full=(script,),
                                quick=(script,), headline=lambda out: {})
    study.folder.mkdir(parents=True)
    (study.folder / "results.csv").write_text("env,seed\nqbc/ScalarUnstable-v0,0\n")
    reproduce.run_result(study, "full", tmp_path / "full")
    assert (tmp_path / "full" / "seen.txt").read_text() == "True"
    assert (tmp_path / "full" / "results.csv").read_text() == (
        study.folder / "results.csv").read_text()
    assert "continuing from results.csv" in (tmp_path / "full.log").read_text()
    reproduce.run_result(study, "quick", tmp_path / "quick")
    assert (tmp_path / "quick" / "seen.txt").read_text() == "False"


def test_within_checks_tolerance_and_bounds():
    ref = {"value": 3.6, "rtol": 0.1, "atol": 0.0, "max": 5.0}
    assert within(3.9, ref)
    assert not within(4.1, ref)  # outside 10%
    assert not within(float("nan"), ref)
    assert not within(5.2, {**ref, "rtol": 1.0})  # inside the tolerance, above the bound
    assert not within(0.3, {"value": 0.5, "rtol": 1.0, "min": 0.4})


def test_compare_flags_missing_and_moved_numbers():
    result = RESULTS["counterexample"]
    stored = load_reference(result)["quick"]["values"]
    now = {k: v["value"] for k, v in stored.items()}
    assert all(r["ok"] for r in compare(result, "quick", now))
    key = next(k for k in now if k.startswith("model_loss_over_eps"))
    moved = {**now, key: 27.3}  # the eps = 0.01 regression of issue 15
    rows = compare(result, "quick", moved)
    assert [r["key"] for r in rows if not r["ok"]] == [key]
    missing = dict(now)
    missing.pop(key)
    assert [r["key"] for r in compare(result, "quick", missing) if not r["ok"]] == [key]
    assert "NO" in format_rows(rows)


def test_unknown_result_is_refused():
    with pytest.raises(UnknownNameError, match="Valid result names"):
        select(["no-such-result"])


@pytest.mark.slow
def test_quick_counterexample_reproduces_its_stored_numbers(tmp_path, children_in_process):
    # The seconds-long parts of `--quick`; the sweeps run before results are published. The
    # script and the commands it runs run in this process (conftest's children_in_process).
    done = run_python(["scripts/reproduce_results.py", "--quick", "--only", "counterexample",
                       "quantized_expert_scaling", "--out", str(tmp_path)], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "within tolerance" in done.stdout
    assert " NO" not in done.stdout
