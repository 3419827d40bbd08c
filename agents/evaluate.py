"""Evaluate an expert: mean episode return over seeded episodes, all run as one vector env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qbc.errors import InvalidValueError
from qbc.stepping.actor import BoundActor
from qbc.stepping.loop import run_steps


def evaluate_expert(
    expert: Any,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    rng: np.random.Generator | None = None,
    **env_kwargs: Any,
) -> dict[str, float]:
    """Run ``episodes`` episodes of ``expert`` on ``env_id`` (episode i reset with seed
    ``seed + i``), in one vector env (native where the id has one, else synchronous).

    Returns mean_return, std_return, min_return, mean_length (steps), episodes.
    """
    if episodes < 1:
        raise InvalidValueError(f"episodes must be >= 1, got {episodes}")
    env = gym.make_vec(env_id, num_envs=episodes, **env_kwargs)
    try:
        steps = run_steps(env, BoundActor(expert, deterministic=deterministic, rng=rng), seed)
    finally:
        env.close()
    running = steps.running()                      # (T, episodes): the first episode goes on
    returns = np.where(running, steps.rewards, 0.0).sum(axis=0)
    lengths = steps.lengths
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "min_return": float(returns.min()),
        "mean_length": float(lengths.mean()),
        "episodes": int(episodes),
    }
