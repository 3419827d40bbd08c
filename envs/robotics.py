"""Gymnasium-Robotics tasks as qbc envs (the optional extra: ``pip install "qbc[robotics]"``).

``qbc/FetchPush-v4``, ``qbc/FetchPickAndPlace-v4`` and ``qbc/PointMaze_Medium-v3`` are the
Gymnasium-Robotics envs of the same names (their settings, rewards, ``info`` and time limits:
50, 50 and 600 steps) with the goal-conditioned dict observation flattened by Gymnasium's own
``FlattenObservation``, so experts, datasets and policies see one ``Box``. ``spaces.flatten``
concatenates the dict's entries in the order of its keys, ``achieved_goal``, ``desired_goal``,
``observation``::

    Fetch (31,)      [0:3] achieved_goal (the object's position, m)  [3:6] desired_goal (m)
                     [6:31] observation: grip_pos 6:9, object_pos 9:12, object_rel_pos 12:15,
                     gripper_state 15:17 (finger joints, m), object_rot 17:20, object_velp
                     20:23, object_velr 23:26, grip_velp 26:29, gripper_vel 29:31
    PointMaze (8,)   [0:2] achieved_goal (the ball's x, y, m)  [2:4] desired_goal (m)
                     [4:8] observation: x, y, vx, vy

The inverse is Gymnasium's ``spaces.unflatten(goal_space(env), flat_obs)`` (one observation) or
:func:`unflatten_observations` (a batch); :func:`observation_fields` gives the index of each
entry in the flat vector. The layout is read from the env's dict space, never written by hand.

Unlike qbc's own envs these are not keyed-noise envs: the seed fixes the initial state (MuJoCo
steps deterministically, so rollouts coupled on seeds are exact; ``qbc rollout`` checks it),
and the time limit is part of the task, so longer horizons are capped at it. An episode's
success is ``info["is_success"]`` (Fetch) or ``info["success"]`` (PointMaze) at its last step.
Each names its scripted expert (:data:`ENVS`, ``expert``), the default one of the commands.

MuJoCo >= 3.3 (measured: 3.17.0, 4.0.1; 3.2.7 works): its ``mjtJoint`` enum compares unequal to
the numpy integers of ``model.jnt_type`` when it is on the left of ``==``, so the assertion
``joint_type in (mjJNT_HINGE, mjJNT_SLIDE)`` in ``gymnasium_robotics.utils.mujoco_utils`` fails
and the Fetch envs cannot be made. :func:`apply_joint_type_shim`, called when one of these envs
is made and only on a MuJoCo with that behaviour, lets that module compare plain integers
instead (same joint types, same results as under 3.2.7); nothing else changes.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from gymnasium.wrappers import FlattenObservation

from qbc.envs.registry import register_env
from qbc.errors import InvalidValueError

#: qbc id -> (Gymnasium-Robotics id, time limit (steps), scripted expert).
ROBOTICS_ENVS = {
    "qbc/FetchPush-v4": ("FetchPush-v4", 50, "fetch-push"),
    "qbc/FetchPickAndPlace-v4": ("FetchPickAndPlace-v4", 50, "fetch-pick-and-place"),
    "qbc/PointMaze_Medium-v3": ("PointMaze_Medium-v3", 600, "maze-planner"),
}

_JOINT_TYPES = ("mjJNT_FREE", "mjJNT_BALL", "mjJNT_SLIDE", "mjJNT_HINGE")


def goal_env(task: str, **kwargs: Any) -> gym.Env:
    """The Gymnasium-Robotics env ``task`` (its registered settings updated by ``kwargs``,
    e.g. ``render_mode``) with its dict observation flattened (``FlattenObservation``); the
    entry point of the ``qbc/`` robotics ids (``gymnasium.make`` adds the time limit)."""
    robotics = _import_robotics(task)
    apply_joint_type_shim(robotics.utils.mujoco_utils)
    spec = gym.spec(task)
    return FlattenObservation(load_env_creator(spec.entry_point)(**{**spec.kwargs, **kwargs}))


def _import_robotics(upstream: str) -> Any:
    """The gymnasium_robotics package (importing it registers its ids with Gymnasium); one
    line naming the extra when it is not installed."""
    try:
        # Its import prints a release notice (farama_notifications) on stderr: a refused
        # command's one error line would come second, and a run's stderr would not be clean.
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics  # optional dependency: the robotics extra
            import gymnasium_robotics.utils.mujoco_utils  # noqa: F401  (the shim's target)
    except ImportError as exc:
        raise InvalidValueError(
            f"the qbc/ version of {upstream} needs Gymnasium-Robotics ({exc}): "
            "pip install \"qbc[robotics]\" (or pip install gymnasium-robotics)") from None
    return gymnasium_robotics


def joint_types_compare_unequal(mujoco: Any) -> bool:
    """True where ``np.int32(t) in (mjtJoint member t,)`` is False (``mjtJoint.__eq__`` refuses
    numpy integers): the MuJoCo versions that break Gymnasium-Robotics' joint helpers."""
    hinge = mujoco.mjtJoint.mjJNT_HINGE
    return np.int32(int(hinge)) not in (hinge,)


class _PlainJointTypes:
    """``mujoco.mjtJoint``'s members as Python ints, which compare equal to numpy integers."""

    def __init__(self, mujoco: Any):
        for name in _JOINT_TYPES:
            setattr(self, name, int(getattr(mujoco.mjtJoint, name)))


class _MujocoWithPlainJointTypes:
    """The mujoco module as the shimmed helpers see it: itself, but with :class:`_PlainJointTypes`
    for ``mjtJoint``."""

    def __init__(self, mujoco: Any):
        self.mujoco = mujoco
        self.mjtJoint = _PlainJointTypes(mujoco)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.mujoco, name)


def apply_joint_type_shim(utils: Any) -> bool:
    """Give ``utils`` (``gymnasium_robotics.utils.mujoco_utils``) a view of its ``mujoco``
    whose joint types are plain ints, where MuJoCo needs it (:func:`joint_types_compare_unequal`)
    and it has not been given one yet. Returns True when it applied the shim now."""
    if isinstance(utils.mujoco, _MujocoWithPlainJointTypes):
        return False
    if not joint_types_compare_unequal(utils.mujoco):
        return False
    utils.mujoco = _MujocoWithPlainJointTypes(utils.mujoco)
    return True


def goal_space(env: Any) -> spaces.Dict:
    """The dict observation space behind a flattened robotics env: ``env`` a single env or a
    vector env made from a ``qbc/`` robotics id (or the upstream env itself)."""
    sub = getattr(env, "envs", None)  # a SyncVectorEnv: its first copy
    base = (sub[0] if sub else env).unwrapped
    space = base.observation_space
    if not isinstance(space, spaces.Dict):
        raise InvalidValueError(f"{type(base).__name__} has no dict observation space; "
                                f"goal_space() reads the qbc/ robotics envs "
                                f"({', '.join(ROBOTICS_ENVS)})")
    return space


def observation_fields(space: spaces.Dict) -> dict[str, np.ndarray]:
    """Key -> the indices (int64, in the entry's shape) of that entry in the flat observation,
    by Gymnasium's own ``unflatten`` of 0 .. flatdim - 1."""
    index = spaces.unflatten(space, np.arange(spaces.flatdim(space), dtype=np.float64))
    return {key: np.asarray(value).astype(np.int64) for key, value in index.items()}


def unflatten_observations(space: spaces.Dict, obs: np.ndarray) -> dict[str, np.ndarray]:
    """Flat observations (B, flatdim) -> key -> (B, *entry shape): for each row, what
    ``spaces.unflatten(space, row)`` gives (the inverse of the env's flattening)."""
    obs = np.asarray(obs)
    if obs.ndim != 2 or obs.shape[1] != spaces.flatdim(space):
        raise InvalidValueError(f"flat observations must have shape (B, {spaces.flatdim(space)}),"
                                f" got {obs.shape}")
    return {key: obs[:, idx] for key, idx in observation_fields(space).items()}


for _env_id, (_upstream, _horizon, _expert) in ROBOTICS_ENVS.items():
    register_env(_env_id, goal_env, None, horizon=_horizon, upstream=_upstream, expert=_expert,
                 task=_upstream)
