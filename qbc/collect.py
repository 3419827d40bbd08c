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
import json
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from qbc.errors import InvalidValueError, OutputExistsError
from qbc.gym_utils import make_env, make_vector_env


# -- the `qbc collect` command --------------------------------------------------------------------
@dataclass
class CollectConfig:
    """Roll an expert out in a Gymnasium env and save the episodes as a Minari dataset (HDF5)."""

    env: str
    """Gymnasium env id, e.g. qbc/LinearUnstable-v0 or Pendulum-v1."""
    dataset_id: str
    """Minari dataset id to create, '(namespace/)name-vN', e.g. qbc/linear-unstable-lqr-v0."""
    expert: str = "lqr"
    """expert name in qbc.agents: lqr, linear, arctan, sb3."""
    episodes: int = 100
    """number of episodes to record."""
    num_envs: int = 16
    """env copies stepped together (speed only: the data does not depend on it)."""
    seed: int = 0
    """episode k is reset with seed + k."""
    expert_path: str | None = None
    """saved model for the sb3 expert (a stable-baselines3 .zip)."""
    expert_params: str = "{}"
    """extra expert parameters as a JSON object, e.g. '{"algo": "td3"}' or '{"gain_scale": 0.8}'."""
    expert_noise: float = 0.0
    """std of Gaussian noise added to the expert's actions, then clipped to the action space."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps."""
    overwrite: bool = False
    """replace an existing dataset with the same id."""


def run_collect(cfg: CollectConfig) -> Any:
    """The command's entry point: :func:`collect`, then a short summary on stdout."""
    return collect(cfg, verbose=True)


def _collect_command():
    from qbc.cli import Command

    return Command(CollectConfig, run_collect, "roll out an expert and save a Minari dataset")


# -- library --------------------------------------------------------------------------------------
def collect(cfg: CollectConfig, expert: Any = None, verbose: bool = False):
    """Collect ``cfg.episodes`` expert episodes and write them as the Minari dataset
    ``cfg.dataset_id``; returns the dataset as ``minari.load_dataset`` gives it.

    ``expert`` overrides ``cfg.expert``: any object with ``act(obs (B, obs_dim),
    deterministic=True) -> (B, act_dim)``, ``name`` and ``params``. The dataset id is locked
    (:func:`qbc.data.dataset_lock`) from the existence check to the final rename.
    """
    from qbc.data import dataset_lock, validate_dataset_id

    _validate(cfg)
    _expert_params(cfg)
    validate_dataset_id(cfg.dataset_id)
    if expert is None:  # opened before the lock: a refused expert leaves no trace
        expert = _make_expert(cfg, cfg.env)
    with dataset_lock(cfg.dataset_id):
        return _collect(cfg, expert, verbose)


def _collect(cfg: CollectConfig, expert: Any, verbose: bool):
    from qbc import __version__
    from qbc.data import dataset_exists, write_dataset

    if dataset_exists(cfg.dataset_id) and not cfg.overwrite:
        raise OutputExistsError(
            f"Minari dataset {cfg.dataset_id!r} already exists; pass --overwrite to replace it "
            "or choose another --dataset-id (e.g. bump the -vN version)"
        )
    env_kwargs = {} if cfg.max_episode_steps is None else {"max_episode_steps":
                                                           cfg.max_episode_steps}
    env = make_env(cfg.env, **env_kwargs)
    try:
        if expert is None:
            expert = _make_expert(cfg, env)
        t0 = time.perf_counter()
        episodes = rollout_episodes(cfg.env, expert, cfg.episodes, num_envs=cfg.num_envs,
                                    seed=cfg.seed, expert_noise=cfg.expert_noise,
                                    env_kwargs=env_kwargs, progress=verbose)
        seconds = time.perf_counter() - t0
        provenance = {
            "qbc_version": __version__,
            "env_id": cfg.env,
            "env_kwargs": env_kwargs,
            "max_episode_steps": env.spec.max_episode_steps,
            "env_description": _describe(cfg.env, expert, env_kwargs),
            "expert": {"name": getattr(expert, "name", type(expert).__name__),
                       "params": getattr(expert, "params", {})},
            "expert_noise": cfg.expert_noise,
            "seed": cfg.seed,
            "episode_seeds": f"seed + episode id ({cfg.seed} .. {cfg.seed + cfg.episodes - 1})",
            "n_episodes": cfg.episodes,
        }
        config = {**dataclasses.asdict(cfg), "qbc_version": __version__}
        t1 = time.perf_counter()
        dataset = write_dataset(
            cfg.dataset_id, episodes, env=env.spec, metadata=provenance, config=config,
            overwrite=cfg.overwrite, algorithm_name=f"qbc expert {provenance['expert']['name']}",
            description=f"{cfg.episodes} episodes of expert {provenance['expert']['name']} on "
                        f"{cfg.env} (qbc collect, seed {cfg.seed}, noise {cfg.expert_noise})",
        )
        write_seconds = time.perf_counter() - t1
    finally:
        env.close()
    if verbose:
        print(format_summary(cfg, episodes, seconds, dataset, provenance["expert"]["name"],
                             write_seconds))
    return dataset


def format_summary(cfg: CollectConfig, episodes: list[EpisodeBuffer], seconds: float,
                   dataset: Any, expert_name: str, write_seconds: float = 0.0) -> str:
    """A few lines: episodes, steps, returns, time, where the dataset is."""
    returns = np.array([float(np.sum(ep.rewards)) for ep in episodes])
    lengths = np.array([len(ep.rewards) for ep in episodes])
    ends = sum(bool(ep.terminations[-1]) for ep in episodes)
    return "\n".join([
        f"collected {len(episodes)} episodes, {int(lengths.sum())} steps of {cfg.env} with "
        f"expert {expert_name} (noise {cfg.expert_noise}); rollout "
        f"{seconds:.2f} s with {min(cfg.num_envs, cfg.episodes)} env copies",
        f"episode length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), "
        f"{ends} terminated, {len(episodes) - ends} truncated",
        f"return {returns.mean():.4g} +- {returns.std():.4g} (min {returns.min():.4g}, "
        f"max {returns.max():.4g})",
        f"dataset {cfg.dataset_id} at {dataset.storage.data_path.parent} "
        f"(written in {write_seconds:.2f} s)",
    ])


def rollout_episodes(env_id: str, expert: Any, n_episodes: int, num_envs: int = 16,
                     seed: int = 0, expert_noise: float = 0.0,
                     env_kwargs: dict[str, Any] | None = None,
                     progress: bool = False) -> list[EpisodeBuffer]:
    """Roll ``expert`` out for ``n_episodes`` episodes, ``num_envs`` copies at a time.

    Returns one Minari ``EpisodeBuffer`` per episode, in episode order, with ``id = k``,
    ``seed = seed + k``, ``observations`` (T+1, obs_dim) in the observation space's dtype (the
    last row is the final observation), ``actions`` (T, act_dim) float32 as applied,
    ``rewards`` (T,) float64, ``terminations`` / ``truncations`` (T,) bool.
    """
    env_kwargs = dict(env_kwargs or {})
    if env_kwargs.get("max_episode_steps", gym.spec(env_id).max_episode_steps) is None:
        raise InvalidValueError(
            f"{env_id} has no registered episode limit; pass --max-episode-steps H so that every "
            "episode ends"
        )
    m = max(1, min(num_envs, n_episodes))
    venv = make_vector_env(env_id, m, **env_kwargs)
    try:
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        _check_spaces(env_id, obs_space, act_space)
        same_step = venv.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        low = np.asarray(act_space.low, dtype=np.float32)
        high = np.asarray(act_space.high, dtype=np.float32)
        episodes: list[EpisodeBuffer] = []
        with tqdm(total=n_episodes, unit="ep", desc=f"collect {env_id}", disable=not progress,
                  leave=False) as bar:
            for start in range(0, n_episodes, m):
                k = min(m, n_episodes - start)
                rngs = [np.random.default_rng(np.random.SeedSequence(seed + start + i,
                                                                     spawn_key=(1,)))
                        for i in range(k)] if expert_noise > 0 else None
                episodes += _run_wave(venv, expert, k, seed + start, obs_space.dtype, low, high,
                                      expert_noise, rngs, same_step, bar)
    finally:
        venv.close()
    return episodes


def _run_wave(venv, expert, k, wave_seed, obs_dtype, low, high, noise, rngs, same_step,
              bar) -> list[EpisodeBuffer]:
    """Play the first episode of copies 0..k-1 (seeds wave_seed + i) to its end."""
    m = venv.num_envs
    obs, _ = venv.reset(seed=wave_seed)
    obs_hist = [np.array(obs, dtype=obs_dtype)]
    act_hist, rew_hist, term_hist, trunc_hist = [], [], [], []
    length = np.zeros(k, dtype=np.int64)  # 0 while the episode is running
    t = 0
    while (length == 0).any():
        action = np.asarray(expert.act(obs, deterministic=True), dtype=np.float32)
        if action.shape != (m, low.shape[0]):
            raise InvalidValueError(
                f"expert {getattr(expert, 'name', expert)!r} returned actions of shape "
                f"{action.shape} for {m} observations; expected {(m, low.shape[0])}"
            )
        if rngs is not None:
            for i in np.flatnonzero(length == 0):
                action[i] += noise * rngs[i].standard_normal(low.shape[0]).astype(np.float32)
        action = np.clip(action, low, high)
        obs, reward, terminated, truncated, info = venv.step(action)
        t += 1
        done = np.logical_or(terminated, truncated)
        recorded = np.array(obs, dtype=obs_dtype)
        if same_step and done.any():  # obs holds the reset observation; the final one is aside
            for i in np.flatnonzero(done[:k]):
                recorded[i] = info["final_obs"][i]
        obs_hist.append(recorded)
        act_hist.append(action)
        rew_hist.append(np.asarray(reward, dtype=np.float64))
        term_hist.append(np.asarray(terminated, dtype=bool))
        trunc_hist.append(np.asarray(truncated, dtype=bool))
        newly = (length == 0) & done[:k]
        length[newly] = t
        bar.update(int(newly.sum()))
    obs_a, act_a = np.stack(obs_hist), np.stack(act_hist)
    rew_a, term_a, trunc_a = np.stack(rew_hist), np.stack(term_hist), np.stack(trunc_hist)
    return [
        EpisodeBuffer(
            id=None, seed=int(wave_seed + i),
            observations=obs_a[: length[i] + 1, i], actions=act_a[: length[i], i],
            rewards=rew_a[: length[i], i], terminations=term_a[: length[i], i],
            truncations=trunc_a[: length[i], i],
        )
        for i in range(k)
    ]


def _check_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    for what, space in (("observation", obs_space), ("action", act_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise InvalidValueError(
                f"{env_id} has {what} space {space}; qbc collect needs flat Box spaces "
                "(1-D continuous observations and actions)"
            )


def _make_expert(cfg: CollectConfig, env: gym.Env) -> Any:
    from qbc.agents import make_expert

    params = _expert_params(cfg)
    return make_expert(cfg.expert, env, **params)


def _expert_params(cfg: CollectConfig) -> dict[str, Any]:
    try:
        params = json.loads(cfg.expert_params)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(
            f"--expert-params {cfg.expert_params!r} is not valid JSON ({exc}); pass an object "
            """like '{"algo": "td3"}'"""
        ) from None
    if not isinstance(params, dict):
        raise InvalidValueError(f"--expert-params must be a JSON object, got {cfg.expert_params!r}")
    if cfg.expert_path is not None:
        params["path"] = cfg.expert_path
    return params


def _describe(env_id: str, expert: Any, env_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The env's stability numbers (with the closed loop of a linear expert) for qbc envs."""
    if not env_id.startswith("qbc/"):
        return None
    from qbc.envs import describe

    linear = expert if getattr(expert, "K", None) is not None else None
    return describe(env_id, expert=linear, **env_kwargs)


def _validate(cfg: CollectConfig) -> None:
    from qbc.validate import AT_LEAST_ONE, NON_NEGATIVE, SEED_LIMIT, Rule, check_all, check_config

    check_config(cfg, {"episodes": AT_LEAST_ONE, "num_envs": AT_LEAST_ONE,
                       "expert_noise": NON_NEGATIVE,
                       "max_episode_steps": Rule(lo=1, integer=True, optional=True)})
    check_all([(cfg.seed + cfg.episodes <= SEED_LIMIT,
                f"--seed + --episodes must stay below 2^32 (episode k is reset with seed + k), "
                f"got {cfg.seed} + {cfg.episodes}")])


COLLECT_COMMAND = _collect_command()
