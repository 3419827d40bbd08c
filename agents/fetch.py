"""Scripted experts of the Fetch tasks (``qbc/FetchPush-v4``, ``qbc/FetchPickAndPlace-v4``).

Both are pure functions of the (flattened) observation, with no hidden state and no randomness:
each step they read where the gripper, the object and the goal are and pick a phase from that
geometry alone, so the expert restarts correctly after anything (a slipped block, DAgger's
mixed actions) and every rollout coupled on a seed sees the same expert. An action moves the
gripper's target by ``0.05 * a[:3]`` m (Gymnasium-Robotics' scale) and opens (+1) or closes (-1)
the fingers (``a[3]``); the move is a proportional step ``gain * (target - grip) / 0.05``,
clipped to [-1, 1].

Push (fingers blocked): go to a point ``behind`` m behind the block on the line from the goal
through the block (first up to ``hover`` m above the block, then across, then down to the
block's height there), then push: the gripper moves by the block's remaining way to the goal
plus a correction back onto the line, at most ``speed`` of a full step (a slow push lets the
block slide less), and keeps still once the block is within ``tolerance`` of the goal.

Pick and place: open, hover over the block, lower around it, close; once the fingers hold it
(nearly closed on a block between them), carry it to the goal with the fingers closed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.agents.base import Expert
from qbc.envs.robotics import goal_space, observation_fields
from qbc.errors import InvalidValueError

#: Entries of Fetch's ``observation`` vector (gymnasium_robotics' ``_get_obs``), in its order.
_GRIP, _OBJECT, _FINGERS = slice(0, 3), slice(3, 6), slice(9, 11)
#: Gymnasium-Robotics moves the gripper's target by 0.05 m per unit of action.
_STEP_M = 0.05


def fetch_fields(info: dict[str, Any], what: str) -> dict[str, np.ndarray]:
    """Indices of grip, object, fingers and goal in the flat observation of a Fetch task with an
    object (from the env's dict space, :func:`qbc.envs.robotics.observation_fields`)."""
    task = info.get("task")
    try:
        fields = observation_fields(goal_space(task))
    except (InvalidValueError, AttributeError):
        fields = {}
    if set(fields) != {"achieved_goal", "desired_goal", "observation"} \
            or fields["observation"].size != 25:
        raise InvalidValueError(f"the {what} expert acts on qbc/FetchPush-v4 and "
                                "qbc/FetchPickAndPlace-v4 (flattened Fetch observations)")
    obs = fields["observation"]
    return {"grip": obs[_GRIP], "object": obs[_OBJECT], "fingers": obs[_FINGERS],
            "goal": fields["desired_goal"]}


def _move(target: np.ndarray, grip: np.ndarray, gain: float) -> np.ndarray:
    """(B, 3) position actions that step the gripper toward ``target`` (B, 3), clipped."""
    return np.clip(gain * (target - grip) / _STEP_M, -1.0, 1.0)


class FetchPushExpert(Expert):
    """Scripted pusher for ``qbc/FetchPush-v4``; see the module docstring.

    Args:
        behind: distance (m) behind the block's centre where the push starts.
        hover: height (m) above the block at which the gripper travels to that point.
        gain: proportional gain of the gripper's moves (1: the whole error in one step).
        speed: largest action (of 1) while pushing: slower pushes let the block slide less.
        tolerance: distance (m) of the block from the goal at which the gripper stops.
    """

    name = "fetch-push"

    def __init__(self, info: dict[str, Any], behind: float = 0.06, hover: float = 0.06,
                 gain: float = 1.0, speed: float = 0.4, tolerance: float = 0.015,
                 noise_std: float = 0.0, seed: int = 0):
        params = {"behind": float(behind), "hover": float(hover), "gain": float(gain),
                  "speed": float(speed), "tolerance": float(tolerance)}
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        _check_positive(params, "fetch-push")
        self.fields = fetch_fields(info, "fetch-push")
        self.behind, self.hover, self.gain, self.speed, self.tolerance = params.values()

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        f = self.fields
        grip, block, goal = obs[:, f["grip"]], obs[:, f["object"]], obs[:, f["goal"]]
        err = goal[:, :2] - block[:, :2]                               # the block's way to go
        dist = np.linalg.norm(err, axis=1, keepdims=True)
        direction = err / np.maximum(dist, 1e-6)
        rel = grip[:, :2] - block[:, :2]
        along = np.sum(rel * direction, axis=1)                       # < 0: behind the block
        lateral = rel - along[:, None] * direction
        lined_up = (along < -0.5 * self.behind) & (np.linalg.norm(lateral, axis=1) < 0.02)
        pushing = lined_up & (np.abs(grip[:, 2] - block[:, 2]) < 0.03)
        start = block.copy()
        start[:, :2] -= self.behind * direction
        # away from the start point: travel above the block's height, then lower onto it
        far = np.linalg.norm(grip[:, :2] - start[:, :2], axis=1) > 0.015
        start[:, 2] += np.where(far, self.hover, 0.0)
        move = _move(start, grip, self.gain)
        move[far & (grip[:, 2] < block[:, 2] + 0.7 * self.hover), :2] = 0.0  # up before across
        # pushing: move the gripper by the block's remaining way, back onto the line, slowly
        push = self.gain * (err - lateral) / _STEP_M
        norm = np.maximum(np.linalg.norm(push, axis=1, keepdims=True), 1e-9)
        push *= np.minimum(1.0, self.speed / norm)                     # its direction kept
        move[pushing, :2] = push[pushing]
        move[pushing, 2] = np.clip(self.gain * (block - grip)[pushing, 2] / _STEP_M, -1, 1)
        move[dist[:, 0] < self.tolerance] = 0.0                        # there: keep still
        return np.concatenate([move, np.zeros((len(obs), 1))], axis=1)


class FetchPickAndPlaceExpert(Expert):
    """Scripted pick-and-place for ``qbc/FetchPickAndPlace-v4``; see the module docstring.

    Args:
        hover: height (m) above the block from which the open gripper lowers onto it.
        gain: proportional gain of the gripper's moves (1: the whole error in one step).
    """

    name = "fetch-pick-and-place"

    def __init__(self, info: dict[str, Any], hover: float = 0.05, gain: float = 1.0,
                 noise_std: float = 0.0, seed: int = 0):
        params = {"hover": float(hover), "gain": float(gain)}
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        _check_positive(params, "fetch-pick-and-place")
        self.fields = fetch_fields(info, "fetch-pick-and-place")
        self.hover, self.gain = params["hover"], params["gain"]

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        f = self.fields
        grip, block, goal = obs[:, f["grip"]], obs[:, f["object"]], obs[:, f["goal"]]
        width = obs[:, f["fingers"]].sum(axis=1)                       # finger opening (m)
        off = np.linalg.norm(grip[:, :2] - block[:, :2], axis=1)
        height = grip[:, 2] - block[:, 2]
        at_block = (off < 0.01) & (np.abs(height) < 0.01)
        held = (off < 0.02) & (np.abs(height) < 0.02) & (width < 0.06)
        above = block.copy()
        above[:, 2] += np.where(off < 0.01, 0.0, self.hover)           # over it: go down
        target = np.where(held[:, None], goal, above)
        move = _move(target, grip, self.gain)
        move[at_block & ~held] = 0.0                                   # hold still while closing
        grip_cmd = np.where(at_block | held, -1.0, 1.0)[:, None]       # else open
        return np.concatenate([move, grip_cmd], axis=1)


def _check_positive(params: dict[str, float], what: str) -> None:
    for key, value in params.items():
        if not (np.isfinite(value) and value > 0):
            raise InvalidValueError(f"{what} expert {key} must be > 0, got {value}")
