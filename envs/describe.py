"""``describe``: the numbers that say how hard an env is for behavior cloning, as a JSON-safe
dict (open- and closed-loop spectral radii, horizon, noise, bounds)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qbc.envs.control import closed_loop, lqr_gain, spectral_radius
from qbc.envs.make import opened_env
from qbc.errors import InvalidValueError


def _bounds(values: np.ndarray) -> list[float | None]:
    """Box bounds as a JSON-safe list: infinite bounds become None."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values).ravel()]


def describe(env: str | gym.Env, expert: Any = None, **env_kwargs: Any) -> dict[str, Any]:
    """Summarise a qbc env (id, made with ``env_kwargs``, or an instance).

    ``expert``: optional linear expert (anything with a gain matrix ``K``, u = -K x) or a gain
    array (act_dim, obs_dim); its closed-loop spectral radius is reported as well.
    Returns a dict of plain Python values (``json.dumps`` works; infinite bounds are None;
    ``lqr_gain`` and its closed loop are None where LQR has no stabilising solution).
    """
    with opened_env(env, **env_kwargs) as env_obj:
        return _numbers(env_obj, env, expert)


def _numbers(env_obj: Any, env: str | gym.Env, expert: Any) -> dict[str, Any]:
    """:func:`describe` of the open env ``env_obj`` (``env``: what the caller passed)."""
    base = env_obj.unwrapped
    if not hasattr(base, "linearization"):
        raise InvalidValueError(
            f"{env!r} has no linearization(); describe() works on the qbc/ envs"
        )
    A, B = base.linearization()
    Q, R = base.cost_matrices()
    try:
        K = lqr_gain(A, B, Q, R)
    except InvalidValueError:  # e.g. the detour task: its obstacle coordinate is uncontrollable
        K = None
    spec = getattr(env_obj, "spec", None)
    action_space = getattr(env_obj, "single_action_space", env_obj.action_space)
    obs_space = getattr(env_obj, "single_observation_space", env_obj.observation_space)
    out: dict[str, Any] = {
        "env_id": spec.id if spec is not None else type(base).__name__,
        "obs_dim": int(A.shape[0]),
        "act_dim": int(B.shape[1]),
        "horizon": None if spec is None or spec.max_episode_steps is None
        else int(spec.max_episode_steps),
        "noise_std": float(base.noise_std),
        "x0_std": float(base.x0_std),
        "divergence_threshold": float(base.divergence_threshold),
        "action_low": _bounds(action_space.low),
        "action_high": _bounds(action_space.high),
        "observation_low": _bounds(obs_space.low),
        "observation_high": _bounds(obs_space.high),
        "open_loop_spectral_radius": spectral_radius(A),
        "lqr_gain": None if K is None else K.tolist(),
        "lqr_closed_loop_spectral_radius": None if K is None
        else spectral_radius(closed_loop(A, B, K)),
    }
    if expert is not None:
        gain = getattr(expert, "K", expert)
        if gain is None:
            raise InvalidValueError(
                f"expert {getattr(expert, 'name', expert)!r} has no gain matrix K; "
                "describe() needs a linear expert (lqr or linear) or a gain array"
            )
        gain = np.asarray(gain, dtype=np.float64)
        out["expert"] = getattr(expert, "name", "gain")
        out["expert_gain"] = gain.tolist()
        out["expert_closed_loop_spectral_radius"] = spectral_radius(closed_loop(A, B, gain))
    return out
