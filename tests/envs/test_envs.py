"""The qbc/ environments: API conformance, coupled noise, native vector envs, linearisations,
describe()."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import qbc  # noqa: F401  (registers the envs)
from qbc.envs import ENVS, available_envs, describe, keyed_normals
from qbc.envs.control import lqr_gain
from qbc.errors import InvalidValueError, UnknownNameError

SYSTEM_KWARGS = {"A": [[1.1, 0.2], [0.0, 0.7]], "B": [[0.0], [1.0]]}
# Gymnasium's checker recommends [-1, 1] action boxes and finite observation bounds; our envs
# keep physical action units and unbounded raw states on purpose. Any other warning fails.
KNOWN_WARNINGS = ("symmetric and normalized", "minimum value is -infinity",
                  "maximum value is infinity")


def kwargs_for(env_id: str) -> dict:
    return dict(SYSTEM_KWARGS) if env_id == "qbc/LinearSystem-v0" else {}


# qbc's own envs (keyed noise, native vector versions); the Gymnasium-Robotics ones have their
# own tests in test_robotics.py (they need the robotics extra).
ALL_IDS = [i for i in available_envs() if ENVS[i].upstream is None]
# Envs with an LQR solution (the detour task's obstacle coordinate is uncontrollable; it has
# its own tests in test_detour.py).
LQR_IDS = [i for i in ALL_IDS if "Detour" not in i]


def test_every_id_is_registered_with_a_vector_entry_point():
    assert len(ALL_IDS) == 10
    for env_id in ALL_IDS:
        spec = gym.spec(env_id)
        assert spec.vector_entry_point is not None
        assert spec.max_episode_steps == (50 if "Detour" in env_id else 200)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes(env_id):
    env = gym.make(env_id, **kwargs_for(env_id))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    unexpected = [str(w.message) for w in caught
                  if not any(k in str(w.message) for k in KNOWN_WARNINGS)]
    assert unexpected == []
    space = env.action_space
    assert space.dtype == np.float32 and np.all(np.isfinite(space.low))
    assert np.all(np.isfinite(space.high))


def _rollout_residuals(env_id, seed, offsets, **kwargs):
    """Reset with seed, apply u_t = -K x_t + offsets[t] (LQR feedback keeps unstable envs near
    the origin); return x0 and the residuals x'_t - f(x_t, clip(u_t))."""
    env = gym.make(env_id, **kwargs_for(env_id), **kwargs)
    base = env.unwrapped
    K = lqr_gain(*base.linearization(), *base.cost_matrices())
    env.reset(seed=seed)
    x0 = base.state
    residuals = []
    for offset in offsets:
        x = base.state
        u = (-K @ x + offset).astype(np.float32)
        _, _, terminated, truncated, _ = env.step(u)
        f = base.dynamics(x[None], base.clip_action(u[None]))[0]
        residuals.append(base.state - f)
        assert not terminated
    return x0, np.array(residuals)


@pytest.mark.parametrize("env_id", LQR_IDS)
def test_same_seed_same_noise_whatever_the_actions(env_id):
    T = 150
    m = gym.make(env_id, **kwargs_for(env_id)).action_space.shape[0]
    rng = np.random.default_rng(0)
    a1 = 0.05 * rng.standard_normal((T, m)).astype(np.float32)
    a2 = -a1 + 0.02  # different actions
    # Arctan has no noise by default; switch it on so the check is not vacuous.
    extra = {"noise_std": 0.05} if env_id == "qbc/Arctan-v0" else {}
    x0_1, w1 = _rollout_residuals(env_id, 3, a1, max_episode_steps=T, **extra)
    x0_2, w2 = _rollout_residuals(env_id, 3, a2, max_episode_steps=T, **extra)
    np.testing.assert_array_equal(x0_1, x0_2)
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-12)
    assert np.abs(w1).max() > 0
    _, w3 = _rollout_residuals(env_id, 4, a1, max_episode_steps=T, **extra)
    assert not np.allclose(w1, w3)  # another seed, another noise sequence


def test_noise_has_the_documented_std():
    T = 500
    _, w = _rollout_residuals("qbc/LinearStable-v0", 0, np.zeros((T, 2), np.float32),
                              max_episode_steps=T, noise_std=0.3)
    assert w.shape == (T, 4)
    assert abs(w.std() / 0.3 - 1) < 0.06  # 2000 N(0, 0.09) samples: sd of the ratio ~ 0.016
    assert abs(w.mean()) < 0.05


VECTOR_CASES = [(i, {}) for i in ALL_IDS] + [
    ("qbc/ScalarUnstable-v0", {"divergence_threshold": 5.0}),  # autoreset after termination
]


@pytest.mark.parametrize(("env_id", "extra"), VECTOR_CASES)
def test_vector_env_equals_single_envs(env_id, extra):
    M, T, H = 3, 40, 7
    kwargs = {**kwargs_for(env_id), **extra}
    vec = gym.make_vec(env_id, num_envs=M, vectorization_mode="vector_entry_point",
                       max_episode_steps=H, **kwargs)
    singles = [gym.make(env_id, max_episode_steps=H, **kwargs) for _ in range(M)]
    m = vec.single_action_space.shape[0]
    actions = np.random.default_rng(1).uniform(-1, 1, (T, M, m)).astype(np.float32)
    obs, _ = vec.reset(seed=10)
    np.testing.assert_array_equal(obs, np.stack([s.reset(seed=10 + i)[0]
                                                 for i, s in enumerate(singles)]))
    done = np.zeros(M, dtype=bool)
    n_ends = {"terminated": 0, "truncated": 0}
    for t in range(T):
        obs, reward, terminated, truncated, info = vec.step(actions[t])
        assert obs.dtype == np.float32 and obs.shape == (M, vec.single_observation_space.shape[0])
        for i, env in enumerate(singles):
            if done[i]:  # next-step autoreset: the action is ignored, reward 0
                o, _ = env.reset()
                r, te, tr = 0.0, False, False
                assert not info["_cost"][i]
            else:
                o, r, te, tr, inf = env.step(actions[t, i])
                assert info["cost"][i] == pytest.approx(inf["cost"], rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-6)
            assert reward[i] == pytest.approx(r, rel=1e-9, abs=1e-12)
            assert (terminated[i], truncated[i]) == (te, tr)
            done[i] = te or tr
            n_ends["terminated"] += te
            n_ends["truncated"] += tr
    assert n_ends["truncated"] + n_ends["terminated"] >= M  # the check crossed autoresets
    if extra:
        assert n_ends["terminated"] > 0


def test_vector_reset_with_a_list_of_seeds():
    seeds = [5, 9, 2]
    vec = gym.make_vec("qbc/LinearUnstable-v0", num_envs=3,
                       vectorization_mode="vector_entry_point")
    obs, _ = vec.reset(seed=seeds)
    for i, s in enumerate(seeds):
        o, _ = gym.make("qbc/LinearUnstable-v0").reset(seed=s)
        np.testing.assert_array_equal(obs[i], o)
    with pytest.raises(InvalidValueError, match="one seed per copy"):
        vec.reset(seed=[1, 2])


def test_make_vec_takes_the_same_kwargs_as_make():
    vec = gym.make_vec("qbc/ScalarStable-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       noise_std=0.0, x0_std=0.0, max_episode_steps=5)
    obs, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(obs, 0.0)
    for t in range(5):
        obs, reward, terminated, truncated, _ = vec.step(np.zeros((4, 1), np.float32))
        np.testing.assert_array_equal(obs, 0.0)  # no noise, no x0 spread: stays at 0
        np.testing.assert_array_equal(reward, 1.0)  # exp(-0)
        assert truncated.all() == (t == 4)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_linearization_matches_finite_differences(env_id):
    base = gym.make(env_id, **kwargs_for(env_id)).unwrapped
    A, B = base.linearization()
    n, m = base.obs_dim, base.act_dim
    assert A.dtype == np.float64 and A.shape == (n, n) and B.shape == (n, m)
    h = 1e-6
    x_pm, u0 = h * np.concatenate([np.eye(n), -np.eye(n)]), np.zeros((2 * n, m))
    fx = base.dynamics(x_pm, u0)
    fd_A = (fx[:n] - fx[n:]).T / (2 * h)
    u_pm, x0 = h * np.concatenate([np.eye(m), -np.eye(m)]), np.zeros((2 * m, n))
    fu = base.dynamics(x0, u_pm)
    fd_B = (fu[:m] - fu[m:]).T / (2 * h)
    np.testing.assert_allclose(A, fd_A, atol=1e-7)
    np.testing.assert_allclose(B, fd_B, atol=1e-7)
    Q, R = base.cost_matrices()
    assert Q.shape == (n, n) and R.shape == (m, m)


@pytest.mark.parametrize(("env_id", "open_loop"), [
    ("qbc/ScalarStable-v0", 0.5), ("qbc/ScalarUnstable-v0", 2.0),
    ("qbc/LinearStable-v0", 0.9), ("qbc/LinearUnstable-v0", 1.2), ("qbc/Arctan-v0", 0.2),
])
def test_describe_numbers(env_id, open_loop):
    d = describe(env_id)
    json.dumps(d, allow_nan=False)  # JSON-safe
    assert d["open_loop_spectral_radius"] == pytest.approx(open_loop, abs=1e-9)
    assert d["lqr_closed_loop_spectral_radius"] < 1
    assert d["horizon"] == 200
    assert d["observation_low"][0] is None and d["action_high"][0] > 0


@pytest.mark.parametrize("env_id", ["qbc/InvertedPendulum-v0", "qbc/CartPoleContinuous-v0"])
def test_mechanical_envs_are_unstable_open_loop(env_id):
    d = describe(env_id)
    assert d["open_loop_spectral_radius"] > 1.01
    assert d["lqr_closed_loop_spectral_radius"] < 1


def test_describe_with_a_detuned_linear_expert():
    from qbc.agents import make_expert

    weak = make_expert("linear", "qbc/LinearUnstable-v0", gain_scale=0.2)
    d = describe("qbc/LinearUnstable-v0", expert=weak)
    assert d["expert_closed_loop_spectral_radius"] > 1  # too little feedback: unstable
    full = describe("qbc/LinearUnstable-v0", expert=make_expert("linear", "qbc/LinearUnstable-v0"))
    assert full["expert_closed_loop_spectral_radius"] == pytest.approx(
        full["lqr_closed_loop_spectral_radius"], rel=1e-12)
    d_env = describe(gym.make("qbc/LinearUnstable-v0"), expert=np.array(weak.K))
    assert d_env["expert_closed_loop_spectral_radius"] == d["expert_closed_loop_spectral_radius"]


def test_describe_errors():
    with pytest.raises(UnknownNameError, match="LinearUnstable"):
        describe("qbc/LinearUnstabel-v0")
    with pytest.raises(InvalidValueError, match="shape"):
        describe("qbc/LinearUnstable-v0", expert=np.zeros((1, 4)))


def test_unstable_open_loop_terminates_without_overflow():
    env = gym.make("qbc/ScalarUnstable-v0", max_episode_steps=500)
    env.reset(seed=0)
    for t in range(500):  # noqa: B007
        obs, reward, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
        assert np.all(np.isfinite(obs)) and 0.0 <= reward <= 1.0
        if terminated:
            break
    assert terminated and not truncated
    assert 1e3 < abs(float(obs[0])) < 3e3 and t < 20  # doubling from O(1) passes 1e3 fast


def test_rewards_and_costs():
    env = gym.make("qbc/Arctan-v0")
    x0 = np.array([0.7])
    env.reset(seed=0, options={"x0": x0})
    _, r, _, _, info = env.step(np.array([0.1], np.float32))
    assert info["cost"] == pytest.approx(abs(0.1 - np.arctan(0.7)), rel=1e-6)
    assert r == pytest.approx(1 - info["cost"], rel=1e-6)
    _, r, _, _, info = env.step(np.array([2.0], np.float32))
    assert 0.0 <= r <= 1.0
    env = gym.make("qbc/LinearStable-v0", noise_std=0.0)
    x0 = np.array([1.0, 0.0, -1.0, 0.5])
    env.reset(seed=0, options={"x0": x0})
    u = np.array([0.5, -0.25], np.float32)
    obs, r, _, _, info = env.step(u)
    base = env.unwrapped
    assert info["cost"] == pytest.approx(x0 @ base.Q @ x0 + u @ base.R @ u, rel=1e-6)
    assert r == pytest.approx(np.exp(-info["cost"]), rel=1e-6)
    np.testing.assert_allclose(obs, base.A @ x0 + base.B @ u, rtol=1e-6)


def test_reset_with_x0_keeps_the_noise_sequence():
    a = gym.make("qbc/LinearStable-v0")
    b = gym.make("qbc/LinearStable-v0")
    a.reset(seed=7)
    b.reset(seed=7, options={"x0": np.ones(4)})
    np.testing.assert_array_equal(b.unwrapped.state, np.ones(4))
    u = np.zeros(2, np.float32)
    xa, xb = a.unwrapped.state, b.unwrapped.state
    a.step(u)
    b.step(u)
    base = a.unwrapped
    wa = a.unwrapped.state - base.dynamics(xa[None], u[None])[0]
    wb = b.unwrapped.state - base.dynamics(xb[None], u[None])[0]
    np.testing.assert_allclose(wa, wb, atol=1e-12)


@pytest.mark.parametrize("kwargs", [
    {"noise_std": -1.0}, {"x0_std": float("nan")}, {"action_bound": 0.0},
    {"divergence_threshold": float("inf")}, {"Q": [[1, 0], [0, -1]]}, {"R": [[0.0]]},
    {"A": [[1.0, 2.0]]}, {"B": [[1.0]]},
])
def test_bad_parameters_raise_typed_errors(kwargs):
    with pytest.raises(InvalidValueError):
        gym.make("qbc/LinearSystem-v0", **{**SYSTEM_KWARGS, **kwargs})


def test_keyed_normals_are_standard_normal_and_independent():
    from scipy import stats

    keys = np.random.default_rng(0).integers(0, 2**64, size=400, dtype=np.uint64)
    T, n = 50, 3
    z = np.stack([keyed_normals(keys, np.full(400, t), n) for t in range(T)], axis=1)
    assert z.shape == (400, T, n)
    flat = z.ravel()  # 60,000 values
    assert stats.kstest(flat, "norm").pvalue > 0.01
    assert abs(flat.mean()) < 0.02 and abs(flat.std() - 1) < 0.02  # sd of each ~ 0.004
    lag1 = np.corrcoef(z[:, :-1].ravel(), z[:, 1:].ravel())[0, 1]
    across = np.corrcoef(z[..., 0].ravel(), z[..., 1].ravel())[0, 1]
    keys_next = np.corrcoef(z[:-1].ravel(), z[1:].ravel())[0, 1]
    assert max(abs(lag1), abs(across), abs(keys_next)) < 0.02
    # A pure function of (key, t): recomputing one entry alone gives the same numbers.
    np.testing.assert_array_equal(keyed_normals(keys[7:8], np.array([13]), n)[0], z[7, 13])


def test_env_ids_resolve_with_a_folder_named_qbc_in_the_working_directory(tmp_path):
    """A ``qbc/`` folder in the working directory shadows the package root as an empty namespace
    package (``python -c`` puts the working directory first); the qbc/ ids must still exist."""
    import subprocess
    import sys

    (tmp_path / "qbc").mkdir()
    code = ("from qbc.envs.make import check_env_id, opened_env\n"
            "print(check_env_id('qbc/LinearUnstable-v0').id)\n"
            "with opened_env('qbc/LinearUnstable-v0') as env: print(env.action_space.shape)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["qbc/LinearUnstable-v0", "(2,)"]


def test_opened_env_closes_what_it_made_and_passes_instances_through():
    from qbc.envs.make import opened_env
    from qbc.errors import InvalidValueError

    with opened_env("qbc/LinearUnstable-v0", max_episode_steps=5) as env:
        assert env.spec.max_episode_steps == 5
    mine = gym.make("qbc/LinearUnstable-v0")
    with opened_env(mine) as env:
        assert env is mine
    with pytest.raises(InvalidValueError, match="env id"), opened_env(mine, x=1):
        pass
    mine.close()


@pytest.mark.parametrize("value", [True, 1e308, "abc", [0.1], float("nan")])
def test_a_noise_level_that_is_no_float32_number_is_refused_when_the_env_is_made(value):
    # True was taken as 1.0, and 1e308 built an env whose first noisy step overflowed float32
    # (a sweep found out only in a cell, after writing its folder and dataset)
    import gymnasium as gym

    from qbc.errors import InvalidValueError

    with pytest.raises(InvalidValueError, match="noise_std must be a finite number >= 0"):
        gym.make("qbc/ScalarUnstable-v0", noise_std=value)
    gym.make("qbc/ScalarUnstable-v0", noise_std=0).close()  # zero and ints are numbers
