"""The one batched rollout loop: M copies of a vector env stepped together by an actor.

Coupled rollouts (:mod:`qbc.rollout.coupled`), expert evaluation (:mod:`qbc.agents.evaluate`) and
data
collection step their envs with :func:`run_steps` and read what they need from the
:class:`Steps` it records. It depends on numpy and the :class:`~qbc.stepping.actor.Actor` protocol
only,
so the experts' own modules can use it.

>>> steps = run_steps(venv, actor, seeds=[0, 1, 2], steps=100)     # exactly 100 steps
>>> steps = run_steps(venv, actor, seeds=0)                         # until every episode ended
>>> returns = (steps.rewards * steps.running()).sum(axis=0)

Envs that report an outcome in ``info`` get it recorded too (:data:`TRACKED_INFO`):
``success`` (qbc's detour task, PointMaze), ``is_success`` (Fetch) and ``mode`` (the detour
task's side of the obstacle), one (T, M) array each in :attr:`Steps.info`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.stepping.actor import reset_actor

#: ``execute(obs (M, obs_dim), actions (M, act_dim), t) -> executed actions (M, act_dim)``:
#: what the env runs instead of the actor's actions (action noise, DART, a DAgger mixture).
Execute = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

#: The per-step ``info`` entries :func:`run_steps` records when an env reports them.
TRACKED_INFO = ("success", "is_success", "mode")


@dataclass
class Steps:
    """T steps of M env copies, as :func:`run_steps` recorded them.

    observations: (T+1, M, *obs_shape), as the env gave them: row 0 after the reset, row t+1
        after step t (at the step an episode ends, its final observation, whatever the
        vector env's autoreset mode);
    actions: (T, M, *act_shape) in the action space's dtype, the actions handed to the env;
    labels: (T, M, *act_shape), the actor's own actions, when ``execute`` changed them (else
        None: they are ``actions``);
    rewards: (T, M) float64; terminated, truncated: (T, M) bool;
    lengths: (M,) int64, steps of each copy's first episode (0: it had not ended);
    info: key of :data:`TRACKED_INFO` -> (T, M) array of that ``info`` entry at each step (the
        episode's final value at the step it ends; 0 where the env gave none), for the keys
        the env reported at least once.
    """

    observations: np.ndarray
    actions: np.ndarray
    labels: np.ndarray | None
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    lengths: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def running(self, ends: str = "done") -> np.ndarray:
        """(T, M) bool: True at step t while the copy's first episode had not ended before t,
        ended meaning terminated or truncated (``ends="done"``) or terminated only
        (``ends="terminated"``; a time limit does not end it)."""
        ended = self.terminated if ends == "terminated" else self.terminated | self.truncated
        before = np.zeros_like(ended)
        before[1:] = np.logical_or.accumulate(ended, axis=0)[:-1]
        return ~before


def run_steps(venv: Any, actor: Any, seeds: int | Sequence[int], steps: int | None = None,
              copies: int | None = None, execute: Execute | None = None, clip: bool = False,
              on_step: Callable[[np.ndarray], None] | None = None) -> Steps:
    """Reset ``venv`` with ``seeds`` (an int: copy i gets seed + i; or one seed per copy),
    call ``reset()`` on the actor if it has one (and ``bind_env(venv)``), and step:
    ``actor.act(obs (M, obs_dim))`` gives the actions (M, act_dim), cast to the action space's
    dtype.

    Args:
        steps: step exactly this many times; None: until the first episode of each of the
            first ``copies`` copies (default: all M) has ended (terminated or truncated).
        execute: the actions the env runs instead (see :data:`Execute`); the actor's are then
            kept as ``labels``.
        clip: clip the executed actions to the action space's bounds.
        on_step: called after every step with the copies whose first episode ended at it (M,).
    """
    m = venv.num_envs
    copies = m if copies is None else int(copies)
    space = venv.single_action_space
    low, high = np.asarray(space.low), np.asarray(space.high)
    same_step = str(venv.metadata.get("autoreset_mode", "")).endswith("SAME_STEP")
    obs = _reset(venv, actor, seeds)
    rec: dict[str, list[np.ndarray]] = {"obs": [np.asarray(obs)], "act": [], "label": [],
                                        "rew": [], "term": [], "trunc": []}
    lengths = np.zeros(m, dtype=np.int64)
    tracked: dict[str, list[tuple[int, np.ndarray]]] = {}
    t = 0
    while (t < steps) if steps is not None else (lengths[:copies] == 0).any():
        label = _checked(actor.act(obs), (m,) + space.shape, space.dtype, actor)
        action = label if execute is None else np.asarray(execute(obs, label, t), space.dtype)
        if clip:
            action = np.clip(action, low, high).astype(space.dtype)
        obs, reward, terminated, truncated, info = venv.step(action)
        t += 1
        done = np.logical_or(terminated, truncated)
        recorded = np.array(obs)
        if same_step and done.any():  # obs holds the reset observation; the final one is aside
            recorded[done] = np.asarray(info["final_obs"][done].tolist(), recorded.dtype)
        newly = (lengths == 0) & done
        lengths[newly] = t
        for key, value in (("obs", recorded), ("act", action), ("label", label),
                           ("rew", np.asarray(reward, dtype=np.float64)),
                           ("term", np.asarray(terminated, dtype=bool)),
                           ("trunc", np.asarray(truncated, dtype=bool))):
            rec[key].append(value)
        for key, value in _tracked_info(info, done if same_step else None, m).items():
            tracked.setdefault(key, []).append((t - 1, value))
        if on_step is not None:
            on_step(newly)
    return _stacked(rec, tracked, lengths, t, m, space.shape, labels=execute is not None)


def _reset(venv: Any, actor: Any, seeds: int | Sequence[int]) -> np.ndarray:
    """The first observations (M, obs_dim) of ``venv`` reset with ``seeds``, the actor reset
    and bound to ``venv`` where it has ``bind_env``."""
    obs, _ = venv.reset(seed=seeds if isinstance(seeds, (int, np.integer))
                        else [int(s) for s in seeds])
    reset_actor(actor)
    bind = getattr(actor, "bind_env", None)
    if callable(bind):  # actors that read the env's own state (the chunk floor's planner)
        bind(venv)
    return obs


def _stacked(rec: dict[str, list[np.ndarray]], tracked: dict[str, list[tuple[int, np.ndarray]]],
             lengths: np.ndarray, t: int, m: int, act_shape: tuple[int, ...],
             labels: bool) -> Steps:
    """The :class:`Steps` of ``t`` recorded steps of ``m`` copies: each list of ``rec`` stacked
    along time (empty arrays of the right shape when ``t`` is 0; actions (t, m) + ``act_shape``),
    ``labels`` kept where the env ran other actions, ``tracked`` info filled to (t, m)."""
    act_shape = (0, m) + act_shape
    stack = lambda key, shape: np.stack(rec[key]) if rec[key] else np.zeros(shape)  # noqa: E731
    return Steps(observations=np.stack(rec["obs"]), actions=stack("act", act_shape),
                 labels=stack("label", act_shape) if labels else None,
                 rewards=stack("rew", (0, m)), terminated=stack("term", (0, m)).astype(bool),
                 truncated=stack("trunc", (0, m)).astype(bool), lengths=lengths,
                 info={key: _fill(values, t, m) for key, values in tracked.items()})


def episode_outcomes(steps: Steps, copies: int | None = None) -> dict[str, np.ndarray]:
    """What the env reported about the first episode of each of the first ``copies`` copies
    (default all) that ended: ``success`` (k,) bool, the ``info["success"]`` (or Fetch's
    ``info["is_success"]``) at its last step; ``mode`` (k,) int, its last non-zero
    ``info["mode"]`` (0: none). Only the keys the env reported; copies still running count
    their last recorded step."""
    k = len(steps.lengths) if copies is None else int(copies)
    last = np.where(steps.lengths[:k] > 0, steps.lengths[:k], len(steps.rewards)) - 1
    out: dict[str, np.ndarray] = {}
    source = next((key for key in ("success", "is_success") if key in steps.info), None)
    if source is not None and len(steps.rewards):
        out["success"] = steps.info[source][last, np.arange(k)].astype(bool)
    if "mode" in steps.info and len(steps.rewards):
        held = episode_modes(steps.info["mode"][:, :k].astype(np.int64))
        out["mode"] = held[last, np.arange(k)]
    return out


def episode_modes(modes: np.ndarray) -> np.ndarray:
    """(H, N) per-step ``info["mode"]`` -> (H, N): the last non-zero mode of each episode up
    to each step (0: none yet)."""
    idx = np.where(modes != 0, np.arange(len(modes))[:, None], -1)
    idx = np.maximum.accumulate(idx, axis=0)
    held = np.take_along_axis(modes, np.maximum(idx, 0), axis=0)
    return np.where(idx >= 0, held, 0)


def _tracked_info(info: dict[str, Any], done: np.ndarray | None, m: int) -> dict[str, np.ndarray]:
    """The :data:`TRACKED_INFO` entries of one vector step's ``info`` as (M,) arrays, 0 where
    the env marks them absent (``info["_key"]``); with ``done`` (same-step autoreset) the
    finished copies' values come from ``info["final_info"]``."""
    out = {}
    final = info.get("final_info") if done is not None and done.any() else None
    for key in TRACKED_INFO:
        if key not in info and not (isinstance(final, dict) and key in final):
            continue
        value = np.zeros(m) if key not in info else np.asarray(info[key], dtype=np.float64)
        if key in info and f"_{key}" in info:
            value = np.where(np.asarray(info[f"_{key}"], dtype=bool), value, 0.0)
        if isinstance(final, dict) and key in final:
            mask = np.asarray(final.get(f"_{key}", done), dtype=bool) & done
            value = np.where(mask, np.asarray(final[key], dtype=np.float64), value)
        out[key] = value
    return out


def _fill(values: list[tuple[int, np.ndarray]], steps: int, m: int) -> np.ndarray:
    """(steps, M) array of the recorded (step, (M,) value) pairs, 0 at steps without one."""
    out = np.zeros((steps, m))
    for t, value in values:
        out[t] = value
    return out


def _checked(actions: Any, shape: tuple[int, ...], dtype: Any, actor: Any) -> np.ndarray:
    """``actions`` as an array of ``dtype``; an actor giving the wrong shape is told so."""
    out = np.asarray(actions, dtype=dtype)
    if out.shape != shape:
        name = getattr(actor, "name", type(actor).__name__)
        raise InvalidValueError(
            f"actor {name!r} returned actions of shape {out.shape} for {shape[0]} observations; "
            f"expected {shape} (act(obs (N, obs_dim)) -> actions (N, act_dim))")
    return out
