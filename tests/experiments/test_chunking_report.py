"""The chunk comparison's verdict (qbc.experiments.chunking_report) on hand-made summaries:
open-loop chunks that lower regret on a stable env and raise it on an unstable one confirm the
prediction; the reverse refutes it."""

from __future__ import annotations

import json

import pytest
from repository import ROOT

from qbc.experiments.chunking_report import prediction, replanning_effect

UNIFORM = "per-step(n_bins=64,quantizer=uniform)"


def rows(env: str, regret_k1: float, regret_k16: float, regret_replan: float) -> list[dict]:
    """One tokenizer's summary rows at H = 200 (and a smaller H that must be ignored)."""
    base = {"env": env, "policy": "chunk-ar-transformer", "chunk_tokenizer": UNIFORM,
            "diverged_fraction": 0.0}
    return [
        {**base, "H": 200, "chunk_len": 1, "execution": "open-loop", "regret_mean": regret_k1},
        {**base, "H": 200, "chunk_len": 16, "execution": "open-loop", "regret_mean": regret_k16},
        {**base, "H": 200, "chunk_len": 16, "execution": "receding:1",
         "regret_mean": regret_replan},
        {**base, "H": 10, "chunk_len": 16, "execution": "open-loop", "regret_mean": 0.0},
    ]


def test_prediction_holds_when_chunks_help_on_stable_and_hurt_on_unstable():
    summary = (rows("qbc/LinearStable-v0", 2.0, 1.0, 1.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0))
    lines, holds = prediction(summary)
    assert holds is True
    assert any("LinearStable-v0 (open-loop stable)" in line and "**holds**" in line
               for line in lines)
    assert replanning_effect(summary) == {"qbc/LinearStable-v0": (0, 1),
                                          "qbc/ScalarUnstable-v0": (1, 1)}


def test_prediction_fails_when_chunks_help_on_an_unstable_env():
    summary = (rows("qbc/LinearStable-v0", 2.0, 1.0, 1.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 1.0, 3.0))
    lines, holds = prediction(summary)
    assert holds is False
    assert any("ScalarUnstable-v0 (open-loop unstable)" in line and "**does not hold**" in line
               for line in lines)


def test_relative_form_compares_the_open_loop_penalty_across_envs():
    from qbc.experiments.chunking_report import open_loop_penalty, relative_prediction

    # chunks hurt everywhere, but 1.5x on the stable env and 4.5x on the unstable one
    summary = (rows("qbc/LinearStable-v0", 2.0, 3.0, 2.5)
               + rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0))
    assert open_loop_penalty(summary) == {"qbc/LinearStable-v0": 1.5,
                                          "qbc/ScalarUnstable-v0": 4.5}
    line, held = relative_prediction(summary)
    assert held is True and "**holds**" in line
    assert "pairs whose k = 1 regret is positive" in line  # the rule the median follows
    assert prediction(summary)[1] is False  # the absolute form: chunks did not help when stable
    line, held = relative_prediction(rows("qbc/LinearStable-v0", 2.0, 9.0, 2.5)
                                     + rows("qbc/ScalarUnstable-v0", 2.0, 3.0, 3.0))
    assert held is False and "**does not hold**" in line


def test_divergence_is_averaged_per_execution_at_the_largest_horizon():
    from qbc.experiments.chunking_report import divergence_by_execution

    summary = rows("qbc/ScalarUnstable-v0", 2.0, 9.0, 3.0)
    summary[1]["diverged_fraction"] = 0.5  # open-loop k = 16 at H = 200
    summary[3]["diverged_fraction"] = 1.0  # H = 10: ignored
    assert divergence_by_execution(summary) == {
        "qbc/ScalarUnstable-v0": {"k = 1": 0.0, "open-loop": 0.5, "receding:1": 0.0}}
    lines, _ = prediction(summary)
    assert "open-loop k > 1 50.0%" in lines[0]


@pytest.mark.slow
def test_script_on_a_folder_without_a_sweep_is_one_line(tmp_path):

    from in_process import run_python

    script = ROOT / "scripts" / "chunking_report.py"
    done = run_python([script, tmp_path])  # in this process, as a fresh interpreter would
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "summary.csv is missing" in done.stderr and not (tmp_path / "README.md").exists()


# -- the study at default budgets: per-seed ratios, open-loop cost, verdicts, plots ------------
LS, LU = "qbc/LinearStable-v0", "qbc/LinearUnstable-v0"
LS0, LU0 = f"{LS}(noise_std=0.0)", f"{LU}(noise_std=0.0)"
#: open-loop cost (fraction of |expert return|) of each env per seed: the noisy unstable env
#: pays far more than the noisy stable one; the noise-free pair overlaps
COSTS = {LS: (0.01, 0.012, 0.011), LU: (0.20, 0.22, 0.21),
         LS0: (0.05, 0.02, 0.08), LU0: (0.06, 0.03, 0.07)}
EXPERT_RETURN = -100.0


def _results(costs: dict[str, tuple[float, ...]]) -> list[dict]:
    """results.csv rows: 4 env variants x (per-step, chunk-mlp-l1) x k in {1, 4} x 2 modes x
    3 seeds x H in {10, 200}. receding:1 regret 1 + seed; open-loop at k = 4 adds the env's
    cost x |expert return|; the floor is half the learner's (chunk-mlp-l1 on noise-free envs:
    an exact floor, 0)."""
    out = []
    for env, per_seed in costs.items():
        for tok, policy in ((UNIFORM, "chunk-ar-transformer"), ("", "chunk-mlp-l1")):
            for k in (1, 4):
                cell = f"{env}-{policy}-{k}"
                for seed, cost in enumerate(per_seed):
                    for mode in ("open-loop", "receding:1"):
                        for h in (10, 200):
                            regret = (1.0 + seed) * h / 200
                            if k > 1 and mode == "open-loop" and h == 200:
                                regret += cost * abs(EXPERT_RETURN)
                            exact = policy == "chunk-mlp-l1" and "noise_std=0.0" in env
                            out.append({
                                "cell": f"{cell}-{seed}", "env": env, "expert": "lqr",
                                "quantizer": "", "bins": 64 if tok else None, "n_demos": 100,
                                "seed": seed, "policy": policy, "chunk_tokenizer": tok,
                                "chunk_len": k, "execution": mode, "H": h, "regret": regret,
                                "regret_ci_lo": regret, "regret_ci_hi": regret,
                                "regret_per_step": regret / h, "return": EXPERT_RETURN - regret,
                                "expert_return": EXPERT_RETURN, "state_dev_mean": 0.1,
                                "diverged_fraction": 0.0,
                                "tokens_per_chunk": 2.0 * k if tok else None,
                                "decode_failure_rate": 0.0 if tok else None,
                                "floor_regret": 0.0 if exact else regret / 2,
                                "floor_diverged_fraction": 0.0, "train_steps": 10_000,
                                "budget_steps": 10_000, "best_step": 9_800,
                                "stopped_early": 0})
    return out


def _sweep_dir(tmp_path, costs=COSTS, floors=True):
    from qbc.sweep import write_report
    from qbc.sweep.table import append_rows

    grid = {"envs": [LS, LU, {"name": LS, "env_kwargs": {"noise_std": 0.0}},
                     {"name": LU, "env_kwargs": {"noise_std": 0.0}}],
            "chunk_lens": [1, 4], "executions": ["open-loop", "receding:1"],
            "seeds": [0, 1, 2], "n_demos": [100], "horizons": [10, 200]}
    rows = _results(costs)
    for r in [] if floors else rows:
        r["floor_regret"] = r["floor_diverged_fraction"] = None  # a sweep from before floors
    (tmp_path / "sweep_config.json").write_text(json.dumps({
        "source": "synthetic.toml", "spec": {"grid": grid, "data": {"episode_steps": 200},
                                             "train": {"steps": None},
                                             "rollout": {"episodes": 100}},
        "cells": [{"key": key} for key in dict.fromkeys(r["cell"] for r in rows)]}))
    append_rows(tmp_path / "results.csv", rows)
    write_report(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_study_report_on_a_synthetic_table(tmp_path):
    from qbc.experiments.chunking_report import write_readme

    out = _sweep_dir(tmp_path)
    text = write_readme(out).read_text()
    assert "**noisy setting: holds**" in text
    assert "**noise-free setting: inconclusive**" in text
    line = next(x for x in text.splitlines() if x.startswith(f"- {LU} (open-loop unstable, noisy)"))
    # LU's cost: k = 4 open-loop pairs only, mean of 0.20, 0.22, 0.21 over seeds
    assert "+21.00% [" in line and f"vs {LS} (+1.10% [" in line and "**holds**" in line
    nf = next(x for x in text.splitlines() if x.startswith(f"- {LU0} (open-loop unstable, "
                                                           "noise-free)"))
    assert f"vs {LS0}" in nf and "**inconclusive**" in nf
    assert f"## {LS0} (H = 200)" in text and f"## {LS} (H = 200)" in text
    # every cell's learner / floor over seeds: 2 everywhere, exact floors shown as such
    rows = [x for x in text.splitlines() if x.startswith("| per-step uniform/64 | 4 | open-loop")]
    assert len(rows) == 4 and all("| 2 [2, 2] |" in x for x in rows)
    section = text.split(f"## {LS0} (H = 200)")[1].split("\n## ")[0]
    mlp_nf = [x for x in section.splitlines()
              if x.startswith("| chunk-mlp-l1 (continuous) | 4 | open-loop")]
    assert len(mlp_nf) == 1 and "— (floor exact)" in mlp_nf[0]
    assert "10000-10000 steps resolved" in text and "measured no chunk floor" not in text
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert len(plots) == 4 * 2 and all(f"(plots/{p})" in text for p in plots)


@pytest.mark.slow
def test_an_unstable_env_that_pays_less_does_not_hold(tmp_path):
    from qbc.experiments.chunking_report import readme

    costs = {**COSTS, LU: (0.001, 0.002, 0.0015)}
    text = readme(_sweep_dir(tmp_path, costs))
    assert "**noisy setting: does not hold**" in text


def test_one_seed_gives_no_verdict():
    from qbc.experiments.chunking_seeds import compare

    assert compare((0.5, 0.5, 0.5), (0.1, 0.1, 0.1), n_seeds=1) == "inconclusive"
    assert compare((0.5, 0.4, 0.6), (0.1, 0.0, 0.2), n_seeds=3) == "holds"
    assert compare((0.1, 0.0, 0.2), (0.5, 0.4, 0.6), n_seeds=3) == "does not hold"
    assert compare((0.3, 0.1, 0.5), (0.2, 0.1, 0.3), n_seeds=3) == "inconclusive"


def test_env_labels_split_back_into_id_and_kwargs():
    from qbc.experiments.chunking_seeds import setting, split_label

    assert split_label(LS0) == (LS, {"noise_std": 0.0})
    assert split_label(LS) == (LS, {})
    assert setting(LS) == "noisy" and setting(LS0) == "noise-free"


def test_a_damaged_sweep_config_is_refused_naming_the_field(tmp_path):
    from qbc.errors import CorruptFileError
    from qbc.experiments.chunking_report import readme

    out = _sweep_dir(tmp_path)
    path = out / "sweep_config.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "cells": "lost"}))
    with pytest.raises(CorruptFileError, match="field 'cells' must be a list of cells"):
        readme(out)
    path.unlink()
    with pytest.raises(CorruptFileError, match="has no sweep_config.json"):
        readme(out)


def test_a_run_without_chunk_floors_is_not_reported_as_exact_floors():
    from qbc.experiments.chunking_report import _ratio_cells
    from qbc.experiments.chunking_seeds import floor_ratios

    seed_rows = [r for r in _results({LS: (0.01, 0.02, 0.03)}) if r["H"] == 200]
    for r in seed_rows:
        r["floor_regret"] = None  # an older sweep: no chunk floor measured
    ratios = floor_ratios(seed_rows, lambda r: r["policy"])
    assert ratios and all(v["ratio"] is None and not v["measured"] for v in ratios.values())
    summary_row = {"regret_mean": 1.0, "floor_regret": None}
    assert _ratio_cells(summary_row, next(iter(ratios.values()))) == ("—", "—")


def test_regenerating_a_readme_keeps_the_note_under_its_title(tmp_path):
    from qbc.experiments.chunking_seeds import with_kept_note

    new = "# Title\n\n`command`\n\nbody\n"
    old = tmp_path / "README.md"
    assert with_kept_note(new, old) == new  # no README yet
    old.write_text("# Old title\n\n> **A note.** Line one\n> line two.\n\n`command`\n\nold body\n")
    kept = with_kept_note(new, old)
    assert kept == "# Title\n\n> **A note.** Line one\n> line two.\n\n`command`\n\nbody\n"
    old.write_text("# Old title\n\n`command`\n\n> a quote further down is not the note\n")
    assert with_kept_note(new, old) == new


@pytest.mark.slow
def test_a_report_without_chunk_floors_says_so(tmp_path):
    from qbc.experiments.chunking_report import readme

    text = readme(_sweep_dir(tmp_path, floors=False))
    assert "this run measured no chunk floor" in text and "floor exact" not in text
