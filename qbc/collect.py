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
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from minari.data_collector import EpisodeBuffer

from qbc.errors import InvalidValueError, OutputExistsError
from qbc.expert_choice import expert_file_sha256
from qbc.gym_utils import make_env, make_vector_env
from qbc.progress import progress_bar


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
    """std of Gaussian noise added to the expert's actions, then clipped to the action space;
    the dataset records the noisy actions."""
    dart: str | None = None
    """DART (Laskey et al. 2017): SIGMA, the std in action units (the same for every action
    dimension) of Gaussian noise added to the executed action, while the dataset records the
    expert's clean action as the label; or 'auto' with --policy RUN: SIGMA from that trained
    policy's error on the expert's states (the DART rule). The noise comes from its own
    generator per episode (seed + k), independent of the env's process noise."""
    policy: Path | None = None
    """with --dart auto: the trained policy (run folder or checkpoint) whose error sets SIGMA."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps."""
    overwrite: bool = False
    """replace an existing dataset with the same id."""
    progress: bool = True
    """show progress (a bar on a terminal, a plain line every ~10 s in a log)."""


def run_collect(cfg: CollectConfig) -> Any:
    """The command's entry point: :func:`collect`, then a short summary on stdout."""
    return collect(cfg, verbose=True)


def _collect_command():
    from qbc.cli import Command

    return Command(CollectConfig, run_collect, "roll out an expert and save a Minari dataset")


# -- behaviours: what is executed, given the expert's label ----------------------------------------
#: spawn keys of the per-episode generators (SeedSequence(episode seed, spawn_key=(stream,))):
#: one stream per use, so expert noise, DART noise and DAgger's coins never share draws, and
#: none of them touches the env's own generator (its process noise).
NOISE_STREAM, DART_STREAM, MIXTURE_STREAM = 1, 2, 3


def episode_rng(episode_seed: int, stream: int) -> np.random.Generator:
    """The generator of one episode's behaviour draws (see the ``*_STREAM`` constants)."""
    return np.random.default_rng(np.random.SeedSequence(int(episode_seed), spawn_key=(stream,)))


class Behavior(Protocol):
    """What the env executes, given the expert's clean label, in :func:`rollout_episodes`.

    ``start(seeds (M,), horizon, act_dim)`` is called before each wave of M copies (copy i plays
    the episode with seed ``seeds[i]``); ``act(obs (M, obs_dim), label (M, act_dim), t)``
    returns the actions (M, act_dim) to execute at step t (clipped to the action space
    afterwards). ``record_label``: the dataset holds the labels (True) or the executed actions.
    """

    record_label: bool

    def start(self, seeds: np.ndarray, horizon: int, act_dim: int) -> None: ...

    def act(self, obs: np.ndarray, label: np.ndarray, t: int) -> np.ndarray: ...


class GaussianActionNoise:
    """label + std * N(0, I), in action units, drawn per episode from
    :func:`episode_rng` (episode seed, ``stream``): the noise of an episode depends on its seed
    alone, not on the number of copies or on the env's process noise.

    Episode k's noise at step t is ``std * episode_rng(seed + k, stream).standard_normal((H,
    act_dim))[t]`` (H = the episode limit)."""

    def __init__(self, std: float, stream: int, record_label: bool):
        self.std, self.stream, self.record_label = float(std), int(stream), bool(record_label)
        self._noise = np.zeros((0, 0, 0), dtype=np.float32)

    def start(self, seeds: np.ndarray, horizon: int, act_dim: int) -> None:
        self._noise = np.stack([episode_rng(s, self.stream).standard_normal((horizon, act_dim))
                                for s in seeds]).astype(np.float32)  # (M, H, act_dim)

    def act(self, obs: np.ndarray, label: np.ndarray, t: int) -> np.ndarray:
        return label + np.float32(self.std) * self._noise[:, t]


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
    dart = parse_dart(cfg.dart, cfg.policy)
    validate_dataset_id(cfg.dataset_id)
    if expert is None:  # opened before the lock: a refused expert leaves no trace
        expert = _make_expert(cfg, cfg.env)
    with dataset_lock(cfg.dataset_id):
        return _collect(cfg, expert, verbose, dart)


def _collect(cfg: CollectConfig, expert: Any, verbose: bool, dart: float | str):
    """The collection itself, under the dataset lock; ``dart`` is the parsed --dart (a sigma,
    or 'auto' to fit it to ``cfg.policy``)."""
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
        t0 = time.perf_counter()
        if dart == "auto":
            dart = dart_sigma_for(cfg.policy, cfg.env, expert, cfg.episodes, cfg.num_envs,
                                  cfg.seed, env_kwargs)
        episodes = rollout_episodes(cfg.env, expert, cfg.episodes, num_envs=cfg.num_envs,
                                    seed=cfg.seed, expert_noise=cfg.expert_noise,
                                    env_kwargs=env_kwargs, progress=verbose and cfg.progress,
                                    dart_sigma=dart)
        seconds = time.perf_counter() - t0
        provenance = {
            "qbc_version": __version__,
            "env_id": cfg.env,
            "env_kwargs": env_kwargs,
            "max_episode_steps": env.spec.max_episode_steps,
            "env_description": _describe(cfg.env, expert, env_kwargs),
            "expert": {"name": getattr(expert, "name", type(expert).__name__),
                       "params": getattr(expert, "params", {})},
            "expert_file_sha256": expert_file_sha256(getattr(expert, "params", {})),
            "expert_noise": cfg.expert_noise,
            "dart": dart_provenance(dart, cfg),
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
                        f"{cfg.env} (qbc collect, seed {cfg.seed}, noise {cfg.expert_noise}"
                        + (f", DART sigma {dart:.4g}" if dart > 0 else "") + ")",
        )
        write_seconds = time.perf_counter() - t1
    finally:
        env.close()
    if verbose:
        print(format_summary(cfg, episodes, seconds, dataset, provenance["expert"]["name"],
                             write_seconds, dart))
    return dataset


def format_summary(cfg: CollectConfig, episodes: list[EpisodeBuffer], seconds: float,
                   dataset: Any, expert_name: str, write_seconds: float = 0.0,
                   dart: float = 0.0) -> str:
    """A few lines: episodes, steps, returns, time, where the dataset is."""
    returns = np.array([float(np.sum(ep.rewards)) for ep in episodes])
    lengths = np.array([len(ep.rewards) for ep in episodes])
    ends = sum(bool(ep.terminations[-1]) for ep in episodes)
    return "\n".join([
        f"collected {len(episodes)} episodes, {int(lengths.sum())} steps of {cfg.env} with "
        f"expert {expert_name} (noise {cfg.expert_noise}"
        + (f", DART sigma {dart:.4g}: clean labels recorded" if dart > 0 else "") + "); rollout "
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
                     progress: bool = False, behavior: Behavior | None = None,
                     dart_sigma: float = 0.0) -> list[EpisodeBuffer]:
    """Roll ``expert`` out for ``n_episodes`` episodes, ``num_envs`` copies at a time.

    Returns one Minari ``EpisodeBuffer`` per episode, in episode order, with ``id = k``,
    ``seed = seed + k``, ``observations`` (T+1, obs_dim) in the observation space's dtype (the
    last row is the final observation), ``actions`` (T, act_dim) float32 (the applied actions,
    or the expert's clean labels under a behaviour that records labels: DART, DAgger),
    ``rewards`` (T,) float64, ``terminations`` / ``truncations`` (T,) bool.

    ``expert_noise`` (recorded noisy actions) and ``dart_sigma`` (recorded clean labels) are
    shorthands for :class:`GaussianActionNoise` behaviours; ``behavior`` gives any other one
    (e.g. DAgger's expert/learner mixture). At most one of the three may be set.
    """
    env_kwargs = dict(env_kwargs or {})
    limit = env_kwargs.get("max_episode_steps", gym.spec(env_id).max_episode_steps)
    if limit is None:
        raise InvalidValueError(
            f"{env_id} has no registered episode limit; pass --max-episode-steps H so that every "
            "episode ends"
        )
    behavior = _behavior(behavior, expert_noise, dart_sigma)
    m = max(1, min(num_envs, n_episodes))
    venv = make_vector_env(env_id, m, **env_kwargs)
    try:
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        _check_spaces(env_id, obs_space, act_space)
        same_step = venv.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        low = np.asarray(act_space.low, dtype=np.float32)
        high = np.asarray(act_space.high, dtype=np.float32)
        episodes: list[EpisodeBuffer] = []
        with progress_bar(total=n_episodes, unit="ep", desc=f"collect {env_id}",
                          disable=not progress, leave=False) as bar:
            for start in range(0, n_episodes, m):
                k = min(m, n_episodes - start)
                if behavior is not None:
                    behavior.start(seed + start + np.arange(m), int(limit), low.shape[0])
                episodes += _run_wave(venv, expert, k, seed + start, obs_space.dtype, low, high,
                                      behavior, same_step, bar)
    finally:
        venv.close()
    return episodes


def _behavior(behavior: Behavior | None, expert_noise: float,
              dart_sigma: float) -> Behavior | None:
    """The one behaviour that the arguments of :func:`rollout_episodes` ask for (or None)."""
    asked = [b for b in (behavior,
                         GaussianActionNoise(expert_noise, NOISE_STREAM, record_label=False)
                         if expert_noise > 0 else None,
                         GaussianActionNoise(dart_sigma, DART_STREAM, record_label=True)
                         if dart_sigma > 0 else None) if b is not None]
    if len(asked) > 1:
        raise InvalidValueError(
            "give at most one of --expert-noise (records the noisy actions) and --dart (records "
            "the clean expert labels)")
    return asked[0] if asked else None


def _run_wave(venv, expert, k, wave_seed, obs_dtype, low, high, behavior, same_step,
              bar) -> list[EpisodeBuffer]:
    """Play the first episode of copies 0..k-1 (seeds wave_seed + i) to its end."""
    m = venv.num_envs
    obs, _ = venv.reset(seed=wave_seed)
    obs_hist = [np.array(obs, dtype=obs_dtype)]
    act_hist, rew_hist, term_hist, trunc_hist = [], [], [], []
    length = np.zeros(k, dtype=np.int64)  # 0 while the episode is running
    t = 0
    while (length == 0).any():
        label = np.asarray(expert.act(obs, deterministic=True), dtype=np.float32)
        if label.shape != (m, low.shape[0]):
            raise InvalidValueError(
                f"expert {getattr(expert, 'name', expert)!r} returned actions of shape "
                f"{label.shape} for {m} observations; expected {(m, low.shape[0])}"
            )
        action = label if behavior is None else behavior.act(obs, label, t)
        action = np.clip(action, low, high).astype(np.float32)
        recorded = (np.clip(label, low, high) if behavior is not None and behavior.record_label
                    else action)
        obs, reward, terminated, truncated, info = venv.step(action)
        t += 1
        done = np.logical_or(terminated, truncated)
        next_obs = np.array(obs, dtype=obs_dtype)
        if same_step and done.any():  # obs holds the reset observation; the final one is aside
            for i in np.flatnonzero(done[:k]):
                next_obs[i] = info["final_obs"][i]
        obs_hist.append(next_obs)
        act_hist.append(recorded)
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


# -- DART ------------------------------------------------------------------------------------------
def parse_dart(text: str | None, policy: Path | None) -> float | str:
    """``--dart`` as a std in action units (0.0 when absent) or ``"auto"`` (needs ``--policy``)."""
    if text is None:
        if policy is not None:
            raise InvalidValueError("--policy is only used with --dart auto; drop it or add "
                                    "--dart auto")
        return 0.0
    if text.strip().lower() == "auto":
        if policy is None:
            raise InvalidValueError("--dart auto needs --policy RUN (a trained policy whose error "
                                    "on the expert's states sets the noise)")
        return "auto"
    try:
        sigma = float(text)
    except ValueError:
        sigma = float("nan")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise InvalidValueError(f"--dart must be a finite std >= 0 in action units or 'auto', "
                                f"got {text!r}")
    if policy is not None:
        raise InvalidValueError("--policy is only used with --dart auto")
    return sigma


def dart_sigma_for(policy_path: Path, env_id: str, expert: Any, episodes: int, num_envs: int,
                   seed: int, env_kwargs: dict[str, Any]) -> float:
    """The DART rule, isotropic: sigma = sqrt(mean over steps and action dimensions of
    (policy(x) - expert(x))^2) on the states of clean expert episodes (the same seeds as the
    dataset), in action units. DART matches the noise covariance to the learner's error
    covariance; this takes its trace / act_dim, one std for every dimension."""
    from qbc.data import Demonstrations
    from qbc.policy import load_policy
    from qbc.train import history_index

    policy = load_policy(policy_path)
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


def dart_provenance(sigma: float, cfg: CollectConfig) -> dict[str, Any] | None:
    """What the metadata says about DART noise (None without it)."""
    if not sigma:
        return None
    return {"sigma": float(sigma), "units": "action units, the same std in every dimension",
            "fitted_to_policy": None if cfg.policy is None else str(cfg.policy),
            "labels": "the expert's clean actions (the executed actions carry the noise)",
            "noise": f"episode k: sigma * N(0, I) from numpy SeedSequence(seed + k, "
                     f"spawn_key=({DART_STREAM},)), drawn as (max_episode_steps, act_dim)"}


def _check_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    for what, space in (("observation", obs_space), ("action", act_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise InvalidValueError(
                f"{env_id} has {what} space {space}; qbc collect needs flat Box spaces "
                "(1-D continuous observations and actions)"
            )


def _make_expert(cfg: CollectConfig, env: str | gym.Env) -> Any:
    from qbc.agents import make_expert

    params = _expert_params(cfg)
    return make_expert(cfg.expert, env, **params)


def _expert_params(cfg: CollectConfig) -> dict[str, Any]:
    return expert_params_from(cfg.expert_params, cfg.expert_path)


def expert_params_from(params_json: str, path: str | None) -> dict[str, Any]:
    """``--expert-params`` (a JSON object) plus ``--expert-path`` as ``make_expert`` keywords."""
    try:
        params = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(
            f"--expert-params {params_json!r} is not valid JSON ({exc}); pass an object "
            """like '{"algo": "td3"}'"""
        ) from None
    if not isinstance(params, dict):
        raise InvalidValueError(f"--expert-params must be a JSON object, got {params_json!r}")
    if path is not None:
        params["path"] = str(path)
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
