"""qbc sweep at default budgets and on env variants (scripts/sweeps/chunking_defaults.toml).

The quick config (scripts/sweeps/quick/chunking_defaults.toml: qbc/LinearStable-v0 noisy and
noise-free x per-step and chunk-mlp-l1 x k in {1, 4}) runs without [train] steps: every policy
gets the data-scaled budget of qbc train-chunked, here with the 10,000-step minimum lowered to
100 so that the test stays short (the rule is otherwise the CLI's: same function). The
noise-free variant's kwargs must reach the dataset, the expert, the coupled rollout and the chunk
floor; a bad env kwarg is refused in one line before anything is written.
"""

from __future__ import annotations

import json
import math
import os

import pytest
from repository import ROOT

import qbc.chunking.floor as floor
import qbc.training.chunk_loop as chunk_loop
import qbc.training.config as train_config
from qbc.agents import make_expert
from qbc.chunking.floor import ModelPlanner, SimulatorPlanner, make_planner
from qbc.cli import main
from qbc.data import load_demonstrations
from qbc.envs.make import make_env
from qbc.rollout.evaluate import evaluate_actors
from qbc.sweep import expand_cells, load_spec, read_table, run_sweep, spec_from_dict
from qbc.sweep.cells import needed_datasets
from qbc.sweep.spec import tomllib

QUICK = ROOT / "scripts" / "sweeps" / "quick" / "chunking_defaults.toml"
NOISY, NOISE_FREE = "qbc/LinearStable-v0", "qbc/LinearStable-v0(noise_std=0.0)"
LOW_MIN = 100  # the budget minimum while the quick config runs here (CLI: 10,000)


def quick_doc() -> dict:
    return tomllib.loads(QUICK.read_text())


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The quick config run once, with the planners' env kwargs recorded."""
    root = tmp_path_factory.mktemp("chunk-defaults")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    mp.setattr(train_config, "MIN_AUTO_STEPS", LOW_MIN)
    mp.setattr(chunk_loop, "MIN_AUTO_STEPS", LOW_MIN)
    planned: list[dict] = []
    real = floor.make_planner  # the sweep's chunk floor is made by floor.chunk_floor_actor

    def recording(env_id, expert, env_kwargs=None):
        planned.append(dict(env_kwargs or {}))
        return real(env_id, expert, env_kwargs)

    mp.setattr(floor, "make_planner", recording)
    try:
        spec = load_spec(QUICK)
        result = run_sweep(spec, root / "sweep", progress=False)
        yield root / "sweep", spec, result, planned
    finally:
        mp.undo()


@pytest.mark.slow  # 8 tiny cells, ~15 s
def test_default_budgets_are_train_chunked_rule_and_recorded(swept):
    out, spec, result, _ = swept
    assert spec.train.steps is None and not result.failed and len(result.executed) == 8
    rows = read_table(out / "results.csv")
    assert len(rows) == 8 * 2 * 2  # cells x executions x horizons
    for r in rows:
        k = r["chunk_len"]
        # 8 episodes of 30 steps, 1 held out: 7 x (30 - k + 1) training chunks, batch 32
        assert r["budget_steps"] == train_config.default_steps(7 * (31 - k), 32, 30.0)
        assert r["budget_steps"] > LOW_MIN  # the data set it here, not the minimum
        assert r["best_step"] <= r["train_steps"] <= r["budget_steps"]
        assert r["stopped_early"] == int(r["train_steps"] < r["budget_steps"])


@pytest.mark.slow
def test_noise_free_variant_reaches_data_expert_rollout_and_floor(swept):
    out, _, _, planned = swept
    rows = read_table(out / "results.csv")
    assert {r["env"] for r in rows} == {NOISY, NOISE_FREE}
    assert {json.dumps(p, sort_keys=True) for p in planned} == {"{}", '{"noise_std": 0.0}'}
    config = json.loads((out / "sweep_config.json").read_text())
    assert {"name": "qbc/LinearStable-v0", "env_kwargs": {"noise_std": 0.0}} in \
        config["spec"]["grid"]["envs"]
    cells = [c for c in expand_cells(load_spec(QUICK)) if c.env_kwargs]
    (ds,) = needed_datasets(cells)
    os.environ["MINARI_DATASETS_PATH"] = str(out.parent / "minari")
    try:
        demos = load_demonstrations(ds.dataset_id)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    assert demos.metadata["qbc"]["env_kwargs"]["noise_std"] == 0.0
    # the expert on the same seeds of the noise-free env, rolled out here
    ro, h = load_spec(QUICK).rollout, 30
    env = make_env("qbc/LinearStable-v0", noise_std=0.0)
    lqr = make_expert("lqr", env)
    ref = evaluate_actors("qbc/LinearStable-v0", {"expert": lqr}, ro.seed, ro.episodes, [h],
                          env_kwargs={"noise_std": 0.0}).policies["expert"][str(h)]["return"]
    returns = {r["env"]: r["expert_return"] for r in rows if r["H"] == h}
    assert returns[NOISE_FREE] == pytest.approx(ref, rel=1e-9)
    assert not math.isclose(returns[NOISY], ref, rel_tol=1e-3)
    # the unquantized noise-free plan is the expert's own future: chunk-mlp-l1's floor is exact
    # (up to the float32 actions, ~1e-8) in every mode on the noise-free env only
    floor = {(r["env"], r["chunk_len"], r["execution"]): r["floor_regret"] for r in rows
             if r["policy"] == "chunk-mlp-l1" and r["H"] == h}
    assert all(abs(v) < 1e-6 for (e, _, _), v in floor.items() if e == NOISE_FREE)
    assert floor[(NOISY, 4, "open-loop")] > 1e-2


def test_variants_have_keys_of_their_own_and_the_plain_env_keeps_its_own():
    doc = quick_doc()
    both = expand_cells(spec_from_dict(doc))
    doc["grid"]["envs"] = ["qbc/LinearStable-v0"]
    plain = expand_cells(spec_from_dict(doc))
    assert {c.key for c in plain} < {c.key for c in both}
    assert len({c.key for c in both}) == 2 * len(plain)
    datasets = needed_datasets(both)
    assert len({d.dataset_id for d in datasets}) == 2
    assert {c.env_label for c in both} == {NOISY, NOISE_FREE}


@pytest.mark.parametrize("envs, words", [
    ('[{name = "qbc/LinearStable-v0", env_kwargs = {nosie_std = 0.0}}]', "nosie_std"),
    ('[{name = "qbc/LinearStable-v0", env_kwargs = {noise_std = nan}}]', "not a finite"),
    ('[{name = "qbc/LinearStable-v0", env_kwargs = {max_episode_steps = 5}}]', "episode_steps"),
    ('[{name = "qbc/LinearStable-v0", kwargs = {noise_std = 0.0}}]', "'kwargs'"),
    ('["qbc/LinearStable-v0", {name = "qbc/LinearStable-v0"}]', "twice"),
    ('[{name = "qbc/NoSuchEnv-v0", env_kwargs = {noise_std = 0.0}}]', "NoSuchEnv"),
])
def test_bad_env_kwargs_are_one_line_and_nothing_is_written(tmp_path, capsys, envs, words):
    text = QUICK.read_text()
    start = text.index("envs = [")
    end = text.index("\n", start)
    bad = tmp_path / "bad.toml"
    bad.write_text(text[:start] + f"envs = {envs}" + text[end:])
    out = tmp_path / "out"
    code = main(["sweep", "--config", str(bad), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not out.exists()


def test_planners_make_their_env_with_the_rollout_env_kwargs():
    expert = make_expert("lqr", make_env("qbc/LinearStable-v0", noise_std=0.0))
    model = make_planner("qbc/LinearStable-v0", expert, {"noise_std": 0.0, "x0_std": 0.5})
    assert isinstance(model, ModelPlanner) and model.model.noise_std == 0.0
    assert model.model.x0_std == 0.5
    pendulum = make_planner("Pendulum-v1", make_expert("zoo:Pendulum-v1", "Pendulum-v1"),
                            {"g": 5.0})
    assert isinstance(pendulum, SimulatorPlanner)
    assert pendulum._scratch[0].unwrapped.g == 5.0
    pendulum.close()


PER_STEP = """
[grid]
envs = [{name = "qbc/ScalarStable-v0", env_kwargs = {noise_std = 0.0}}]
bins = 8
n_demos = 6
seeds = [0]
horizons = [10, 30]

[data]
episode_steps = 30

[train]
policies = ["ar-transformer", "quantized-expert"]
batch_size = 32
eval_interval = 20
model = {d_model = 16, n_layers = 1, n_heads = 2}

[rollout]
episodes = 4
num_envs = 4
"""


@pytest.mark.slow  # one tiny per-step cell, ~10 s
def test_per_step_cells_take_qbc_trains_default_budget_too(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setattr(train_config, "MIN_AUTO_STEPS", LOW_MIN)
    result = run_sweep(spec_from_dict(tomllib.loads(PER_STEP)), tmp_path / "s", progress=False)
    assert not result.failed
    rows = read_table(tmp_path / "s" / "results.csv")
    trained = [r for r in rows if r["policy"] == "ar-transformer"]
    # 6 episodes of 30 steps, 1 held out: 150 training rows, batch 32, 30 epochs
    assert {r["budget_steps"] for r in trained} == {train_config.default_steps(150, 32, 30.0)}
    assert all(r["best_step"] <= r["train_steps"] <= r["budget_steps"] for r in trained)
    assert {r["env"] for r in rows} == {"qbc/ScalarStable-v0(noise_std=0.0)"}
    floor = [r for r in rows if r["policy"] == "quantized-expert"]
    assert floor and all(r["budget_steps"] is None for r in floor)  # nothing trained


def test_a_dataset_of_an_env_variant_is_rolled_out_on_that_variant(tmp_path, monkeypatch):
    """train-chunked's closing rollout on noise-free demonstrations (a sweep's variant): the
    expert, env and chunk floor are made noise-free too, so the unquantized floor is exact."""
    from qbc.data.collect import CollectConfig, collect
    from qbc.policy import ModelConfig
    from qbc.training.chunked import ChunkTrainConfig, run_train_chunked

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    collect(CollectConfig(env="qbc/LinearStable-v0", dataset_id="test/ls-nf-v0", episodes=6,
                          num_envs=6, max_episode_steps=30, env_kwargs={"noise_std": 0.0}))
    summary = run_train_chunked(ChunkTrainConfig(
        dataset="test/ls-nf-v0", out=tmp_path / "run", policy="chunk-mlp-l1", chunk_k=4,
        model=ModelConfig(hidden=32, mlp_layers=1), steps=10, eval_interval=10,
        batch_size=32, rollout_episodes=4, progress=False, device="cpu"))
    r = summary["rollout"]
    assert abs(r.actors["chunk_floor"].regret) < 1e-6  # open-loop, noise-free: the plan is exact
    lqr = make_expert("lqr", make_env("qbc/LinearStable-v0", noise_std=0.0))
    ref = evaluate_actors("qbc/LinearStable-v0", {"expert": lqr}, r.first_seed, 4,
                          [r.horizon], env_kwargs={"noise_std": 0.0})
    assert r.actors["expert"].mean_return == pytest.approx(
        ref.policies["expert"][str(r.horizon)]["return"], rel=1e-9)
