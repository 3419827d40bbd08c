"""The chunk floor (qbc.chunking.floor): the expert's noise-free plan (closed form for LQR on a
linear env; a simulator copy for MuJoCo and classic control, which reproduces the env's own next
state), through the chunk tokenizer, executed like the learner; in `qbc rollout` of a chunk
policy beside the learner."""

import gymnasium as gym
import numpy as np
import pytest

import qbc  # noqa: F401  (registers the qbc envs)
from qbc.agents import make_expert
from qbc.chunking import make_chunk_tokenizer
from qbc.chunking.execution import ChunkExecutor
from qbc.chunking.floor import (
    ModelPlanner,
    QuantizedChunkExpert,
    SimulatorPlanner,
    copy_sim_state,
    lqr_plan,
    make_planner,
)
from qbc.rollout.coupled import coupled_rollout


def test_model_plan_of_lqr_on_a_linear_env_is_the_closed_form():
    env = gym.make("qbc/LinearStable-v0")
    expert = make_expert("lqr", env)
    A, B = env.unwrapped.linearization()
    env.close()
    planner = make_planner("qbc/LinearStable-v0", expert)
    assert isinstance(planner, ModelPlanner)
    x = np.random.default_rng(0).normal(0, 0.05, size=(5, A.shape[0]))  # small: no clipping
    np.testing.assert_allclose(planner.plan(x, 6), lqr_plan(expert.K, A, B, x, 6), atol=1e-10)
    # the first planned action is the expert's own action
    np.testing.assert_allclose(planner.plan(x, 1)[:, 0], expert.act(x), atol=1e-6)


def test_noise_free_plan_on_a_noise_free_env_is_what_the_expert_does():
    """On a qbc env without process noise, the expert's plan from x_t is its actual future."""
    kw = {"noise_std": 0.0}
    env = gym.make("qbc/LinearUnstable-v0", **kw)
    expert = make_expert("lqr", env)
    env.close()
    res = coupled_rollout("qbc/LinearUnstable-v0", {"expert": expert}, [3, 4], 8, env_kwargs=kw)
    planner = make_planner("qbc/LinearUnstable-v0", expert)
    plan = planner.plan(res.observations["expert"][0], 8)
    np.testing.assert_allclose(plan.transpose(1, 0, 2), res.actions["expert"], atol=1e-4)


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Reacher-v5", "Pendulum-v1"])
def test_simulator_copy_reproduces_the_next_state(env_id):
    a, b = gym.make(env_id), gym.make(env_id)
    a.reset(seed=1)
    b.reset(seed=99)  # another state, overwritten by the copy
    rng = np.random.default_rng(0)
    for _ in range(5):
        a.step(a.action_space.sample())
    copy_sim_state(a.unwrapped, b.unwrapped)
    for _ in range(5):
        u = rng.uniform(a.action_space.low, a.action_space.high).astype(np.float32)
        oa = a.unwrapped.step(u)[0]
        ob = b.unwrapped.step(u)[0]
        np.testing.assert_allclose(ob, oa, rtol=0, atol=1e-9)
    a.close()
    b.close()


def test_simulator_planner_plans_the_expert_future_on_a_deterministic_env():
    """Pendulum-v1 has no noise: the plan from the state at step t is the expert's actions
    t .. t+k-1 of the rollout itself."""
    env = gym.make("Pendulum-v1")
    expert = make_expert("zoo:Pendulum-v1", env)
    env.close()
    planner = make_planner("Pendulum-v1", expert)
    assert isinstance(planner, SimulatorPlanner)
    venv = gym.make_vec("Pendulum-v1", 2, vectorization_mode="sync")
    obs, _ = venv.reset(seed=[5, 6])
    planner.bind_env(venv)
    plan = planner.plan(obs, 6)
    actions = []
    for _ in range(6):
        u = expert.act(obs)
        actions.append(u)
        obs = venv.step(u)[0]
    np.testing.assert_allclose(plan, np.stack(actions, axis=1), atol=1e-5)
    venv.close()
    with pytest.raises(Exception, match="no env to copy"):
        make_planner("Pendulum-v1", expert).plan(obs, 2)


def test_quantized_chunk_expert_is_the_plan_through_the_tokenizer_and_executes_like_a_policy():
    env = gym.make("qbc/LinearStable-v0")
    expert = make_expert("lqr", env)
    env.close()
    planner = make_planner("qbc/LinearStable-v0", expert)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, expert.obs_dim))
    tok = make_chunk_tokenizer("beast", bins=8, n_control_points=4, degree=3)
    tok.fit(planner.plan(x, 4))
    floor = QuantizedChunkExpert(planner, 4, tok)
    chunks, failed = floor.predict_chunks(x[:7])
    want = tok.decode(tok.encode(planner.plan(x[:7], 4)))
    np.testing.assert_allclose(chunks, want)
    assert not failed.any() and np.abs(chunks - planner.plan(x[:7], 4)).max() > 0  # quantized
    assert floor.name == "quantized_chunk_expert"
    assert QuantizedChunkExpert(planner, 4).name == "chunk_expert"
    # executed in a mode, on a coupled rollout, the executor binds the env and counts chunks
    res = coupled_rollout("qbc/LinearStable-v0",
                          {"expert": expert, "floor": ChunkExecutor(floor, "receding:2"),
                           "plain": ChunkExecutor(QuantizedChunkExpert(planner, 4), "open-loop")},
                          [0, 1, 2], 12)
    assert np.isfinite(res.rewards["floor"]).all()
    # unquantized plans executed open-loop on a noisy env differ from the expert, but little
    gap = np.abs(res.actions["plain"] - res.actions["expert"]).max()
    assert 0 < gap < 0.5


def test_an_env_whose_state_cannot_be_copied_has_no_planner_and_no_floor():
    pytest.importorskip("gymnasium_robotics")
    from qbc.agents import make_expert
    from qbc.chunking.floor import chunk_floor_actor, make_planner

    expert = make_expert("fetch-push", "qbc/FetchPush-v4")
    assert make_planner("qbc/FetchPush-v4", expert) is None
    assert chunk_floor_actor("qbc/FetchPush-v4", expert, 2, None, "open-loop") is None
    # a classic-control env copies its state from its first reset on: it keeps its planner
    pendulum = make_planner("Pendulum-v1", make_expert("zoo:Pendulum-v1", "Pendulum-v1"))
    assert pendulum is not None
    pendulum.close()
