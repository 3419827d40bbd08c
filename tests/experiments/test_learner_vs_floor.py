"""The learner-vs-floor comparison (qbc.experiments.learner_vs_floor and its script)."""

import csv
import dataclasses
import json
import math

import pytest

from qbc.cli import run_script
from qbc.errors import InvalidValueError
from qbc.experiments.learner_vs_floor.comparison import _split_train_flags, run_comparison
from qbc.experiments.learner_vs_floor.config import RESULT_FIELDS, FloorConfig
from qbc.experiments.learner_vs_floor.report import (
    COMMON_VIEW_HEADING,
    OWN_FLOOR_SCOPE,
    TABLE_SCOPE,
    common_tokenizer_view,
    report,
    verdict,
    with_scope_above_tables,
    with_section,
)
from qbc.experiments.learner_vs_floor.summary import summarise
from qbc.experiments.learner_vs_floor.views import (
    ViewConfig,
    add_common_view,
    borrowed_bc_rows,
    run_view,
)
from qbc.infra.files import atomic_write_csv

# the comparison's qbc commands run in this process (conftest's children_in_process)
pytestmark = pytest.mark.usefixtures("children_in_process")


def _row(method, regret, qexp, diverged=0.0, labels=20_000, seed=0, decode="argmax"):
    return {"env": "qbc/ScalarUnstable-v0", "quantizer": "uniform", "seed": seed,
            "method": method, "decode": decode, "expert_labels": labels, "H": 500,
            "expert_return": 480.0, "regret": regret, "diverged": diverged,
            "qexp_regret": qexp, "qexp_diverged": 0.0}


def _by_method(summary):
    return {r["method"]: r for r in summary}


def test_target_needs_twice_the_floor_no_divergence_and_no_extra_labels():
    rows = [_row("bc", 40.0, 2.0, diverged=0.1), _row("dart", 3.9, 2.0),
            _row("dagger", 4.1, 2.0, labels=20_000, seed=0)]
    got = _by_method(summarise(rows))
    assert not got["bc"]["meets_target"]
    assert got["dart"]["meets_target"] and math.isclose(got["dart"]["ratio"], 1.95)
    # 4.1 > 2 x 2.0, but within the floor + 1% of the expert's return (2.0 + 4.8)
    assert got["dagger"]["meets_target"]
    more_labels = summarise([_row("bc", 40.0, 2.0), _row("dagger", 2.5, 2.0, labels=20_001)])
    assert not _by_method(more_labels)["dagger"]["meets_target"]
    diverging = summarise([_row("bc", 4.0, 2.0), _row("dart", 2.5, 2.0, diverged=0.01)])
    assert not _by_method(diverging)["dart"]["meets_target"]


def test_extra_train_flags_reach_dagger_with_their_types():
    from qbc.cli.flag_types import key_values

    model, pairs = _split_train_flags(["--model.d-model", "32", "--range-margin", "0.5",
                                       "--eval-interval", "30", "--select-by", "rollout"])
    assert model == ["--model.d-model", "32"]
    overrides = key_values(pairs, "--train-overrides")  # as `qbc dagger` reads them
    assert overrides == {"range_margin": 0.5, "eval_interval": 30, "select_by": "rollout"}
    assert isinstance(overrides["range_margin"], float)


def test_summary_averages_seeds_and_keeps_the_worst():
    rows = [_row("bc", r, 2.0, seed=s) for s, r in enumerate((1.0, 3.0, 8.0))]
    (bc,) = summarise(rows)
    assert bc["seeds"] == 3 and math.isclose(bc["regret"], 4.0) and bc["regret_worst_seed"] == 8.0
    # plain BC alone is judged by itself: 4.0 <= 2.0 + 1% of 480
    assert verdict(summarise(rows)) == ["- qbc/ScalarUnstable-v0, uniform: met by bc/argmax"]
    diverging = [_row("bc", 1.0, 2.0, diverged=0.01)]
    assert verdict(summarise(diverging))[0].startswith(
        "- qbc/ScalarUnstable-v0, uniform: **not met** by plain BC")
    dart = [_row("dart", 8.0, 2.0, seed=s) for s in range(3)]  # above 2.0 + 1% of 480
    # every method meeting the target is named, plain BC included
    assert verdict(summarise(rows + dart)) == ["- qbc/ScalarUnstable-v0, uniform: met by bc/argmax"]
    (line,) = verdict(summarise(diverging + dart))
    assert line.startswith("- qbc/ScalarUnstable-v0, uniform: **not met** by any method; "
                           "closest bc/argmax: 0.5x the floor's regret, 1.0% diverged")


def test_a_floor_below_zero_is_judged_by_the_limit_and_reported_against_it():
    # the quantized expert beats the expert (Pendulum-v1, smooth/64): no ratio exists, the limit
    # is the floor + 1% of |expert return| (-1.0 + 4.8), and the closest row is the one nearest it
    rows = [_row("bc", 9.0, -1.0), _row("dagger", 6.0, -1.0), _row("dart", 5.0, -1.0),
            _row("dart", 3.5, -1.0, decode="mean")]
    got = {(r["method"], r["decode"]): r for r in summarise(rows)}
    assert math.isnan(got[("dart", "argmax")]["ratio"])
    assert got[("dart", "mean")]["meets_target"] and not got[("dart", "argmax")]["meets_target"]
    rows.pop()
    (line,) = verdict(summarise(rows))
    assert "closest dart/argmax: regret 5 against the target's limit 3.8 (floor -1)" in line


@pytest.mark.slow
def test_quick_comparison_runs_end_to_end_and_continues(tmp_path, capsys):
    cfg = FloorConfig(out=tmp_path / "floor", methods=("bc", "dagger"), mlp_mse=False, quick=True)
    rows = run_comparison(cfg)
    assert {(r["method"], r["decode"]) for r in rows} == {
        (m, d) for m in ("bc", "dagger") for d in ("argmax", "mean")}
    for r in rows:  # every number read from a real rollout
        assert r["H"] == 40 and math.isfinite(r["regret"]) and math.isfinite(r["qexp_regret"])
    dagger = [r for r in rows if r["method"] == "dagger"]
    bc_labels = {r["expert_labels"] for r in rows if r["method"] == "bc"}
    assert bc_labels == {8 * 40}  # 8 episodes x 40 steps
    # round 0: 4 expert episodes of 40 steps; round 1: 4 learner episodes, which may end early
    assert len({r["expert_labels"] for r in dagger}) == 1
    assert 160 < dagger[0]["expert_labels"] <= 320
    with open(tmp_path / "floor" / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    text = (tmp_path / "floor" / "README.md").read_text()
    assert "| plain BC | uniform | argmax | 320 |" in text
    logs = sorted((tmp_path / "floor" / "runs").rglob("log.txt"))
    sizes = [p.stat().st_size for p in logs]
    again = run_comparison(cfg)  # finished steps are kept, not re-run
    assert again == rows and [p.stat().st_size for p in logs] == sizes


def test_a_failed_invocation_still_counts_its_wall_time(tmp_path, monkeypatch):
    import json
    import time

    from qbc.experiments.learner_vs_floor import comparison as learner_vs_floor

    def slow_collect(plan, env_id, seed):
        time.sleep(0.2)

    def failing_job(plan, job):
        raise RuntimeError("a run failed")

    monkeypatch.setattr(learner_vs_floor, "collect_bc", slow_collect)
    monkeypatch.setattr(learner_vs_floor, "run_job", failing_job)
    cfg = FloorConfig(out=tmp_path / "floor", mlp_mse=False, quick=True)
    with pytest.raises(RuntimeError, match="a run failed"):
        run_comparison(cfg)
    first = json.loads((tmp_path / "floor" / "elapsed.json").read_text())["seconds"]
    assert first >= 0.2
    with pytest.raises(RuntimeError):
        run_comparison(cfg)  # the next invocation adds its own time to the stored total
    assert json.loads((tmp_path / "floor" / "elapsed.json").read_text())["seconds"] >= first + 0.2


def test_report_command_gives_back_the_settings_that_differ():
    from qbc.experiments.learner_vs_floor.report import command_flags

    assert command_flags(FloorConfig(envs=("qbc/ScalarUnstable-v0",))) == (
        " --envs qbc/ScalarUnstable-v0")
    cfg = FloorConfig(envs=("Pendulum-v1",), quantizers=("smooth",), methods=("dart",),
                      mlp_mse=False, extra_train_flags=["--range-margin", "0.5"])
    assert command_flags(cfg) == (" --envs Pendulum-v1 --quantizers smooth --methods dart"
                                  " --no-mlp-mse --extra-train-flags=--range-margin 0.5")
    cfg = FloorConfig(envs=("Pendulum-v1",), dart_sigma="1.5",
                      dart_train_flags=["--quantile", "0.05"])
    assert command_flags(cfg) == (" --envs Pendulum-v1 --dart-sigma 1.5"
                                  " --dart-train-flags=--quantile 0.05")


def test_pendulum_is_evaluated_on_more_episodes_unless_told_otherwise():
    from qbc.experiments.learner_vs_floor.config import eval_episodes
    from qbc.experiments.learner_vs_floor.report import _eval_episodes, command_flags

    default = FloorConfig()
    assert [eval_episodes(default, e) for e in default.envs] == [100, 100, 1000, 100, 300, 100]
    assert _eval_episodes(default) == "100 (Pendulum-v1: 1000, Reacher-v5: 300)"
    assert _eval_episodes(FloorConfig(envs=("Pendulum-v1",))) == "1000"
    told = FloorConfig(rollout_episodes=30)
    assert {eval_episodes(told, e) for e in told.envs} == {30}
    assert _eval_episodes(told) == "30"
    assert command_flags(told).endswith(" --rollout-episodes 30")
    assert "--rollout-episodes" not in command_flags(default)


def test_a_rollout_is_redone_when_the_evaluation_settings_change(tmp_path, monkeypatch):
    import json

    from qbc.experiments.learner_vs_floor import comparison as learner_vs_floor

    calls = []

    def fake_evaluate(cfg, datasets, log):  # writes what the evaluation records of its settings
        calls.append(["--episodes", str(cfg.episodes), "--horizons", str(cfg.horizons[0])])
        assert cfg.policy == str(tmp_path / "run") and datasets == tmp_path / "datasets"
        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / "config.json").write_text(json.dumps({
            "episodes": cfg.episodes, "horizons": list(cfg.horizons)}))

    monkeypatch.setattr(learner_vs_floor, "_evaluate", fake_evaluate)

    def evaluate(**settings):
        plan = learner_vs_floor.Plan(FloorConfig(out=tmp_path, **settings))
        learner_vs_floor.rollout(plan, "Pendulum-v1", 0, tmp_path / "run", "bc-smooth", "argmax")

    evaluate()
    evaluate()  # finished with the same settings: kept
    assert len(calls) == 1 and calls[0][calls[0].index("--episodes") + 1] == "1000"
    evaluate(rollout_episodes=100)
    evaluate(rollout_episodes=100, horizon=50)
    assert [(c[c.index("--episodes") + 1], c[c.index("--horizons") + 1]) for c in calls] == [
        ("1000", "200"), ("100", "200"), ("100", "50")]


def test_several_train_flags_go_in_one_quoted_string_and_come_back_in_the_report():
    import shlex

    import tyro

    from qbc.experiments.learner_vs_floor.report import command_flags

    args = ["--envs", "Pendulum-v1",
            "--dart-train-flags=--select-by rollout --select-episodes 100",
            "--extra-train-flags=--range-margin", "0.5"]
    cfg = tyro.cli(FloorConfig, args=args)
    assert cfg.dart_train_flags == ["--select-by", "rollout", "--select-episodes", "100"]
    assert cfg.extra_train_flags == ["--range-margin", "0.5"]
    flags = command_flags(cfg)
    assert flags == (" --envs Pendulum-v1 --dart-train-flags='--select-by rollout "
                     "--select-episodes 100' --extra-train-flags=--range-margin 0.5")
    again = tyro.cli(FloorConfig, args=shlex.split(flags))  # the README's command gives it back
    assert again.dart_train_flags == cfg.dart_train_flags
    assert again.extra_train_flags == cfg.extra_train_flags


@pytest.mark.slow
def test_fixed_dart_sigma_needs_no_bc_policy_and_trains_with_its_own_flags(tmp_path):
    cfg = FloorConfig(out=tmp_path / "floor", methods=("dart",), mlp_mse=False, quick=True,
                      dart_sigma="0.7", dart_train_flags=["--quantile", "0.05"])
    rows = run_comparison(cfg)
    assert {(r["method"], r["decode"]) for r in rows} == {("dart", "argmax"), ("dart", "mean")}
    seed_dir = tmp_path / "floor" / "runs" / "qbc_scalarunstable_v0" / "seed0"
    assert not (seed_dir / "bc-uniform").exists()  # a fixed sigma trains no BC policy
    assert "--dart 0.7" in (seed_dir / "data-dart-uniform" / "log.txt").read_text()
    train_log = (seed_dir / "dart-uniform" / "log.txt").read_text()
    assert "--quantile 0.05" in train_log and "--quantile" not in (
        (seed_dir / "data-dart-uniform" / "log.txt").read_text())
    readme = (tmp_path / "floor" / "README.md").read_text()
    assert "| DART (sigma 0.7) | uniform | argmax |" in readme


def test_a_bad_dart_sigma_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(InvalidValueError, match="--dart-sigma must be 'auto' or a positive number"):
        run_comparison(FloorConfig(out=tmp_path / "floor", quick=True, dart_sigma="-1"))
    assert not (tmp_path / "floor").exists()


def test_too_few_evaluation_episodes_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(InvalidValueError, match="--rollout-episodes must be an integer >= 1"):
        run_comparison(FloorConfig(out=tmp_path / "floor", rollout_episodes=0))
    assert not (tmp_path / "floor").exists()


def test_quick_settings_keep_the_extra_train_flags():
    from qbc.experiments.learner_vs_floor.config import quick_config

    quick = quick_config(FloorConfig(quick=True, extra_train_flags=["--range-margin", "0.5"]))
    assert quick.extra_train_flags[-2:] == ["--range-margin", "0.5"]
    assert "--model.d-model" in quick.extra_train_flags
    assert quick.envs == ("qbc/ScalarUnstable-v0",)  # the first of the default envs
    linear = quick_config(FloorConfig(quick=True, envs=("qbc/LinearUnstable-v0",)))
    assert linear.envs == ("qbc/LinearUnstable-v0",) and linear.episodes == 8


def test_report_states_its_scope_and_shows_the_stochastic_smooth_floor():
    from qbc.experiments.learner_vs_floor.report import report

    rows = [_row("bc", 5.0, 4.0) | {"quantizer": "smooth", "qexp_stochastic_regret": 7.5},
            _row("bc", 5.0, 4.0)]  # uniform: no stochastic floor
    summary = {r["quantizer"]: r for r in summarise(rows)}
    assert summary["smooth"]["qexp_stochastic_regret"] == 7.5
    assert math.isnan(summary["uniform"]["qexp_stochastic_regret"])
    text = report(FloorConfig(envs=("qbc/ScalarUnstable-v0",)), list(summary.values()), 60.0)
    assert "reference floor" in text and "not a quantized actor" in text
    # reference floor | ratio | own floor | diverged | reference's | own's | stochastic | target
    assert "| 4 | 1.25 | 4 | 0.0% | 0.0% | 0.0% | 7.5 | yes |" in text  # stochastic, beside
    assert "| 4 | 1.25 | 4 | 0.0% | 0.0% | 0.0% | — | yes |" in text


def test_a_method_with_its_own_higher_floor_is_held_to_the_reference_floor():
    # DAgger's round 0 fitted its tokenizer on fewer episodes: its own floor is 20, BC's is 4
    rows = [_row("bc", 5.0, 4.0), _row("dagger", 19.0, 20.0)]
    dagger = _by_method(summarise(rows))["dagger"]
    assert dagger["ref_qexp_regret"] == 4.0 and dagger["qexp_regret"] == 20.0
    assert math.isclose(dagger["ratio"], 19.0 / 4.0) and not dagger["meets_target"]


@pytest.mark.slow
def test_a_rollout_evaluated_in_process_writes_what_the_command_writes(tiny_lin_run, tmp_path,
                                                                      cli):
    import json

    from tiny import copy_tiny_lin_run

    from qbc.experiments.learner_vs_floor.comparison import _evaluate
    from qbc.rollout.inputs import EvalConfig

    copy_tiny_lin_run(tiny_lin_run, tmp_path)
    res = cli(["rollout", "--policy", tmp_path / "run", "--episodes", "4", "--horizons", "10",
               "--seed", "900000", "--decode", "mean", "--num-envs", "4", "--no-progress",
               "--out", tmp_path / "cmd", "--overwrite"],
              env={"MINARI_DATASETS_PATH": str(tmp_path / "minari")})
    assert res.returncode == 0, res.stderr
    cfg = EvalConfig(out=tmp_path / "lib", policy=str(tmp_path / "run"), episodes=4,
                     horizons=(10,), seed=900000, decode="mean", num_envs=4, progress=False,
                     overwrite=True)
    _evaluate(cfg, tmp_path / "minari", tmp_path / "log.txt")  # the datasets root passed in
    for name in ("metrics.json", "config.json"):
        cmd, lib = (json.loads((tmp_path / d / name).read_text().replace(str(tmp_path / d),
                                                                         "OUT"))
                    for d in ("cmd", "lib"))
        for found in (cmd, lib):
            found.pop("timing", None)  # seconds differ
        assert list(lib) == list(cmd) and lib == cmd, name
    log = (tmp_path / "log.txt").read_text().splitlines()
    assert log[0].startswith("$ evaluate --policy") and log[1].startswith("coupling: exact")
    assert log[2].endswith("(from dataset qbc/lin-v0)")


# -- the common-tokenizer view of pages whose rows refit their tokenizers -------------------------
def _refit_rows():
    # DART refitted its tokenizer (own floors 20 and 22); BC's tokenizer gives 4.0 and 4.2
    return [_row("bc", 5.0, 4.0, seed=0), _row("bc", 6.0, 4.2, seed=1),
            _row("dart", 10.0, 20.0, seed=0), _row("dart", 12.0, 22.0, seed=1)]


def test_common_tokenizer_view_sets_each_refit_row_beside_bcs_floor():
    lines = common_tokenizer_view(summarise(_refit_rows()), "`cmd`")
    assert lines[0] == COMMON_VIEW_HEADING
    assert any(line.startswith("Scope:") and "`cmd`" in line for line in lines)
    # regret | own floor | ratio to it | reference floor | ratio to it | own − reference | diverged
    assert ("| qbc/ScalarUnstable-v0 | DART | uniform | argmax | 11 | 21 | 0.524 | 4.1 | 2.68 "
            "| 16.9 | 0.0% | 0.0% | 0.0% |") in lines
    assert not any("| plain BC |" in line for line in lines)  # its own floor is the reference
    header = next(line for line in lines if line.startswith("| env"))
    assert all(line.count("|") == header.count("|") for line in lines if line.startswith("|"))


def test_with_section_replaces_its_own_section_only_or_appends_it():
    page = "# Page\n\nintro\n\n## Env\n\n| a |\n"
    section = ["## View", "", "new"]
    once = with_section(page, section)
    assert once == page + "\n## View\n\nnew\n"
    assert with_section(once, section) == once
    middle = "# Page\n\n## View\n\nold\nlines\n\n## Later\n\nkept\n"
    assert with_section(middle, section) == "# Page\n\n## View\n\nnew\n\n## Later\n\nkept\n"


def test_the_scope_sentence_goes_above_each_method_table_once():
    page = "## A\n\n| method | x |\n|---|\n\n## B\n\n| method | y |\n\n| env | z |\n"
    once = with_scope_above_tables(page, "Scope.")
    assert once.count("Scope.\n\n| method |") == 2 and "Scope.\n\n| env" not in once
    assert with_scope_above_tables(once, "Scope.") == once


def test_the_view_script_adds_the_section_from_results_csv_and_touches_nothing_else(tmp_path):
    folder = tmp_path / "page"
    folder.mkdir()
    fields = [f for f in RESULT_FIELDS if f != "qexp_stochastic_regret"]  # an older page
    rows = [r | {"regret_ci_low": 0.0, "regret_ci_high": 1.0, "ratio": math.nan}
            for r in _refit_rows()]
    atomic_write_csv(folder / "results.csv", rows, fields)
    (folder / "README.md").write_text("# Page\n\n## qbc/ScalarUnstable-v0\n\n| method | own |\n")
    before = (folder / "results.csv").read_bytes()
    for _ in range(2):  # a second run rewrites the section in place
        assert run_script(ViewConfig, run_view, "learner_vs_floor_view",
                          argv=["--folders", str(folder)]) == 0
    text = (folder / "README.md").read_text()
    assert text.startswith("# Page\n\n## qbc/ScalarUnstable-v0\n\n"
                           f"{OWN_FLOOR_SCOPE}\n\n| method | own |\n\n")
    assert text.count(COMMON_VIEW_HEADING) == 1 and "| 11 | 21 | 0.524 | 4.1 | 2.68 |" in text
    assert (folder / "results.csv").read_bytes() == before


def test_report_states_the_scope_above_each_env_table():
    text = report(FloorConfig(envs=("qbc/ScalarUnstable-v0",)), summarise(_refit_rows()), 60.0)
    lines = text.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("| method"))
    assert lines[table - 2] == TABLE_SCOPE


def test_without_bc_rows_the_view_shows_no_reference_floor_and_says_why():
    # summarise falls back to the row's own floor; the view must not present that as BC's
    lines = common_tokenizer_view(summarise([_row("dart", 10.0, 20.0)]), "`cmd`")
    assert ("| qbc/ScalarUnstable-v0 | DART | uniform | argmax | 10 | 20 | 0.5 | — | — | — "
            "| 0.0% | 0.0% | — |") in lines
    assert "no plain BC rows for qbc/ScalarUnstable-v0 uniform" in lines[-1]


def test_a_folder_without_bc_borrows_the_reference_floor_only_for_seeds_it_covers(tmp_path):
    dart = [r for r in _refit_rows() if r["method"] == "dart"]
    other = _refit_rows() + [_row("bc", 1.0, 9.0, seed=0) | {"quantizer": "smooth"}]
    assert borrowed_bc_rows(dart, other) == [r for r in _refit_rows() if r["method"] == "bc"]
    more_seeds = dart + [_row("dart", 10.0, 20.0, seed=2)]
    assert borrowed_bc_rows(more_seeds, other) == []  # seed 2 has no BC row there
    assert borrowed_bc_rows(_refit_rows(), other) == []  # BC of its own
    for name, rows in (("page", dart), ("ref", _refit_rows())):
        (tmp_path / name).mkdir()
        atomic_write_csv(tmp_path / name / "results.csv", rows, list(rows[0]))
    (tmp_path / "page" / "README.md").write_text("# Page\n")
    add_common_view(tmp_path / "page", tmp_path / "ref")
    text = (tmp_path / "page" / "README.md").read_text()
    assert "| 11 | 21 | 0.524 | 4.1 | 2.68 |" in text and "this folder ran no BC" in text
    # BC's tokenizer is fitted on the training split its seed draws: the borrowed floor holds
    # for BC runs of the same seeds, not for any training
    assert "its training seed (which draws the training split" in text
    assert f"--reference {tmp_path / 'ref'}" in text


def test_a_comparison_continues_from_its_results_table_alone(tmp_path, monkeypatch):
    """Orchestration (run_job faked): results.csv is rewritten after every finished job, and a
    folder holding only results.csv and settings.json continues without redoing the jobs it
    holds; other settings start the table afresh; rows of jobs outside an invocation stay."""
    from qbc.experiments.learner_vs_floor import comparison

    calls, collected = [], []

    def fake_job(plan, job):
        if len(calls) == fail_after[0]:
            raise RuntimeError("killed")
        calls.append((job.env_id, job.seed, job.quantizer))
        methods = [("mlp-mse", "-")] if job.quantizer is None else [
            (m, d) for m in plan.cfg.methods for d in ("argmax", "mean")]
        return [{**_row(m, regret=1.5 + job.seed, qexp=1.0, seed=job.seed, decode=d),
                 "env": job.env_id, "quantizer": job.quantizer or "-", "regret_ci_low": 0.5,
                 "regret_ci_high": 2.5, "qexp_stochastic_regret": math.nan,
                 "ratio": 1.5 + job.seed} for m, d in methods]

    monkeypatch.setattr(comparison, "run_job", fake_job)
    monkeypatch.setattr(comparison, "collect_bc", lambda plan, e, s: collected.append((e, s)))
    out = tmp_path / "floor"
    cfg = FloorConfig(out=out, envs=("qbc/ScalarUnstable-v0",), quantizers=("uniform",),
                      seeds=(0, 1), methods=("bc",), workers=1)
    fail_after = [3]  # the fourth job is killed: the three before it are in results.csv
    with pytest.raises(RuntimeError, match="killed"):
        run_comparison(cfg)
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2 + 1 + 2  # uniform s0, mlp s0, uniform s1

    for leftover in out.iterdir():  # keep only the table and its settings, as a commit would
        if leftover.name not in ("results.csv", "settings.json") and leftover.is_file():
            leftover.unlink()
    calls.clear(), collected.clear()
    fail_after[0] = -1
    rows = run_comparison(cfg)
    assert calls == [("qbc/ScalarUnstable-v0", 1, None)] and collected == [
        ("qbc/ScalarUnstable-v0", 1)]
    assert len(rows) == 6 and rows == sorted(rows, key=comparison._row_order(cfg))
    assert all(isinstance(r["seed"], int) and isinstance(r["regret"], float) for r in rows)
    assert "| plain BC | uniform | argmax |" in (out / "README.md").read_text()

    calls.clear()
    assert run_comparison(cfg) == rows and calls == []  # nothing left to run

    linear = FloorConfig(out=out, envs=("qbc/LinearUnstable-v0",), quantizers=("uniform",),
                         seeds=(0,), methods=("bc",), workers=1)
    assert {r["env"] for r in run_comparison(linear)} == {"qbc/LinearUnstable-v0"}
    with open(out / "results.csv") as fh:  # the first env's rows are kept in the table
        assert {r["env"] for r in csv.DictReader(fh)} == {
            "qbc/ScalarUnstable-v0", "qbc/LinearUnstable-v0"}

    calls.clear()
    other = FloorConfig(out=out, envs=cfg.envs, quantizers=cfg.quantizers, seeds=cfg.seeds,
                        methods=cfg.methods, rollout_episodes=50, workers=1)
    run_comparison(other)  # other evaluation settings: every job again, only its rows kept
    assert len(calls) == 4
    with open(out / "results.csv") as fh:
        assert {r["env"] for r in csv.DictReader(fh)} == {"qbc/ScalarUnstable-v0"}
    before = {p: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(InvalidValueError, match=r"other settings \(episodes: episodes=100\)"):
        run_comparison(dataclasses.replace(other, episodes=50))  # its runs were made with 100
    assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_dagger_on_its_commands_defaults_sets_no_schedule_and_does_not_limit_labels(tmp_path,
                                                                                    monkeypatch):
    from qbc.experiments.learner_vs_floor import comparison
    from qbc.experiments.learner_vs_floor.plan import Plan
    from qbc.experiments.learner_vs_floor.report import command_flags
    from qbc.interactive.config import DaggerConfig

    commands = []
    monkeypatch.setattr(comparison, "qbc_command", lambda args, log, env: commands.append(args))
    monkeypatch.setattr(comparison, "mark_finished", lambda path: None)
    cfg = FloorConfig(out=tmp_path, dagger_defaults=True)
    last = comparison.dagger_run(Plan(cfg), "qbc/ScalarUnstable-v0", 0, "uniform")
    (args,) = commands
    for flag in ("--rounds", "--episodes-per-round", "--beta", "--beta-value"):
        assert flag not in args  # `qbc dagger` chooses them itself
    assert last.name == f"round-{DaggerConfig.__dataclass_fields__['rounds'].default}"
    commands.clear()
    comparison.dagger_run(Plan(FloorConfig(out=tmp_path / "eq")), "qbc/ScalarUnstable-v0", 0,
                          "uniform")
    assert commands[0][commands[0].index("--episodes-per-round") + 1] == "50"  # equal labels
    assert "--dagger-defaults" in command_flags(cfg)
    # four times BC's labels: reported, and the target does not require fewer
    rows = [_row("bc", 6.0, 6.0), _row("dagger", 6.5, 6.0, labels=80_000)]
    by = _by_method(summarise(rows, labels_required=False))
    assert by["dagger"]["meets_target"] and not _by_method(summarise(rows))["dagger"][
        "meets_target"]
    assert "labels are reported, not limited" in report(cfg, summarise(rows, False), 60.0)


@pytest.mark.parametrize("flags", [
    ["--envs", "qbc/Nope-v0"], ["--episodes", "0"], ["--bins", "1"], ["--quantizers", "bogus"],
    ["--seeds", "-1"], ["--seeds", "900"], ["--methods", "bogus"], ["--methods", "bc", "bc"],
    ["--dagger-beta", "2"], ["--horizon", "0"], ["--dagger-tokenizer", "xx"],
    ["--extra-train-flags=--lr"], ["--dart-train-flags=lr 1"], ["--workers", "0"],
    ["--dagger-rounds", "0"]])
def test_bad_settings_are_one_line_before_anything_is_written(tmp_path, flags, capsys):
    # they ended in SystemExit (exit 1), an internal error from a child command, or ran
    assert run_script(FloorConfig, run_comparison, "learner_vs_floor",
                      argv=["--out", str(tmp_path / "floor"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert not (tmp_path / "floor").exists()


def _stored_folder(out, table=None, settings=None):
    """A folder holding the complete table of the quick comparison (nothing left to run)."""
    cfg = FloorConfig(out=out, quick=True)
    rows = [{**_row(m, 1.5, 1.0, decode=d), "H": 40, "regret_ci_low": 0.5,
             "regret_ci_high": 2.5, "qexp_stochastic_regret": math.nan, "ratio": 1.5}
            for m in ("bc", "dart", "dagger") for d in ("argmax", "mean")]
    rows.append({**rows[0], "quantizer": "-", "method": "mlp-mse", "decode": "-"})
    from qbc.experiments.learner_vs_floor.config import quick_config
    from qbc.experiments.learner_vs_floor.stored import save_rows
    save_rows(out, quick_config(cfg), rows)
    if table is not None:
        (out / "results.csv").write_bytes(table((out / "results.csv").read_bytes()))
    if settings is not None:
        (out / "settings.json").write_bytes(settings)
    return cfg


@pytest.mark.parametrize("table, settings, match", [
    (lambda b: bytes(range(256)), None, "not a text CSV table"),
    (lambda b: b[:150] + b"\x00" + b[150:], None, "not a text CSV table"),
    (lambda b: b[:-20], None, "cut mid-row"),
    (lambda b: b.replace(b"\n", b",x\n", 2).replace(b",x\n", b"\n", 1), None,
     "line 2 has more fields than its header"),
    (lambda b: b.replace(b",argmax,", b",,", 1), None, "line 2: decode ''"),
    (lambda b: b.replace(b",1.5,", b",abc,", 1), None, "regret 'abc'"),
    (None, b"[1, 2]", "holds a JSON list"),
    (None, b"\xff\xfe", "not UTF-8"),
    (None, b'{"bins": 16', "truncated or not valid JSON")])
def test_a_damaged_table_or_settings_file_is_refused_and_kept(tmp_path, table, settings, match,
                                                              monkeypatch):
    # they were taken for 'no table' (every job made again, the table replaced) or, for a row
    # cut short, loaded with NaN in its missing fields
    from qbc.errors import CorruptFileError
    from qbc.experiments.learner_vs_floor import comparison

    monkeypatch.setattr(comparison, "collect_bc", lambda *a: pytest.fail("ran a job"))
    cfg = _stored_folder(tmp_path / "floor", table, settings)
    before = {p.name: p.read_bytes() for p in (tmp_path / "floor").iterdir()}
    with pytest.raises(CorruptFileError, match=match):
        run_comparison(cfg)
    assert {p.name: p.read_bytes() for p in (tmp_path / "floor").iterdir()} == before


def test_a_damaged_wall_time_is_refused_before_anything_is_written(tmp_path):
    from qbc.errors import CorruptFileError

    out = tmp_path / "floor"
    cfg = _stored_folder(out)
    (out / "elapsed.json").write_text(json.dumps({"seconds": "x"}))
    with pytest.raises(CorruptFileError, match="elapsed.json: seconds 'x'"):
        run_comparison(cfg)
    assert not (out / "README.md").exists()
    (out / "elapsed.json").write_text(json.dumps({"seconds": 5.0}))
    run_comparison(cfg)  # the complete table: nothing to run, the page written
    assert json.loads((out / "elapsed.json").read_text())["seconds"] >= 5.0


def test_a_child_command_that_refuses_its_input_is_one_line_naming_it(tmp_path):
    from qbc.experiments.learner_vs_floor.plan import qbc_command

    with pytest.raises(InvalidValueError, match=r"qbc train: error: .*--bogus.* \(its log: "):
        qbc_command(["train", "--dataset", "x/y-v0", "--bogus", "1"], tmp_path / "log.txt", {})


@pytest.mark.parametrize("damage, match", [
    (lambda f: (f / "results.csv").write_bytes(bytes(range(256))), "not a text CSV table"),
    (lambda f: (f / "results.csv").write_bytes(
        (f / "results.csv").read_bytes().replace(b"\n", b"\x00\n", 1)), "not a text CSV"),
    (lambda f: (f / "results.csv").write_bytes((f / "results.csv").read_bytes()[:-9]),
     "cut mid-row"),
    (lambda f: (f / "results.csv").write_text("env,seed\nx,1\n"), "lacks the columns"),
    (lambda f: (f / "results.csv").write_bytes(
        (f / "results.csv").read_bytes().replace(b",20000,", b",,", 1)), "expert_labels ''"),
    (lambda f: (f / "README.md").write_bytes(b"\xff\xfe"), "README.md is not UTF-8")])
def test_the_view_refuses_a_damaged_folder_and_writes_no_folder(tmp_path, damage, match, capsys):
    # binary tables, missing columns and a binary README.md were internal errors; NUL bytes and
    # a cut row were read; a refused second folder came after the first had been rewritten
    rows = _refit_rows()
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
        atomic_write_csv(tmp_path / name / "results.csv", rows, list(rows[0]))
        (tmp_path / name / "README.md").write_text("# Page\n")
    damage(tmp_path / "bad")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert run_script(ViewConfig, run_view, "learner_vs_floor_view",
                      argv=["--folders", str(tmp_path / "good"), str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name, text", [("metrics.json", "[1]"), ("metrics.json", "{}"),
                                        ("rounds.csv", "round\n"), ("metadata.json", "{}")])
def test_a_damaged_file_of_a_finished_step_is_a_corrupt_file_error_naming_it(tmp_path, name,
                                                                             text):
    # a finished step is not redone; its damaged metrics, DAgger table or dataset metadata
    # ended in a KeyError / IndexError (internal error)
    from qbc.errors import CorruptFileError
    from qbc.experiments.learner_vs_floor import comparison
    from qbc.experiments.learner_vs_floor.plan import Plan

    plan = Plan(FloorConfig(out=tmp_path, quick=True))
    path = tmp_path / name
    path.write_text(text)
    job = comparison.Job("qbc/ScalarUnstable-v0", 0, "uniform")
    with pytest.raises(CorruptFileError, match=name):
        if name == "metrics.json":
            comparison._row(plan, job, "bc", "argmax", 10, path)
        elif name == "rounds.csv":
            comparison._dagger_labels(tmp_path)
        else:
            (tmp_path / "datasets" / "d" / "data").mkdir(parents=True)
            path.replace(tmp_path / "datasets" / "d" / "data" / name)
            comparison._dataset_steps(plan, "d")
