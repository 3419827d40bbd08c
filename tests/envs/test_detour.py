"""The detour task (issue 33): a known multimodal answer. The expert succeeds and takes both
sides, its side is a pure function of the episode seed (coupled), the mean of its two sides
drives into the obstacle, and rollouts report success and mode coverage."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from tiny import TINY_MODEL

import qbc  # noqa: F401  (registers the envs)
import qbc.agents.detour as detour
from qbc.agents import make_expert
from qbc.errors import InvalidValueError
from qbc.rollout.coupled import coupled_rollout
from qbc.rollout.metrics import horizon_metrics, mode_fractions, proportion_ci95
from qbc.stepping.loop import episode_modes, run_steps

IDS = ["qbc/DetourStable-v0", "qbc/DetourUnstable-v0"]


class MeanOfSides:
    """The average of the expert's left and right actions: what an MSE regressor of
    demonstrations split 50/50 converges to."""

    def __init__(self, expert):
        self.expert = expert

    def act(self, obs):
        obs = np.asarray(obs, dtype=np.float64)
        sides = []
        for side in (1.0, -1.0):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(detour, "detour_side", lambda oy, s=side: np.full(len(oy), s))
                sides.append(self.expert.mean_action(obs))
        return np.clip((sides[0] + sides[1]) / 2, -1, 1).astype(np.float32)


@pytest.mark.parametrize("env_id", IDS)
def test_expert_succeeds_on_both_sides_and_the_mean_of_the_sides_collides(env_id):
    expert = make_expert("detour", env_id)
    res = coupled_rollout(env_id, {"expert": expert, "mean": MeanOfSides(expert)},
                          range(200), 50)
    m = horizon_metrics(res, [50])["policies"]
    assert m["expert"]["50"]["success"] >= 0.95
    modes = m["expert"]["50"]["modes"]
    assert 0.3 <= modes["left"] <= 0.7 and modes["left"] + modes["right"] == 1.0
    assert m["mean"]["50"]["success"] == 0.0
    assert m["mean"]["50"]["modes"]["none"] == 1.0  # it never passes the obstacle
    assert m["mean"]["50"]["diverged_fraction"] == 1.0  # every episode ends in a collision


def test_the_side_is_a_function_of_the_seed_whatever_the_batch():
    env_id = IDS[1]
    one = coupled_rollout(env_id, {"expert": make_expert("detour", env_id)}, range(10, 16), 50)
    split = coupled_rollout(env_id, {"expert": make_expert("detour", env_id)}, range(10, 16), 50,
                            num_envs=4)
    np.testing.assert_array_equal(one.observations["expert"], split.observations["expert"])
    np.testing.assert_array_equal(one.modes["expert"], split.modes["expert"])
    sides = episode_modes(one.modes["expert"])[-1]
    assert set(sides) == {-1, 1}  # six seeds, both sides taken


def test_side_hash_is_balanced_and_deterministic():
    oy = np.random.default_rng(0).normal(0, 1e-9, 4000).astype(np.float32)
    side = detour.detour_side(oy)
    assert set(np.unique(side)) == {-1.0, 1.0}
    assert abs(side.mean()) < 0.05  # sd of the mean of 4000 fair signs ~ 0.016
    np.testing.assert_array_equal(side, detour.detour_side(oy.astype(np.float64)))


def test_collision_ends_the_episode_without_success():
    env = gym.make(IDS[0])
    env.reset(seed=0)
    for _ in range(50):
        _, _, terminated, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
        if terminated or truncated:
            break
    assert terminated and not info["success"]
    assert np.hypot(env.unwrapped.state[0] - 1.0, env.unwrapped.state[1]) < 0.3


def test_vector_info_matches_the_single_env():
    env_id, M = IDS[1], 3
    expert = make_expert("detour", env_id)
    vec = gym.make_vec(env_id, num_envs=M, vectorization_mode="vector_entry_point")
    steps = run_steps(vec, expert, 7)
    for i in range(M):
        env = gym.make(env_id)
        obs, _ = env.reset(seed=7 + i)
        for t in range(steps.lengths[i]):
            obs, _, _, _, info = env.step(expert.act(obs[None])[0])
            assert info["success"] == bool(steps.info["success"][t, i])
            assert info["mode"] == int(steps.info["mode"][t, i])
    assert steps.info["success"][-1].all() and (np.abs(steps.info["mode"]).sum(0) == 1).all()


def test_only_the_position_is_noisy_and_the_start_is_symmetric():
    env = gym.make(IDS[0], noise_std=0.1)
    obs, _ = env.reset(seed=3)
    assert obs[0] == 0 and obs[1] == 0 and 0 < abs(obs[2]) < 1e-7
    nxt, *_ = env.step(np.zeros(2, np.float32))
    assert nxt[2] == obs[2] and np.abs(nxt[:2]).max() > 0


@pytest.mark.parametrize("kwargs", [{"obstacle_jitter": 0.0}, {"obstacle_x": 1.9},
                                    {"dt": -0.1}, {"goal_radius": float("nan")}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(InvalidValueError):
        gym.make(IDS[0], **kwargs)


def test_detour_expert_needs_the_detour_task_and_lqr_points_to_it():
    with pytest.raises(InvalidValueError, match="detour task"):
        make_expert("detour", "qbc/LinearStable-v0")
    vec = gym.make_vec(IDS[0], num_envs=2, vectorization_mode="vector_entry_point")
    for env in (IDS[0], vec):
        with pytest.raises(InvalidValueError, match="use --expert detour"):
            make_expert("lqr", env)
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(make_expert("detour", vec).act(obs),
                                  make_expert("detour", IDS[0]).act(obs))


def test_success_interval_and_mode_fractions():
    rate, lo, hi = proportion_ci95(np.ones(20, dtype=bool))
    assert rate == 1.0 and hi == 1.0 and 0.8 < lo < 0.9  # Wilson: 0.839 for 20/20
    rate, lo, hi = proportion_ci95(np.array([True, False] * 50))
    assert rate == 0.5 and lo == pytest.approx(1 - hi)
    modes = np.array([[0, 0, 0], [1, 0, 0], [0, -1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(episode_modes(modes)[-1], [1, -1, 0])
    assert mode_fractions(episode_modes(modes)[-1]) == pytest.approx(
        {"left": 1 / 3, "right": 1 / 3, "none": 1 / 3})


def test_envs_without_success_report_none():
    res = coupled_rollout("qbc/ScalarStable-v0",
                          {"expert": make_expert("lqr", "qbc/ScalarStable-v0")}, range(3), 5)
    assert res.success == {} and res.modes == {}
    assert "success" not in horizon_metrics(res, [5])["policies"]["expert"]["5"]


def test_describe_has_no_lqr_but_the_lateral_drift():
    from qbc.envs import describe

    d = describe(IDS[1])
    assert d["lqr_gain"] is None and d["lqr_closed_loop_spectral_radius"] is None
    assert d["open_loop_spectral_radius"] == pytest.approx(1.1)  # 1 + dt * drift
    assert describe(IDS[0])["open_loop_spectral_radius"] == pytest.approx(1.0)  # px integrates


@pytest.mark.slow
def test_collect_train_and_rollout_report_success_and_modes(tmp_path, capsys, one_torch_thread):
    import json

    from qbc.cli import main

    assert main(["collect", "--env", IDS[0], "--expert", "detour", "--episodes", "20",
                 "--dataset", "test/detour-v0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "success 100.0% [95% CI 83.9%, 100.0%] (20 of 20)" in text
    assert "modes: left" in text and "none 0%" in text
    out = tmp_path / "run"
    assert main(["train", "--dataset", "test/detour-v0", "--steps", "4", "--eval-interval", "2",
                 "--bins", "8", "--batch-size", "16", "--out", str(out), "--rollout-episodes",
                 "4", "--no-progress", "--model.d-model", "16", "--model.n-heads", "2"]) == 0
    text = capsys.readouterr().out
    assert "success policy" in text and ", expert 100% [95% CI 51%, 100%]" in text
    summary = json.loads((out / "summary.json").read_text())["rollout"]
    assert summary["expert_success"] == 1.0 and summary["expert_modes"]["none"] == 0.0
    argv = ["rollout", "--policy", str(out), "--out", str(tmp_path / "ro"), "--episodes", "6",
            "--horizons", "50", "--decode", "sample", "--temperature", "0.5", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "success [95% CI]" in text and "return" in text
    expert_row = next(line for line in text.splitlines() if line.startswith("expert "))
    assert "100% [61%, 100%]" in expert_row  # the expert's own row: return and success
    metrics = json.loads((tmp_path / "ro" / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"expert", "policy", "quantized_expert"}
    for m in metrics["policies"].values():
        assert 0 <= m["50"]["success"] <= 1 and set(m["50"]["modes"]) == {"left", "right", "none"}
    # the same seed gives the same sampled rollout
    assert main([*argv[:4], str(tmp_path / "ro2"), *argv[5:]]) == 0
    again = json.loads((tmp_path / "ro2" / "metrics.json").read_text())
    assert again["policies"]["policy"] == metrics["policies"]["policy"]
    refused = [*argv[:4], str(tmp_path / "ro3"), *argv[5:]]
    refused[refused.index("0.5")] = "0"
    assert main(refused) == 2 and "--temperature must be" in capsys.readouterr().err


class _Countdown(gym.Env):
    """Ends after 2 + seed % 3 steps; ``info["is_success"]`` (Fetch's key) is True at the last
    step for even seeds only, False on every earlier step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seed_, self.t = (seed or 0), 0
        self.length = 2 + self.seed_ % 3
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        info = {"is_success": bool(done and self.seed_ % 2 == 0)}
        return np.full(1, self.t, np.float32), 1.0, done, False, info


@pytest.mark.parametrize("mode", ["NEXT_STEP", "SAME_STEP"])
def test_outcomes_of_a_third_party_env_under_either_autoreset_mode(mode):
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from qbc.stepping.loop import episode_outcomes

    venv = SyncVectorEnv([_Countdown for _ in range(6)],
                         autoreset_mode=getattr(AutoresetMode, mode))
    steps = run_steps(venv, type("Zero", (), {"act": lambda self, o: np.zeros((6, 1))})(),
                      [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(steps.lengths, [2, 3, 4, 2, 3, 4])
    out = episode_outcomes(steps)
    assert set(out) == {"success"}  # no mode reported
    np.testing.assert_array_equal(out["success"], [True, False, True, False, True, False])


@pytest.mark.slow
def test_dagger_rounds_report_success(tmp_path, one_torch_thread):
    from qbc.cli.dagger import format_summary
    from qbc.interactive.dagger import DaggerConfig, run_dagger
    from qbc.policy import ModelConfig

    cfg = DaggerConfig(env=IDS[0], expert="detour", out=tmp_path / "dagger", rounds=1,
                       episodes_per_round=3, eval_episodes=4, num_envs=4, bins=8, steps=4,
                       batch_size=16, model=ModelConfig(**TINY_MODEL),
                       device="cpu", progress=False,
                       train_overrides={"eval_interval": 2, "warmup_steps": 1})
    rows = run_dagger(cfg)
    assert len(rows) == 2 and all(0 <= r["success"] <= 1 for r in rows)
    assert all(r["success_ci_lo"] <= r["success"] <= r["success_ci_hi"] for r in rows)
    assert "success [95% CI]" in format_summary(cfg, rows, [])
