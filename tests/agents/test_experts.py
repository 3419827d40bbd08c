"""Experts: registry, batched clipped actions, LQR stabilisation, stochastic experts, SB3."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import qbc  # noqa: F401  (registers the envs)
from qbc.agents import (
    available_experts,
    evaluate_expert,
    lqr_gain,
    make_expert,
    spectral_radius,
)
from qbc.errors import (
    CorruptFileError,
    InvalidValueError,
    OutputExistsError,
    UnknownNameError,
)


def test_registry():
    assert {"lqr", "linear", "arctan", "sb3"} <= set(available_experts())
    with pytest.raises(UnknownNameError, match="lqr"):
        make_expert("lqq", "qbc/ScalarStable-v0")
    with pytest.raises(InvalidValueError, match="valid parameters"):
        make_expert("lqr", "qbc/ScalarStable-v0", gain=2.0)
    with pytest.raises(UnknownNameError):
        make_expert("lqr", "qbc/NoSuchEnv-v0")


def test_lqr_gain_is_the_riccati_fixed_point():
    """Independent check: iterate the finite-horizon Riccati recursion to convergence."""
    env = gym.make("qbc/LinearUnstable-v0").unwrapped
    A, B = env.linearization()
    Q, R = env.cost_matrices()
    P = Q.copy()
    for _ in range(2000):
        K_iter = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ (A - B @ K_iter)
    expert = make_expert("lqr", "qbc/LinearUnstable-v0")
    np.testing.assert_allclose(expert.K, K_iter, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(expert.K, lqr_gain(A, B, Q, R))


@pytest.mark.parametrize("env_id", ["qbc/LinearUnstable-v0", "qbc/InvertedPendulum-v0",
                                    "qbc/ScalarUnstable-v0", "qbc/CartPoleContinuous-v0"])
def test_lqr_closes_the_loop(env_id):
    expert = make_expert("lqr", env_id)
    A, B = gym.make(env_id).unwrapped.linearization()
    assert spectral_radius(A) > 1 > spectral_radius(A - B @ expert.K)
    vec = gym.make_vec(env_id, num_envs=8, vectorization_mode="vector_entry_point",
                       max_episode_steps=500)
    obs, _ = vec.reset(seed=0)
    peak = np.abs(obs).max()
    for t in range(500):
        obs, reward, terminated, truncated, _ = vec.step(expert.act(obs))
        assert not terminated.any()
        assert truncated.all() == (t == 499)
        peak = max(peak, np.abs(obs).max())
    x0_scale = gym.make(env_id).unwrapped.x0_std
    assert peak < 10 * x0_scale  # stays near the origin, far from the divergence threshold
    # Without the expert the same env leaves the neighbourhood of the origin.
    obs, _ = vec.reset(seed=0)
    for _ in range(500):
        obs, *_ = vec.step(np.zeros(vec.action_space.shape, np.float32))
        peak_open = np.abs(obs).max()
        if peak_open > 10 * x0_scale:
            break
    assert peak_open > 10 * x0_scale


def test_act_shapes_dtype_and_clipping():
    expert = make_expert("lqr", "qbc/LinearUnstable-v0")
    obs = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    u = expert.act(obs)
    assert u.shape == (5, 2) and u.dtype == np.float32
    np.testing.assert_allclose(u, -obs @ expert.K.T, rtol=1e-5, atol=1e-6)
    big = expert.act(1e4 * obs)
    assert np.abs(big).max() == pytest.approx(10.0)  # clipped to the action bound
    with pytest.raises(InvalidValueError, match="obs\\[None\\]"):
        expert.act(obs[0])


def test_linear_expert_with_given_gain_and_scale():
    K = [[1.0, 0.0, 0.5, 0.0], [0.0, 2.0, 0.0, 0.1]]
    expert = make_expert("linear", "qbc/LinearStable-v0", K=K, gain_scale=0.5)
    np.testing.assert_array_equal(expert.K, 0.5 * np.array(K))
    obs = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(expert.act(obs), -obs @ (0.5 * np.array(K)).T, rtol=1e-6)
    json.dumps(expert.params)
    again = make_expert("linear", "qbc/LinearStable-v0", **expert.params)
    np.testing.assert_array_equal(again.K, expert.K)
    from_dict = make_expert(json.loads(json.dumps(expert.to_dict())), "qbc/LinearStable-v0")
    assert from_dict.name == "linear"
    np.testing.assert_array_equal(from_dict.K, expert.K)
    assert make_expert(expert, "qbc/LinearStable-v0") is expert
    lqr = make_expert("lqr", "qbc/LinearStable-v0")
    scaled = make_expert("linear", "qbc/LinearStable-v0", gain_scale=3.0)
    np.testing.assert_allclose(scaled.K, 3.0 * lqr.K)
    with pytest.raises(InvalidValueError, match="shape"):
        make_expert("linear", "qbc/LinearStable-v0", K=[[1.0, 2.0]])


def test_arctan_expert_is_optimal_on_arctan_env():
    expert = make_expert("arctan", "qbc/Arctan-v0")
    obs = np.linspace(-3, 3, 7, dtype=np.float32)[:, None]
    np.testing.assert_allclose(expert.act(obs), np.arctan(obs), rtol=1e-6)
    result = evaluate_expert(expert, "qbc/Arctan-v0", episodes=4, seed=0)
    assert result["mean_length"] == 200
    assert result["mean_return"] == pytest.approx(200.0, abs=1e-3)  # reward 1 every step
    lqr = evaluate_expert(make_expert("lqr", "qbc/Arctan-v0"), "qbc/Arctan-v0", episodes=4)
    assert lqr["mean_return"] < result["mean_return"]
    with pytest.raises(InvalidValueError, match="obs_dim == act_dim"):
        make_expert("arctan", "qbc/LinearStable-v0")


def test_stochastic_experts():
    expert = make_expert("lqr", "qbc/ScalarStable-v0", noise_std=0.2)
    obs = np.zeros((4000, 1), np.float32)
    np.testing.assert_array_equal(expert.act(obs), 0.0)  # deterministic: the mean action
    a = expert.act(obs, deterministic=False, rng=np.random.default_rng(1))
    b = expert.act(obs, deterministic=False, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() / 0.2 - 1) < 0.05  # 4000 samples: sd of the ratio ~ 0.011
    # Without rng, the expert's own generator (seeded by its seed param) is used.
    e1 = make_expert("lqr", "qbc/ScalarStable-v0", noise_std=0.2, seed=5)
    e2 = make_expert("lqr", "qbc/ScalarStable-v0", noise_std=0.2, seed=5)
    np.testing.assert_array_equal(e1.act(obs[:10], deterministic=False),
                                  e2.act(obs[:10], deterministic=False))
    with pytest.raises(InvalidValueError, match="noise_std"):
        make_expert("lqr", "qbc/ScalarStable-v0", noise_std=-1.0)


def test_experts_accept_env_instances_and_vector_envs():
    vec = gym.make_vec("qbc/InvertedPendulum-v0", num_envs=3,
                       vectorization_mode="vector_entry_point")
    e_vec = make_expert("lqr", vec)
    e_env = make_expert("lqr", gym.make("qbc/InvertedPendulum-v0"))
    np.testing.assert_array_equal(e_vec.K, e_env.K)
    obs, _ = vec.reset(seed=0)
    assert e_vec.act(obs).shape == (3, 1)


def test_lqr_needs_a_linearization():
    with pytest.raises(InvalidValueError, match="linearization"):
        make_expert("lqr", "Pendulum-v1")


@pytest.mark.slow
def test_sb3_expert_trains_saves_and_loads(tmp_path, one_torch_thread):
    from qbc.cli import main

    path = tmp_path / "sac_scalar.zip"
    # 120 steps: SAC starts learning after 100, so this runs 20 gradient steps.
    args = ["expert", "train", "--env", "qbc/ScalarStable-v0", "--timesteps", "120",
            "--out", str(path), "--eval-episodes", "2", "--seed", "1"]
    assert main(args) == 0
    assert path.is_file()
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["config"]["timesteps"] == 120 and report["episodes"] == 2
    assert main(args) == 2  # exists, no --overwrite: one-line error, exit code 2
    expert = make_expert("sb3", "qbc/ScalarStable-v0", path=str(path), algo="sac")
    obs = np.linspace(-2, 2, 5, dtype=np.float32)[:, None]
    u = expert.act(obs)
    assert u.shape == (5, 1) and u.dtype == np.float32
    assert np.all(np.abs(u) <= 10.0)
    np.testing.assert_array_equal(u, expert.act(obs))  # deterministic
    assert expert.params == {"path": str(path), "algo": "sac", "noise_std": 0.0, "seed": 0}
    with pytest.raises(CorruptFileError, match="does not exist"):
        make_expert("sb3", "qbc/ScalarStable-v0", path=str(tmp_path / "missing.zip"))
    with pytest.raises(InvalidValueError, match="shapes"):
        make_expert("sb3", "qbc/LinearStable-v0", path=str(path))
    with pytest.raises(UnknownNameError):
        make_expert("sb3", "qbc/ScalarStable-v0", path=str(path), algo="ddpg")


def test_train_sb3_expert_refuses_to_overwrite(tmp_path):
    from qbc.agents import train_sb3_expert

    (tmp_path / "m.zip").write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        train_sb3_expert("qbc/ScalarStable-v0", timesteps=10, path=tmp_path / "m")


def test_experts_are_actors_whose_extra_arguments_are_optional_keywords():
    from qbc.stepping.actor import Actor, BoundActor

    expert = make_expert("lqr", "qbc/ScalarStable-v0", noise_std=0.5)
    obs = np.ones((4, 1), np.float32)
    assert isinstance(expert, Actor)
    np.testing.assert_array_equal(expert.act(obs), expert.act(obs, deterministic=True))
    with pytest.raises(TypeError):
        expert.act(obs, False)  # keyword only: a positional flag is not silently a bool
    bound = BoundActor(expert, deterministic=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(
        bound.act(obs), expert.act(obs, deterministic=False, rng=np.random.default_rng(0)))
    assert bound.name == expert.name and not np.array_equal(bound.act(obs), expert.act(obs))
