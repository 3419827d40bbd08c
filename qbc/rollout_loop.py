"""The one batched rollout loop: M copies of a vector env stepped together by an actor.

Coupled rollouts (:mod:`qbc.rollout`), expert evaluation (:mod:`qbc.agents.evaluate`) and data
collection step their envs with :func:`run_steps` and read what they need from the
:class:`Steps` it records. It depends on numpy and the :class:`~qbc.actor.Actor` protocol only,
so the experts' own modules can use it.

>>> steps = run_steps(venv, actor, seeds=[0, 1, 2], steps=100)     # exactly 100 steps
>>> steps = run_steps(venv, actor, seeds=0)                         # until every episode ended
>>> returns = (steps.rewards * steps.running()).sum(axis=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qbc.actor import reset_actor
from qbc.errors import InvalidValueError

#: ``execute(obs (M, obs_dim), actions (M, act_dim), t) -> executed actions (M, act_dim)``:
#: what the env runs instead of the actor's actions (action noise, DART, a DAgger mixture).
Execute = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


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
    lengths: (M,) int64, steps of each copy's first episode (0: it had not ended).
    """

    observations: np.ndarray
    actions: np.ndarray
    labels: np.ndarray | None
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    lengths: np.ndarray

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
    obs, _ = venv.reset(seed=seeds if isinstance(seeds, (int, np.integer))
                        else [int(s) for s in seeds])
    reset_actor(actor)
    bind = getattr(actor, "bind_env", None)
    if callable(bind):  # actors that read the env's own state (the chunk floor's planner)
        bind(venv)
    rec: dict[str, list[np.ndarray]] = {"obs": [np.asarray(obs)], "act": [], "label": [],
                                        "rew": [], "term": [], "trunc": []}
    lengths = np.zeros(m, dtype=np.int64)
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
        if on_step is not None:
            on_step(newly)
    act_shape = (0, m) + space.shape
    stack = lambda key, shape: np.stack(rec[key]) if rec[key] else np.zeros(shape)  # noqa: E731
    return Steps(observations=np.stack(rec["obs"]), actions=stack("act", act_shape),
                 labels=None if execute is None else stack("label", act_shape),
                 rewards=stack("rew", (0, m)), terminated=stack("term", (0, m)).astype(bool),
                 truncated=stack("trunc", (0, m)).astype(bool), lengths=lengths)


def _checked(actions: Any, shape: tuple[int, ...], dtype: Any, actor: Any) -> np.ndarray:
    """``actions`` as an array of ``dtype``; an actor giving the wrong shape is told so."""
    out = np.asarray(actions, dtype=dtype)
    if out.shape != shape:
        name = getattr(actor, "name", type(actor).__name__)
        raise InvalidValueError(
            f"actor {name!r} returned actions of shape {out.shape} for {shape[0]} observations; "
            f"expected {shape} (act(obs (N, obs_dim)) -> actions (N, act_dim))")
    return out
