"""The ledger (qbc.experiments.multimodal.ledger, scripts/multimodal_ledger.py) on its quick
configuration: every (env, seed, learner) cell has its rows and floors, finished cells are kept
on a re-run, other settings into the same folder are refused, and the paragraph's verdicts
follow the intervals."""

from __future__ import annotations

import pytest
from in_process import run_python
from repository import ROOT

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.experiments.multimodal import LedgerConfig, ledger_headline, run_ledger
from qbc.experiments.multimodal.ledger import cell_path
from qbc.experiments.multimodal.summary import env_verdicts, paragraph, summarize
from qbc.experiments.reproduce import RESULTS

DETOUR = "qbc/DetourStable-v0"
QUICK = {"envs": (DETOUR,), "learners": ("mlp-mse", "ar-transformer:uniform",
                                         "chunk-ar-transformer"), "quick": True}


@pytest.mark.slow
def test_quick_ledger_rows_floors_and_resume(tmp_path, one_torch_thread):
    lines: list[str] = []
    first = run_ledger(LedgerConfig(out=tmp_path, **QUICK), log=lines.append)
    assert len(lines) == 6 and all("kept" not in line for line in lines)  # 2 seeds x 3
    policies = {r["policy"] for r in first["summary"]}
    assert policies == {"expert", "mlp-mse", "ar-transformer:uniform sample",
                        "q#pi* (uniform/16)", "chunk-ar-transformer sample",
                        "chunk floor (per-step, k=4, receding:1)"}
    by = {s["policy"]: s for s in first["summary"]}
    assert by["expert"]["success"] == 1.0 and by["expert"]["n_seeds"] == 2
    assert by["expert"]["episodes"] == 8  # the expert of each seed counted once
    for s in first["summary"]:
        assert s["success_ci95"][0] <= s["success"] <= s["success_ci95"][1]
        assert sum(s["modes"].values()) == pytest.approx(1.0)
    assert {r["seed"] for r in first["rows"]} == {0, 1}
    text = (tmp_path / "results.md").read_text()
    assert "| qbc/DetourStable-v0 | q#pi* (uniform/16) | 2 |" in text and "mlp-mse's" in text
    # a re-run keeps every cell; a lost cell is run again, to the same numbers
    cell_path(tmp_path, DETOUR, 1, "ar-transformer:uniform").unlink()
    lines.clear()
    again = run_ledger(LedgerConfig(out=tmp_path, **QUICK), log=lines.append)
    assert sum("kept" in line for line in lines) == 5
    assert [line for line in lines if "kept" not in line][0].startswith(
        "[5/6] qbc/DetourStable-v0 seed 1 ar-transformer:uniform: success")
    strip = ("train_seconds",)
    assert ([{k: v for k, v in r.items() if k not in strip} for r in again["rows"]]
            == [{k: v for k, v in r.items() if k not in strip} for r in first["rows"]])
    values = ledger_headline(tmp_path)
    assert values["success[DetourStable-v0,expert]"] == 1.0
    assert "regret[DetourStable-v0,chunk floor (per-step, k=4, receding:1)]" in values
    assert RESULTS["multimodal_ledger"].headline is ledger_headline


@pytest.mark.slow
def test_other_settings_into_the_same_folder_are_refused(tmp_path, one_torch_thread):
    cfg = {**QUICK, "learners": ("mlp-mse",)}
    run_ledger(LedgerConfig(out=tmp_path, **cfg))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidValueError, match="other settings.*chunk_k"):
        run_ledger(LedgerConfig(out=tmp_path, **cfg, chunk_k=2))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    # another learner only adds its cells; the summary holds the cells asked for
    lines: list[str] = []
    two = ("mlp-mse", "mlp-gaussian")
    more = run_ledger(LedgerConfig(out=tmp_path, **{**cfg, "learners": two}), log=lines.append)
    assert [("kept" in line) for line in lines] == [True, False, True, False]
    assert {s["policy"] for s in more["summary"]} == {"expert", "mlp-mse", "mlp-gaussian"}
    lines.clear()
    run_ledger(LedgerConfig(out=tmp_path, overwrite=True, **{**cfg, "learners": ("mlp-gaussian",)}),
               log=lines.append)
    assert len(lines) == 2 and not cell_path(tmp_path, DETOUR, 0, "mlp-mse").exists()


def test_bad_settings_are_refused_before_any_output(tmp_path):
    out = tmp_path / "x"
    for bad, error, match in [({"learners": ("ar-transformer:nope",)}, UnknownNameError,
                               "quantizer"),
                              ({"learners": ("mlp-mse:uniform",)}, InvalidValueError, "no tokens"),
                              ({"learners": ("chunk-ar-transformer:nope",)}, UnknownNameError,
                               "nope"),
                              ({"decodings": ("argmax:0.5",)}, InvalidValueError, "temperature"),
                              ({"seeds": ()}, InvalidValueError, "at least one"),
                              ({"seeds": (0, 0)}, InvalidValueError, "each once"),
                              ({"execute": "sideways"}, InvalidValueError, "--execute"),
                              # ran, then failed after training its chunk learners
                              ({"execute": "receding:9"}, InvalidValueError,
                               "M is longer than --chunk-k 4"),
                              ({"envs": ("qbc/ScalarStable-v0",)}, InvalidValueError,
                               "no scripted expert")]:
        with pytest.raises(error, match=match):
            run_ledger(LedgerConfig(out=out, **bad))
    assert not out.exists()


def _row(policy: str, tokens: bool, successes: int, regret: float, seed: int = 0) -> dict:
    return {"env": "e", "policy": policy, "learner": policy, "role": "learner",
            "decoding": "-", "tokens": tokens, "seed": seed, "episodes": 100,
            "success": successes / 100, "success_ci95": None, "modes": None, "return": 0.0,
            "regret": regret, "regret_ci95": [regret - 0.1, regret + 0.1], "ended_early": 0.0}


@pytest.mark.parametrize("token, plain, verdict", [(95, 10, "tokens win"),
                                                   (50, 55, "inconclusive"),
                                                   (20, 90, "tokens cost")])
def test_the_paragraph_follows_the_intervals(token, plain, verdict):
    rows = [_row("tok", True, token, 1.0, s) for s in (0, 1, 2)]
    rows += [_row("tok-worse", True, token - 5, 2.0, s) for s in (0, 1, 2)]
    rows += [_row("mlp-mse", False, plain, 5.0 + s, s) for s in (0, 1, 2)]
    summary = summarize(rows)
    (v,) = env_verdicts(summary)
    assert v["best"]["policy"] == "tok" and v["verdict"] == verdict
    assert v["lo"] <= v["diff"] <= v["hi"]
    assert v["diff"] == pytest.approx((token - plain) / 100)
    assert v["regret_verdict"] == "lower with tokens"
    assert verdict in paragraph(summary)


@pytest.mark.slow  # about 25 s: PointMaze's quick cells
def test_robotics_cells_have_success_and_no_modes(tmp_path, one_torch_thread):
    pytest.importorskip("gymnasium_robotics")
    result = run_ledger(LedgerConfig(out=tmp_path, envs=("qbc/PointMaze_Medium-v3",),
                                     learners=("mlp-mse", "chunk-ar-transformer"), quick=True))
    policies = {s["policy"] for s in result["summary"]}
    # no noise-free model to plan on: no chunk floor
    assert policies == {"expert", "mlp-mse", "chunk-ar-transformer sample"}
    assert all(s["modes"] is None and s["success"] is not None for s in result["summary"])
    assert "| n/a |" in (tmp_path / "results.md").read_text()


@pytest.mark.slow
def test_script_runs_the_quick_ledger(tmp_path):
    done = run_python(  # in this process, as a fresh interpreter would run it
        ["scripts/multimodal_ledger.py", "--quick", "--envs", DETOUR,
         "--learners", "mlp-mse", "ar-transformer:kmeans", "--out", str(tmp_path)],
        cwd=ROOT, env={"MINARI_DATASETS_PATH": str(tmp_path / "minari")})
    assert done.returncode == 0, done.stderr
    assert "[4/4] qbc/DetourStable-v0 seed 1 ar-transformer:kmeans: success" in done.stdout
    assert "| qbc/DetourStable-v0 | q#pi* (kmeans/16) | 2 |" in done.stdout


def test_quick_refuses_the_settings_it_would_replace(tmp_path):
    """--quick used to replace --bins, --decodings, --seeds, ... silently (sample:0 ran)."""
    for bad in ({"bins": 1}, {"decodings": ("sample:0",)}, {"seeds": (5,)},
                {"steps": 3}, {"model": LedgerConfig().model.__class__(d_model=8)}):
        with pytest.raises(InvalidValueError, match="--quick sets --"):
            run_ledger(LedgerConfig(out=tmp_path / "x", **{**QUICK, **bad}))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name, text", [("cell", '{"env": 1}'), ("cell", '{"rows": 3}'),
                                        ("cell", "[1]"), ("cell", '{"rows": [1]'),
                                        ("config", "[1]")])
@pytest.mark.slow
def test_damaged_ledger_files_are_corrupt_file_errors_before_any_work(tmp_path, name, text,
                                                                      one_torch_thread):
    from qbc.errors import CorruptFileError
    from qbc.experiments.multimodal.ledger import CONFIG_FILE

    cfg = LedgerConfig(out=tmp_path, **{**QUICK, "learners": ("mlp-mse",)})
    run_ledger(cfg)
    path = cell_path(tmp_path, DETOUR, 1, "mlp-mse") if name == "cell" else tmp_path / CONFIG_FILE
    path.write_text(text)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(CorruptFileError, match=path.name):
        run_ledger(cfg)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


_ROW = {"env": DETOUR, "seed": 1, "learner": "mlp-mse", "policy": "expert", "role": "expert",
        "decoding": "-", "success": 1.0, "modes": {"left": 0.5}, "return": -3.0, "regret": 0.0,
        "regret_ci95": [0.0, 0.0], "ended_early": 0.0, "episodes": 4}


@pytest.mark.parametrize("change", [{"env": None}, {"seed": "x"}, {"episodes": 0},
                                    {"success": 2.0}, {"regret_ci95": [1.0]}, {"return": True},
                                    {"modes": {"left": "b"}}, {"seed": 2}, {"policy": 3}])
def test_a_cell_row_the_summary_cannot_read_is_a_corrupt_file_error(tmp_path, change):
    # {"rows": [{}]} passed the check and ended in a KeyError (internal error) in the summary
    import json

    from qbc.errors import CorruptFileError
    from qbc.experiments.multimodal.ledger import read_cell

    path = tmp_path / "cell.json"
    path.write_text(json.dumps({"rows": [_ROW]}))
    assert read_cell(path, (DETOUR, 1, "mlp-mse")) == [_ROW]
    path.write_text(json.dumps({"rows": [{**_ROW, **change}]}))
    with pytest.raises(CorruptFileError, match="cell.json': a row's"):
        read_cell(path, (DETOUR, 1, "mlp-mse"))
