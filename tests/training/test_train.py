"""The log-loss trainer: learning, determinism, resume, run directories, the CLI."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import Demos, smooth_demos

from qbc.errors import InvalidValueError, OutputExistsError
from qbc.policy import ModelConfig, load_policy
from qbc.policy.registry import model_for
from qbc.training import TrainConfig, history_index, lr_factor, train
from qbc.training.closing_rollout import ClosingRollout
from qbc.training.settings import model_with_used_location

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(tmp_path, name="run", **kw):
    # these tests check the validation-loss rule; the default (action error): test_default_path
    base = dict(dataset="synthetic", out=tmp_path / name, bins=16, steps=12, batch_size=32,
                eval_interval=4, warmup_steps=3, progress=False, rollout_episodes=0,
                select_by="val-loss", model=ModelConfig(d_model=32, n_heads=2, hidden=64))
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_loss_decreases_and_the_best_checkpoint_predicts_the_actions(tmp_path):
    demos = smooth_demos()
    res = train(_cfg(tmp_path, steps=240, eval_interval=60, lr=3e-3, batch_size=64,
                     warmup_steps=20), demos)
    first, last = res.metrics[0], res.metrics[-1]
    assert [m["step"] for m in res.metrics] == [60, 120, 180, 240]
    assert last["val_loss"] < 0.7 * first["val_loss"]
    assert last["train_loss"] < first["train_loss"]
    # Action error of argmax decoding: a fraction of the actions' variance (about 0.4 here).
    assert last["val_action_mse"] < 0.05
    assert res.best_val_loss == min(m["val_loss"] for m in res.metrics)
    policy = load_policy(tmp_path / "run")
    assert policy.act(demos.observations[:7]).shape == (7, 2)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [60, 120, 180, 240]
    conf = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert conf["policy"] == "ar-transformer" and conf["resolved_device"] == "cpu"


@pytest.mark.parametrize("kind,quantizer", [("independent-categorical", "smooth"),
                                            ("mlp-mse", None), ("mlp-gaussian", None),
                                            ("ar-transformer", "vq")])
def test_every_kind_trains_and_writes_a_checkpoint(tmp_path, kind, quantizer):
    # a continuous policy has no tokens: its token settings stay at their defaults
    token = {"quantizer": quantizer} if quantizer else {"bins": TrainConfig.bins}
    model = model_for(kind, _cfg(tmp_path).model)  # the model settings this kind reads
    # ... less the ordered head's, which vq on 2-D actions does not build (it refuses them)
    model = model_with_used_location(kind, model, quantizer or "uniform", act_dim=2)
    res = train(_cfg(tmp_path, policy=kind, steps=6, eval_interval=3, model=model, **token),
                smooth_demos(episodes=6, steps=20))
    assert np.isfinite([m["val_loss"] for m in res.metrics]).all()
    best = tmp_path / "run" / "best"
    names = {p.name for p in best.iterdir()}
    assert {"model.safetensors", "config.json", "normalizer.json"} <= names
    assert ("tokenizer.json" in names) == (not kind.startswith("mlp"))
    assert res.policy.act(np.zeros((3, 3), np.float32)).shape == (3, 2)


@pytest.mark.slow
def test_same_seed_same_weights_and_different_seed_different_weights(tmp_path):
    demos = smooth_demos(episodes=6, steps=20)
    w = [load_file(str(train(_cfg(tmp_path, f"r{i}", seed=s), demos).out / "last" /
                       "model.safetensors")) for i, s in enumerate([0, 0, 1])]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])


@pytest.mark.parametrize("quantizer", ["uniform", "smooth"])
@pytest.mark.slow
def test_resume_continues_and_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, quantizer):
    demos = smooth_demos(episodes=6, steps=20)
    full = train(_cfg(tmp_path, "full", quantizer=quantizer), demos)
    cut = _cfg(tmp_path, "cut", quantizer=quantizer)
    part = train(cut, demos, stop_at=6)
    assert part.step == 6
    state = json.loads((tmp_path / "cut" / "last" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["scheduler"]["last_epoch"] == 6
    resumed = train(replace(cut, resume=True), demos)
    assert resumed.step == 12
    assert [m["step"] for m in resumed.metrics] == [4, 6, 8, 12]
    by_step = {m["step"]: m for m in full.metrics}
    for m in resumed.metrics:
        if m["step"] in (8, 12):  # after the restart: same learning rate, same losses
            assert m["lr"] == pytest.approx(by_step[m["step"]]["lr"], rel=1e-12)
            assert m["val_loss"] == pytest.approx(by_step[m["step"]]["val_loss"], rel=1e-6)
    a = load_file(str(tmp_path / "full" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "last" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_rules(tmp_path):
    demos = smooth_demos(episodes=4, steps=10)
    cfg = _cfg(tmp_path, steps=2, eval_interval=2)
    train(cfg, demos)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(cfg, demos)
    train(replace(cfg, overwrite=True), demos)
    with pytest.raises(InvalidValueError, match="bins"):
        train(replace(cfg, resume=True, bins=8), demos)
    with pytest.raises(InvalidValueError, match="steps"):
        train(replace(cfg, out=tmp_path / "other", steps=0), demos)
    with pytest.raises(InvalidValueError, match="token-target"):
        train(replace(cfg, out=tmp_path / "other", token_target="hard"), demos)


def test_history_index_repeats_the_first_row_of_each_episode():
    idx = history_index(np.array([5, 5, 5, 9, 9]), 3)
    np.testing.assert_array_equal(idx, [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4]])


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(dataset="x", steps=100, warmup_steps=10, min_lr_ratio=0.1)
    f = [lr_factor(s, cfg) for s in range(101)]
    assert f[0] < f[5] < f[9] < 1.0 and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[100] == pytest.approx(0.1)


def test_cli_train_on_a_collected_dataset(tmp_path, capsys):
    pytest.importorskip("qbc.agents.experts")  # the collect command needs the experts
    from qbc.cli import main

    assert main(["collect", "--env", "qbc/LinearUnstable-v0", "--expert", "lqr", "--episodes",
                 "6", "--dataset", "test/lqr-v0", "--max-episode-steps", "30"]) == 0
    out = tmp_path / "cli"
    argv = ["train", "--dataset", "test/lqr-v0", "--steps", "4", "--eval-interval", "2",
            "--bins", "8", "--batch-size", "16", "--out", str(out), "--rollout-episodes", "2",
            "--no-progress", "--model.d-model", "16", "--model.n-heads", "2"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "trained ar-transformer" in text and "expert lqr on the same seeds" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rollout"]["episodes"] == 2 and summary["rollout"]["horizon"] == 30
    assert main(argv) == 2  # the run directory exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv[:1] + ["--dataset", "test/nope-v0", "--out", str(tmp_path / "x")]) == 2
    assert Path(out / "best" / "model.safetensors").is_file()
    assert load_policy(out).env_id == "qbc/LinearUnstable-v0"


class _Zero:
    """u = 0: on ScalarUnstable-v0 (x' = 2x + u + w) every episode diverges."""

    def act(self, obs):
        return np.zeros((len(obs), 1), dtype=np.float32)


def _scalar_demos(metadata):
    return Demos(np.zeros((10, 1), np.float32), np.zeros((10, 1), np.float32),
                 np.repeat(np.arange(2), 5), env_id="qbc/ScalarUnstable-v0", metadata=metadata)


def test_closing_rollout_compares_with_the_expert_on_the_same_seeds():
    from qbc.agents import make_expert
    from qbc.cli.train import rollout_line
    from qbc.rollout.coupled import coupled_rollout
    from qbc.training import rollout_evaluation

    prov = {"qbc": {"expert": {"name": "lqr", "params": {}}, "seed": 0, "n_episodes": 2}}
    r = rollout_evaluation(_Zero(), _scalar_demos(prov), episodes=6, horizon=100, seed=50)
    expert = make_expert("lqr", "qbc/ScalarUnstable-v0")
    ref = coupled_rollout("qbc/ScalarUnstable-v0", {"expert": expert}, range(50, 56), 100)
    policy, exp = r.actors["policy"], r.actors["expert"]
    assert r.expert == "lqr"
    assert exp.mean_return == pytest.approx(ref.rewards["expert"].sum(0).mean())
    # failed episodes earn nothing after they end: per-step reward is over all H steps
    assert policy.failed_fraction == 1.0 and exp.failed_fraction == 0.0
    assert policy.reward_per_step == pytest.approx(policy.mean_return / 100)
    assert r.regret == pytest.approx(exp.mean_return - policy.mean_return)
    # summary.json's flat layout, and back
    flat = r.to_json()
    assert flat["expert_mean_return"] == exp.mean_return and flat["regret"] == r.regret
    assert list(flat)[:10] == ["env_id", "episodes", "horizon", "first_seed", "horizon_capped",
                               "expert", "no_expert", "expert_mean_return",
                               "expert_reward_per_step", "expert_failed_fraction"]
    assert type(r).from_json(flat) == r
    line = rollout_line(r)
    assert "100% of episodes failed" in line and "expert lqr on the same seeds" in line


def test_closing_rollout_without_an_expert_says_so_in_one_line():
    from qbc.cli.train import rollout_line
    from qbc.training import rollout_evaluation

    r = rollout_evaluation(_Zero(), _scalar_demos({}), episodes=3, horizon=20, seed=50)
    assert r.expert is None and "expert" not in r.actors
    assert "expert_mean_return" not in r.to_json() and "regret" not in r.to_json()
    line = rollout_line(r)
    assert "not compared with an expert" in line and "\n" not in line


def test_samples_per_s_leave_out_validation_and_checkpoints(tmp_path, monkeypatch):
    import types

    import qbc.training.loop as train_mod

    now = [0.0]  # a fake clock: 1 s per optimisation step, 100 s per validation or save

    def advancing(fn, seconds):
        def wrapped(*args, **kwargs):
            now[0] += seconds
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(train_mod, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    for name, seconds in (("sharded_step", 1.0), ("evaluate_split", 100.0),
                          ("save_checkpoint", 100.0), ("save_last", 100.0)):
        monkeypatch.setattr(train_mod, name, advancing(getattr(train_mod, name), seconds))
    result = train(_cfg(tmp_path, steps=12, eval_interval=4), smooth_demos(episodes=6, steps=10))
    assert result.samples_per_s == pytest.approx(32.0)  # batch 32 per 1 s step
    assert result.seconds["train"] == pytest.approx(12.0)
    assert result.seconds["validation"] == pytest.approx(300.0)
    assert result.seconds["checkpoints"] >= 300.0  # 3 x last/ plus each new best/


def test_default_budget_scales_with_the_dataset_and_explicit_steps_are_kept(tmp_path,
                                                                            monkeypatch):
    import qbc.training.config as train_mod
    from qbc.training import default_steps, resolve_budget

    assert default_steps(90_000, 256, 30) == 10_547
    assert default_steps(180_000, 256, 30) == 21_094  # 2x the data, 2x the steps
    assert default_steps(100, 256, 30) == train_mod.MIN_AUTO_STEPS == 10_000
    assert default_steps(18_000, 256, 30) == 10_000  # small data: the minimum, not 2110 steps
    auto = resolve_budget(_cfg(tmp_path, steps=None, batch_size=256), 90_000)
    assert auto.steps == 10_547 and auto.patience == train_mod.AUTO_PATIENCE
    given = resolve_budget(_cfg(tmp_path, steps=2000), 90_000)
    assert given.steps == 2000 and given.patience == 0  # explicit --steps: as before
    monkeypatch.setattr(train_mod, "MIN_AUTO_STEPS", 1)
    small, large = (train(_cfg(tmp_path, f"n{n}", steps=None, epochs=1, patience=0),
                          smooth_demos(episodes=n, steps=40)) for n in (10, 20))
    # 1 epoch of the training split (9 or 18 episodes x 40 rows) at 32 rows a step
    assert (small.step, large.step) == (12, 23)
    assert small.budget == {"from": "--epochs", "epochs": 1, "steps": 12, "patience": 0,
                            "stopped_early": False, "select_by": "val-loss"}


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    rng = np.random.default_rng(0)
    noise = replace(smooth_demos(episodes=10, steps=20),
                    actions=rng.uniform(-1, 1, (200, 2)).astype(np.float32))  # nothing to learn
    result = train(_cfg(tmp_path, steps=400, eval_interval=4, patience=3, lr=3e-3), noise)
    vals = [r["val_loss"] for r in result.metrics]
    assert result.budget["stopped_early"] and result.step < 400
    assert result.step - result.best_step == 3 * 4
    assert min(vals[-3:]) >= min(vals[:-3]) and len(vals) == result.step // 4
    full = train(_cfg(tmp_path, "full", steps=40, eval_interval=4), noise)  # no --patience
    assert full.step == 40 and not full.budget["stopped_early"]


@pytest.mark.slow
def test_a_budget_from_epochs_trains_its_minimum_before_early_stopping(tmp_path, monkeypatch):
    import qbc.training.config as train_mod

    rng = np.random.default_rng(0)
    noise = replace(smooth_demos(episodes=10, steps=20),
                    actions=rng.uniform(-1, 1, (200, 2)).astype(np.float32))  # nothing to learn
    monkeypatch.setattr(train_mod, "MIN_AUTO_STEPS", 200)
    settings = dict(eval_interval=4, patience=3, lr=3e-3)
    auto = train(_cfg(tmp_path, "auto", steps=None, epochs=1, **settings), noise)
    assert auto.budget["steps"] == 200  # 1 epoch is 6 steps: the minimum sets the budget
    assert auto.step == 200 and not auto.budget["stopped_early"]
    explicit = train(_cfg(tmp_path, "explicit", steps=200, **settings), noise)
    assert explicit.budget["stopped_early"] and explicit.step < 200  # same data, --steps given


def test_best_checkpoint_has_the_lowest_validation_loss(tmp_path):
    from qbc.policy.loading import load_module

    result = train(_cfg(tmp_path, steps=40, eval_interval=4, lr=3e-3), smooth_demos())
    vals = {r["step"]: r["val_loss"] for r in result.metrics}
    assert result.best_step == min(vals, key=vals.get)
    assert result.best_val_loss == min(vals.values())
    best_module, _ = load_module(tmp_path / "run" / "best")
    last_module, _ = load_module(tmp_path / "run" / "last")
    same = all(torch.equal(a, b) for a, b in zip(best_module.state_dict().values(),
                                                  last_module.state_dict().values(), strict=True))
    assert same == (result.best_step == result.step)


def test_select_by_rollout_keeps_the_checkpoint_with_the_highest_return(tmp_path):
    from qbc.training import update_best

    demos = Demos(*(_scalar_arrays()), env_id="qbc/ScalarStable-v0")
    result = train(_cfg(tmp_path, steps=12, eval_interval=4, select_by="rollout",
                        select_episodes=2, rollout_horizon=20), demos)
    scores = {r["step"]: (r["select_return"], -r["val_loss"]) for r in result.metrics}
    assert result.best_step == max(scores, key=scores.get)
    best = {"val_loss": None, "step": 0}
    best, up = update_best(best, {"val_loss": 1.0, "select_return": 5.0}, 4, "rollout")
    best, up2 = update_best(best, {"val_loss": 0.5, "select_return": 4.0}, 8, "rollout")
    assert up and not up2 and best["step"] == 4 and best["min_val_step"] == 8
    with pytest.raises(InvalidValueError, match="select-by"):
        train(_cfg(tmp_path, "bad", select_by="rollout"), smooth_demos())  # no env to roll out on


def _scalar_arrays(episodes=6, steps=20):
    """ScalarStable-v0-like data: u = -0.4 x on x ~ N(0, 1)."""
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(episodes * steps, 1)).astype(np.float32)
    return obs, (-0.4 * obs).astype(np.float32), np.repeat(np.arange(episodes), steps)


def test_resume_accepts_a_run_made_before_a_setting_existed():
    from qbc.training.checkpoint import check_resume_config
    from qbc.training.config import config_dict

    current = config_dict(TrainConfig(dataset="qbc/x-v0", resume=True))
    stored = {k: v for k, v in current.items() if k != "select_by"}  # an older run's config
    check_resume_config(stored, current)
    with pytest.raises(InvalidValueError, match="select_by"):
        check_resume_config(stored, {**current, "select_by": "rollout"})


def test_training_leaves_torchs_global_random_state_as_it_found_it(tmp_path):
    """Library code seeds its own runs; a caller's torch random stream is not reset by them."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(_cfg(tmp_path, steps=3), smooth_demos(episodes=4, steps=10))
    assert torch.equal(torch.rand(3), expected)


def test_range_margin_widens_the_tokenizer_range_of_training():
    from qbc.training.data import fit_tokenizer

    actions = np.linspace(-1.0, 1.0, 50, dtype=np.float32)[:, None]
    plain = fit_tokenizer(TrainConfig(dataset="d"), actions)
    wide = fit_tokenizer(TrainConfig(dataset="d", range_margin=0.5), actions)
    assert plain.quantizers_[0].range == pytest.approx((-1.0, 1.0))
    assert wide.quantizers_[0].range == pytest.approx((-1.5, 1.5))
    with pytest.raises(InvalidValueError, match="'kmeans' would ignore it"):  # issue 34
        fit_tokenizer(TrainConfig(dataset="d", quantizer="kmeans", bins=4, range_margin=0.5),
                      actions)


def test_train_summary_to_json_is_summary_json():
    """TrainSummary.to_json() gives summary.json as it was written from a dict: the fields in
    order, the optional ones only when set, a skipped rollout as null."""
    import dataclasses

    from qbc.training import TrainSummary

    head = {"policy": "mlp-mse", "dataset": "d", "steps": 4, "final_train_loss": 1.5,
            "best_val_loss": None, "best_step": 4, "train_samples_per_s": 10.0,
            "seconds": {"train": 0.1}, "budget": {"from": "--steps"}, "checkpoint": "o/best"}
    s = TrainSummary(**head)
    assert list(s.to_json().items()) == list(head.items())  # another rank's: no run_logs
    s.run_logs = []
    assert json.dumps(s.to_json()) == json.dumps({**head, "run_logs": []})
    skipped = dataclasses.replace(s, rollout_skipped=True)
    assert json.dumps(skipped.to_json()) == json.dumps({**head, "rollout": None, "run_logs": []})
    full = dataclasses.replace(s, tokenizer={"quantizer": "uniform", "vocab": 8, "n_tokens": 1},
                               transition_model="o/transition", rollout=ClosingRollout(
                                   env_id="e", episodes=2, horizon=3, first_seed=0,
                                   horizon_capped=None, expert=None, no_expert="none"))
    assert list(full.to_json()) == [*head, "tokenizer", "transition_model", "rollout",
                                    "run_logs"]
    assert full.to_json()["rollout"] == full.rollout.to_json()  # JSON at the edge
