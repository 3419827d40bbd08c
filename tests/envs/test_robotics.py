"""The Gymnasium-Robotics tasks (issue 33): qbc/FetchPush-v4, qbc/FetchPickAndPlace-v4 and
qbc/PointMaze_Medium-v3 with flattened observations, their scripted experts and their success.

The registry, the flattening's inverse, the MuJoCo joint-type shim and the maze planner's
tie-breaking are tested without the extra (fakes stand in for MuJoCo and the maze); the tests
that make the envs skip cleanly without gymnasium_robotics (``pip install -e ".[robotics]"``)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import qbc  # noqa: F401  (registers the envs)
from qbc.agents import make_expert
from qbc.agents.maze import goal_distances, tie_key
from qbc.cli import main
from qbc.envs import ENVS, ROBOTICS_ENVS, goal_space, observation_fields, unflatten_observations
from qbc.envs.robotics import apply_joint_type_shim, joint_types_compare_unequal
from qbc.errors import InvalidValueError
from qbc.rollout.coupled import check_coupling
from qbc.stepping.limits import cap_horizons, is_keyed_env
from qbc.stepping.loop import episode_outcomes, run_steps

MAZE = "qbc/PointMaze_Medium-v3"
#: gymnasium_robotics.envs.maze.maps.MEDIUM_MAZE (1: wall).
MEDIUM = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 0, 0, 0, 1],
          [1, 1, 0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 0, 0, 0, 1], [1, 0, 1, 0, 0, 1, 0, 1],
          [1, 0, 0, 0, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1]]


@pytest.fixture
def robotics():
    return pytest.importorskip("gymnasium_robotics")


# -- without the extra ------------------------------------------------------------------------
def test_the_ids_are_registered_as_third_party_tasks_with_their_experts():
    assert set(ROBOTICS_ENVS) <= set(ENVS.names())
    for env_id, (upstream, horizon, expert) in ROBOTICS_ENVS.items():
        spec = ENVS[env_id]
        assert (spec.upstream, spec.horizon, spec.expert) == (upstream, horizon, expert)
        assert spec.vector_entry_point is None and gym.spec(env_id).max_episode_steps == horizon
        assert not is_keyed_env(env_id)  # the time limit is the task's: horizons are capped
        assert cap_horizons(env_id, [10, 10_000])[0] == [10, horizon]
    assert is_keyed_env("qbc/DetourStable-v0")


def test_without_the_extra_making_one_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # import fails as if absent
    with pytest.raises(InvalidValueError, match=r"qbc\[robotics\]"):
        qbc.envs.make.make_env("qbc/FetchPush-v4")


def test_the_flattening_is_gymnasiums_and_its_inverse_is_exact():
    space = spaces.Dict({"observation": spaces.Box(-5, 5, (4,)), "desired_goal":
                         spaces.Box(-5, 5, (2,)), "achieved_goal": spaces.Box(-5, 5, (2,))})
    space.seed(0)
    samples = [space.sample() for _ in range(5)]
    flat = np.stack([spaces.flatten(space, s) for s in samples])
    fields = observation_fields(space)
    assert [fields[k].tolist() for k in ("achieved_goal", "desired_goal", "observation")] == [
        [0, 1], [2, 3], [4, 5, 6, 7]]  # keys in sorted order, as documented
    back = unflatten_observations(space, flat)
    for i, sample in enumerate(samples):
        for key, value in sample.items():
            np.testing.assert_array_equal(back[key][i], value)
    with pytest.raises(InvalidValueError, match="shape"):
        unflatten_observations(space, flat[:, :5])


class _FussyEnum(int):
    """An enum member that refuses numpy integers in ``==``, as MuJoCo >= 3.3's mjtJoint."""

    def __eq__(self, other):
        return type(other) in (int, _FussyEnum) and int(self) == int(other)

    __hash__ = int.__hash__


def _fake_utils(fussy: bool) -> SimpleNamespace:
    """A stand-in for gymnasium_robotics.utils.mujoco_utils with its assertion."""
    kind = _FussyEnum if fussy else int
    joint = SimpleNamespace(**{n: kind(v) for n, v in (("mjJNT_FREE", 0), ("mjJNT_BALL", 1),
                                                        ("mjJNT_SLIDE", 2), ("mjJNT_HINGE", 3))})
    utils = SimpleNamespace(mujoco=SimpleNamespace(mjtJoint=joint, mj_forward="forward"))

    def ndim(joint_type):  # the test gymnasium_robotics' set_joint_qpos makes
        if joint_type == utils.mujoco.mjtJoint.mjJNT_FREE:
            return 7
        assert joint_type in (utils.mujoco.mjtJoint.mjJNT_HINGE, utils.mujoco.mjtJoint.mjJNT_SLIDE)
        return 1

    utils.ndim = ndim
    return utils


def test_the_joint_type_shim_fixes_the_comparison_and_only_where_needed():
    utils = _fake_utils(fussy=True)
    assert joint_types_compare_unequal(utils.mujoco)
    with pytest.raises(AssertionError):
        utils.ndim(np.int32(3))
    assert apply_joint_type_shim(utils) is True
    assert [utils.ndim(np.int32(t)) for t in (0, 2, 3)] == [7, 1, 1]
    with pytest.raises(AssertionError):
        utils.ndim(np.int32(1))  # a ball joint is still refused there, as before
    assert utils.mujoco.mj_forward == "forward"  # everything else is mujoco's own
    assert apply_joint_type_shim(utils) is False  # applied once
    plain = _fake_utils(fussy=False)
    assert not joint_types_compare_unequal(plain.mujoco)
    assert apply_joint_type_shim(plain) is False and plain.ndim(np.int32(3)) == 1


def _fake_maze_env() -> SimpleNamespace:
    """The parts of PointMaze_Medium the planner reads (its dict space and its maze)."""
    space = spaces.Dict({"achieved_goal": spaces.Box(-9, 9, (2,), np.float64),
                         "desired_goal": spaces.Box(-9, 9, (2,), np.float64),
                         "observation": spaces.Box(-9, 9, (4,), np.float64)})
    maze = SimpleNamespace(maze_map=MEDIUM, maze_size_scaling=1.0, x_map_center=4.0,
                           y_map_center=4.0)
    task = SimpleNamespace(observation_space=space, maze=maze)
    task.unwrapped = task
    return SimpleNamespace(observation_space=spaces.Box(-9, 9, (8,), np.float64),
                           action_space=spaces.Box(-1, 1, (2,), np.float32), unwrapped=task,
                           spec=None)


def test_bfs_distances_on_the_medium_maze():
    free = np.array(MEDIUM) != 1
    dist = goal_distances(free, (6, 6))
    assert dist[6, 6] == 0 and dist[1, 1] == 10 and dist[0, 0] == -1
    assert (dist[free] >= 0).all()  # every free cell reaches the goal


def test_the_planner_breaks_ties_at_random_per_goal_and_repeatably():
    expert = make_expert("maze-planner", _fake_maze_env())
    rng = np.random.default_rng(0)
    # the ball in cell (1, 1), the goal somewhere in cell (6, 6): (1, 2) and (2, 1) are both on a
    # shortest route; the goal's noise (as PointMaze draws it) picks one per episode
    goal = expert.cell_centres(np.array([[6, 6]])) + rng.uniform(-0.25, 0.25, (400, 2))
    ball = np.repeat(expert.cell_centres(np.array([[1, 1]])), 400, axis=0)
    nxt = expert.cells(expert.waypoints(ball, goal))
    right = (nxt == [1, 2]).all(axis=1)
    assert (right | (nxt == [2, 1]).all(axis=1)).all()
    assert 0.4 < right.mean() < 0.6  # 400 fair coins: sd 0.025
    np.testing.assert_array_equal(nxt, expert.cells(expert.waypoints(ball, goal)))
    other = make_expert("maze-planner", _fake_maze_env(), seed=1)
    assert (other.cells(other.waypoints(ball, goal)) != nxt).any(axis=1).mean() > 0.3
    # float32 storage of the observation keeps the coin (it hashes the goal's float32 bits)
    np.testing.assert_array_equal(tie_key(goal, nxt, 0),
                                  tie_key(goal.astype(np.float32).astype(np.float64), nxt, 0))


def test_the_fetch_experts_refuse_other_envs():
    with pytest.raises(InvalidValueError, match="qbc/FetchPush-v4"):
        make_expert("fetch-push", "qbc/LinearStable-v0")
    with pytest.raises(InvalidValueError, match="PointMaze"):
        make_expert("maze-planner", "qbc/LinearStable-v0")


# -- with the extra ---------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", list(ROBOTICS_ENVS))
def test_the_env_is_the_upstream_env_flattened(robotics, env_id):
    upstream = ROBOTICS_ENVS[env_id][0]
    env, raw = gym.make(env_id), gym.make(upstream)
    obs, _ = env.reset(seed=3)
    raw_obs, _ = raw.reset(seed=3)
    space = goal_space(env)
    np.testing.assert_array_equal(obs, spaces.flatten(space, raw_obs))
    back = unflatten_observations(space, obs[None])
    for key, value in raw_obs.items():
        np.testing.assert_array_equal(back[key][0], value)
    action = env.action_space.sample()
    obs, *_, info = env.step(action)
    raw_obs, *_, raw_info = raw.step(action)
    np.testing.assert_array_equal(obs, spaces.flatten(space, raw_obs))
    assert set(info) & {"success", "is_success"} == set(raw_info) & {"success", "is_success"}


@pytest.mark.parametrize("env_id", list(ROBOTICS_ENVS))
@pytest.mark.slow
def test_each_scripted_expert_succeeds(robotics, env_id):
    expert = make_expert(ROBOTICS_ENVS[env_id][2], env_id)
    venv = gym.make_vec(env_id, num_envs=10, vectorization_mode="sync")
    steps = run_steps(venv, expert, seeds=500)  # 10 episodes; docs/experts.md: 100 episodes
    success = episode_outcomes(steps)["success"]
    assert success.sum() >= 9, success


def test_fetch_rollouts_on_the_same_seeds_are_exactly_coupled(robotics):
    coupling = check_coupling("qbc/FetchPush-v4", make_expert("fetch-push", "qbc/FetchPush-v4"),
                              steps=10)
    assert coupling["exact"] and coupling["max_state_diff"] == 0.0


def test_the_maze_expert_takes_both_shortest_routes(robotics):
    env = gym.make(MAZE)
    expert = make_expert("maze-planner", MAZE)
    firsts = set()
    for seed in range(12):
        obs, _ = env.reset(seed=seed, options={"goal_cell": np.array([6, 6]),
                                               "reset_cell": np.array([1, 1])})
        while tuple(expert.cells(obs[None, 4:6])[0]) == (1, 1):
            obs, *_ = env.step(expert.act(obs[None])[0])
        firsts.add(tuple(expert.cells(obs[None, 4:6])[0]))
    assert firsts == {(1, 2), (2, 1)}


def test_collect_prints_the_success_rate_of_fetch(robotics, capsys):
    assert main(["collect", "--env", "qbc/FetchPush-v4", "--dataset", "rob/push-v0",
                 "--episodes", "4", "--num-envs", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "expert fetch-push (default: the scripted expert" in out
    assert captured.err == ""  # nor Gymnasium-Robotics' import notice
    assert "success 100.0% [95% CI" in out and "(4 of 4)" in out


def test_an_expert_on_the_upstream_dict_env_points_at_the_flattened_id(robotics):
    with pytest.raises(InvalidValueError, match="use qbc/PointMaze_Medium-v3"):
        make_expert("maze-planner", "PointMaze_Medium-v3")


@pytest.mark.slow
def test_a_chunk_policy_on_a_fetch_task_trains_and_rolls_out_without_a_chunk_floor(
        robotics, tmp_path, capsys, tiny_model_flags):
    """The Fetch tasks' state cannot be copied (their goal lives outside MuJoCo's), so they
    have no chunk floor: train-chunked's closing rollout and qbc rollout report none, where
    they used to fail after training."""
    import json

    assert main(["collect", "--env", "qbc/FetchPush-v4", "--dataset", "rob/push-chunk-v0",
                 "--episodes", "3", "--max-episode-steps", "10", "--no-progress"]) == 0
    out = tmp_path / "run"
    assert main(["train-chunked", "--dataset", "rob/push-chunk-v0", "--out", str(out),
                 "--steps", "3", "--chunk-k", "2", "--bins", "8", "--rollout-episodes", "1",
                 "--rollout-horizon", "4", "--no-progress", "--no-tensorboard",
                 *tiny_model_flags]) == 0
    assert "chunk floor" not in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert "chunk_floor_regret" not in json.dumps(summary)
    assert main(["rollout", "--policy", str(out / "best"), "--out", str(tmp_path / "ro"),
                 "--episodes", "1", "--horizons", "4", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "ro" / "metrics.json").read_text())
    assert set(metrics["policies"]) == {"expert", "policy"}
