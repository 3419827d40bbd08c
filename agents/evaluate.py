"""Evaluate an expert: mean episode return over seeded episodes, all run as one vector env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qbc.errors import InvalidValueError


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
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        running = np.ones(episodes, dtype=bool)
        while running.any():
            actions = expert.act(obs, deterministic=deterministic, rng=rng)
            obs, reward, terminated, truncated, _ = env.step(actions)
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
    finally:
        env.close()
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "min_return": float(returns.min()),
        "mean_length": float(lengths.mean()),
        "episodes": int(episodes),
    }
