"""DART (Laskey et al. 2017) for ``qbc collect``: the noise level fitted to a trained policy
(the DART rule) and what a dataset's metadata says about it.

The noise itself is a :class:`qbc.data.episodes.GaussianActionNoise` on stream ``DART_STREAM``: the
executed action is the expert's label plus sigma * N(0, I), the dataset records the label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.data import Demonstrations
from qbc.data.demonstrations import history_index
from qbc.data.episodes import DART_STREAM, rollout_episodes
from qbc.errors import InvalidValueError
from qbc.policy import load_policy


def dart_sigma_for(policy_path: Path, env_id: str, expert: Any, episodes: int, num_envs: int,
                   seed: int, env_kwargs: dict[str, Any]) -> float:
    """The DART rule, isotropic: sigma = sqrt(mean over steps and action dimensions of
    (policy(x) - expert(x))^2) on the states of clean expert episodes (the same seeds as the
    dataset), in action units. DART matches the noise covariance to the learner's error
    covariance; this takes its trace / act_dim, one std for every dimension."""
    policy = load_dart_policy(policy_path, env_id)
    demos = Demonstrations.from_episodes(
        rollout_episodes(env_id, expert, episodes, num_envs=num_envs, seed=seed,
                         env_kwargs=env_kwargs))
    if (policy.obs_dim, policy.act_dim) != (demos.obs_dim, demos.act_dim):
        raise InvalidValueError(
            f"--policy {policy_path} acts on {policy.obs_dim}-dimensional observations with "
            f"{policy.act_dim}-dimensional actions, but {env_id} has {demos.obs_dim} and "
            f"{demos.act_dim}; pass a policy trained on this env")
    obs = demos.observations
    if policy.obs_history > 1:
        obs = obs[history_index(demos.episode_ids, policy.obs_history)]
    policy.reset()
    pred = np.concatenate([policy.act(obs[i:i + 4096], deterministic=True)
                           for i in range(0, len(obs), 4096)])
    return float(np.sqrt(np.mean((pred - demos.actions) ** 2)))


def load_dart_policy(policy_path: Path, env_id: str) -> Any:
    """The policy of ``--dart auto --policy``, refused (InvalidValueError) when its checkpoint
    records another env than ``env_id``: a learner of another env has no error to match on
    this one, even when the shapes agree."""
    policy = load_policy(policy_path)
    trained = getattr(policy, "env_id", None)
    if trained is not None and trained != env_id:
        raise InvalidValueError(
            f"--policy {policy_path} was trained on {trained}, not {env_id}; --dart auto fits "
            f"the noise to this policy's errors on {env_id}: pass a policy trained on it")
    return policy


def dart_provenance(sigma: float, policy: Path | None) -> dict[str, Any] | None:
    """What the metadata says about DART noise (None without it)."""
    if not sigma:
        return None
    return {"sigma": float(sigma), "units": "action units, the same std in every dimension",
            "fitted_to_policy": None if policy is None else str(policy),
            "labels": "the expert's clean actions (the executed actions carry the noise)",
            "noise": f"episode k: sigma * N(0, I) from numpy SeedSequence(seed + k, "
                     f"spawn_key=({DART_STREAM},)), drawn as (max_episode_steps, act_dim)"}
