"""Expert demonstrations: roll an expert out in M env copies at once, save a Minari dataset.

Episode ``k`` (0-based) is always reset with seed ``seed + k`` and, when ``expert_noise > 0``,
draws its action noise from its own generator derived from that seed, so a dataset depends on
the seed and the episode count, not on how many copies ran side by side (exactly so for experts
that act row by row, like the linear ones; a neural expert's batched matmul may differ in the
last bits between batch sizes).

Copies are run in waves of M episodes: ``reset(seed=seed + start)`` seeds copy ``i`` with
``seed + start + i``, each copy's first episode is recorded up to its own termination or
truncation, and whatever a finished copy does after that (Gymnasium's autoreset) is ignored, so no
recorded transition crosses an episode boundary.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer

from qbc import __version__
from qbc.agents import make_expert
from qbc.data import dataset_exists, dataset_lock, validate_dataset_id, write_dataset
from qbc.data.dart import dart_provenance, dart_sigma_for, load_dart_policy
from qbc.data.episodes import rollout_episodes
from qbc.data.expert_choice import expert_file_sha256
from qbc.envs import describe
from qbc.envs.make import make_env, opened_env
from qbc.errors import OutputExistsError
from qbc.infra.validate import AT_LEAST_ONE, NON_NEGATIVE, SEED_LIMIT, Rule, check_all, check_config
from qbc.stepping.limits import cap_horizon, check_rollout_memory, is_keyed_env


# -- library --------------------------------------------------------------------------------------
@dataclass
class CollectConfig:
    """What :func:`collect` records: ``episodes`` episodes of an expert on a Gymnasium env, as
    the Minari dataset ``dataset_id`` (HDF5). Typed: the ``qbc collect`` command parses its
    flags (``--expert-params`` JSON, ``--dart SIGMA | auto``) into one."""

    env: str
    """Gymnasium env id, e.g. qbc/LinearUnstable-v0 or Pendulum-v1."""
    dataset_id: str
    """Minari dataset id to create, '(namespace/)name-vN', e.g. qbc/linear-unstable-lqr-v0."""
    expert: str = "lqr"
    """expert name in qbc.agents: lqr, linear, arctan, detour, fetch-push, fetch-pick-and-place,
    maze-planner, sb3, zoo:<env id>, actor."""
    expert_params: dict[str, Any] = field(default_factory=dict)
    """``make_expert`` keywords, e.g. ``{"algo": "td3", "path": "experts/x.zip"}``."""
    episodes: int = 100
    """number of episodes to record."""
    num_envs: int = 16
    """env copies stepped together (speed only: the data does not depend on it)."""
    seed: int = 0
    """episode k is reset with seed + k."""
    expert_noise: float = 0.0
    """std of Gaussian noise added to the expert's actions, then clipped to the action space;
    the dataset records the noisy actions."""
    dart_sigma: float = 0.0
    """DART (Laskey et al. 2017): std in action units (the same for every dimension) of
    Gaussian noise added to the executed action while the dataset records the expert's clean
    action; drawn from its own generator per episode (seed + k)."""
    dart_policy: Path | None = None
    """DART with sigma fitted to this trained policy's error on the expert's states (the DART
    rule, :func:`dart_sigma_for`); ``dart_sigma`` must then be 0."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps. A third-party env's
    time limit caps it (one warning); qbc's own envs take any length."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """the env's constructor keywords, e.g. ``{"noise_std": 0.0}`` (a noise-free variant); the
    expert is built on the env made with them and the dataset records them (``env_kwargs`` of
    its qbc metadata, and Minari's env spec)."""
    overwrite: bool = False
    """replace an existing dataset with the same id."""
    progress: bool = False
    """show progress (a bar on a terminal, a plain line every ~10 s in a log)."""


@dataclass
class Collected:
    """What :func:`collect` did: the dataset and the facts a summary needs."""

    dataset: Any
    """the written dataset, a ``minari.MinariDataset``."""
    episodes: list[EpisodeBuffer]
    """the recorded episodes, in episode order."""
    expert_name: str
    dart_sigma: float
    """the DART std used (fitted with ``dart_policy``), 0 without DART."""
    rollout_seconds: float
    write_seconds: float
    outcomes: dict[str, np.ndarray] = field(default_factory=dict)
    """per episode, where the env reports them: ``success`` (bool) and ``mode`` (int), see
    :func:`qbc.stepping.loop.episode_outcomes`."""


def collect(cfg: CollectConfig, expert: Any = None,
            root: str | os.PathLike | None = None) -> Collected:
    """Collect ``cfg.episodes`` expert episodes and write them as the Minari dataset
    ``cfg.dataset_id`` under the datasets root ``root`` (:func:`qbc.data.minari_root`).

    ``expert`` overrides ``cfg.expert``: any object with ``act(obs (B, obs_dim),
    deterministic=True) -> (B, act_dim)``, ``name`` and ``params``. The dataset id is locked
    (:func:`qbc.data.dataset_lock`) from the existence check to the final rename.
    """
    _validate(cfg)
    validate_dataset_id(cfg.dataset_id)
    cfg = _within_time_limit(cfg)
    _check_memory(cfg)
    if cfg.dart_policy is not None:  # refused here, before the lock, when it does not fit

        load_dart_policy(cfg.dart_policy, cfg.env)
    if expert is None:  # opened before the lock: a refused expert leaves no trace
        expert = _make_expert(cfg)
    with dataset_lock(cfg.dataset_id, root):
        return _collect(cfg, expert, root)


def _collect(cfg: CollectConfig, expert: Any, root: str | os.PathLike | None) -> Collected:
    """The collection itself, under the dataset lock."""
    if dataset_exists(cfg.dataset_id, root) and not cfg.overwrite:
        raise OutputExistsError(
            f"Minari dataset {cfg.dataset_id!r} already exists; pass --overwrite to replace it "
            "or choose another --dataset (e.g. bump the -vN version)"
        )
    env_kwargs = dict(cfg.env_kwargs)
    if cfg.max_episode_steps is not None:
        env_kwargs["max_episode_steps"] = cfg.max_episode_steps
    env = make_env(cfg.env, **env_kwargs)
    try:
        t0 = time.perf_counter()
        sigma = cfg.dart_sigma
        if cfg.dart_policy is not None:
            sigma = dart_sigma_for(cfg.dart_policy, cfg.env, expert, cfg.episodes, cfg.num_envs,
                                   cfg.seed, env_kwargs)
        episodes, outcomes = rollout_episodes(
            cfg.env, expert, cfg.episodes, num_envs=cfg.num_envs, seed=cfg.seed,
            expert_noise=cfg.expert_noise, env_kwargs=env_kwargs, progress=cfg.progress,
            dart_sigma=sigma, with_outcomes=True)
        seconds = time.perf_counter() - t0
        provenance = _provenance(cfg, expert, env.spec.max_episode_steps, env_kwargs, sigma)
        name = provenance["expert"]["name"]
        t1 = time.perf_counter()
        dataset = write_dataset(
            cfg.dataset_id, episodes, env=env.spec, metadata=provenance,
            config=_config_record(cfg), overwrite=cfg.overwrite, root=root,
            algorithm_name=f"qbc expert {name}",
            description=f"{cfg.episodes} episodes of expert {name} on {cfg.env} (qbc collect, "
                        f"seed {cfg.seed}, noise {cfg.expert_noise}"
                        + (f", DART sigma {sigma:.4g}" if sigma > 0 else "") + ")",
        )
        write_seconds = time.perf_counter() - t1
    finally:
        env.close()
    return Collected(dataset, episodes, name, sigma, seconds, write_seconds, outcomes)


def _provenance(cfg: CollectConfig, expert: Any, max_episode_steps: int | None,
                env_kwargs: dict[str, Any], sigma: float) -> dict[str, Any]:
    """The metadata stored under ``"qbc"``: versions, env, expert, noise, seeds."""
    params = getattr(expert, "params", {})
    return {
        "qbc_version": __version__,
        "env_id": cfg.env,
        "env_kwargs": env_kwargs,
        "max_episode_steps": max_episode_steps,
        "env_description": _describe(cfg.env, expert, env_kwargs),
        "expert": {"name": getattr(expert, "name", type(expert).__name__), "params": params},
        "expert_file_sha256": expert_file_sha256(params),
        "expert_noise": cfg.expert_noise,
        "dart": dart_provenance(sigma, cfg.dart_policy),
        "seed": cfg.seed,
        "episode_seeds": f"seed + episode id ({cfg.seed} .. {cfg.seed + cfg.episodes - 1})",
        "n_episodes": cfg.episodes,
    }


def _config_record(cfg: CollectConfig) -> dict[str, Any]:
    """The resolved settings written beside the dataset (``qbc_config.json``)."""
    return {**dataclasses.asdict(cfg), "qbc_version": __version__}


def _make_expert(cfg: CollectConfig) -> Any:
    with opened_env(cfg.env, **cfg.env_kwargs) as env:  # the variant the data comes from
        return make_expert(cfg.expert, env, **cfg.expert_params)


def _describe(env_id: str, expert: Any, env_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The env's stability numbers (with the closed loop of a linear expert) for qbc's own
    (keyed, linearisable) envs."""
    if not is_keyed_env(env_id):
        return None

    linear = expert if getattr(expert, "K", None) is not None else None
    return describe(env_id, expert=linear, **env_kwargs)


def _within_time_limit(cfg: CollectConfig) -> CollectConfig:
    """``cfg`` with ``max_episode_steps`` capped at a third-party env's time limit (its task
    ends there; a one-line warning says so, as for rollout horizons); qbc's own envs take any
    length."""
    if cfg.max_episode_steps is None:
        return cfg
    steps = cap_horizon(cfg.env, cfg.max_episode_steps, "--max-episode-steps")
    return dataclasses.replace(cfg, max_episode_steps=steps)


def _check_memory(cfg: CollectConfig) -> None:
    """Refuse episodes x horizon steps that would not fit in memory (before the dataset lock
    is taken: a huge --max-episode-steps would otherwise run for days, then fail)."""
    horizon = cfg.max_episode_steps
    if horizon is None and cfg.env in gym.registry:
        horizon = gym.spec(cfg.env).max_episode_steps
    if horizon is not None and cfg.env in gym.registry:
        check_rollout_memory(cfg.env, 1, cfg.episodes, horizon,
                             "use fewer --episodes or a smaller --max-episode-steps")


def _validate(cfg: CollectConfig) -> None:
    check_config(cfg, {"episodes": AT_LEAST_ONE, "num_envs": AT_LEAST_ONE,
                       "expert_noise": NON_NEGATIVE, "dart_sigma": NON_NEGATIVE,
                       "max_episode_steps": Rule(lo=1, integer=True, optional=True)})
    check_all([(cfg.seed + cfg.episodes <= SEED_LIMIT,
                f"--seed + --episodes must stay below 2^32 (episode k is reset with seed + k), "
                f"got {cfg.seed} + {cfg.episodes}"),
               (cfg.dart_policy is None or cfg.dart_sigma == 0,
                "give a DART sigma or a policy to fit it to (--dart auto --policy), not both")])
