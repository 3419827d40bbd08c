"""Expert episodes in M env copies at once (:func:`rollout_episodes`), and the behaviours that
decide what is executed given the expert's label: Gaussian action noise (recorded, or DART's with
clean labels recorded) and any other :class:`Behavior` (DAgger's mixture).

Episode ``k`` (0-based) is always reset with seed ``seed + k`` and draws its behaviour noise from
its own generator derived from that seed (:func:`episode_rng`), so the episodes depend on the
seed and the episode count, not on how many copies ran side by side. Copies are run in waves of
M episodes; whatever a finished copy does after its first episode (Gymnasium's autoreset) is
ignored, so no recorded transition crosses an episode boundary.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from minari.data_collector import EpisodeBuffer

from qbc.envs.make import make_vector_env
from qbc.errors import InvalidValueError
from qbc.infra.progress import progress_bar
from qbc.stepping.actor import BoundActor
from qbc.stepping.loop import episode_outcomes, run_steps

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


def rollout_episodes(env_id: str, expert: Any, n_episodes: int, num_envs: int = 16,
                     seed: int = 0, expert_noise: float = 0.0,
                     env_kwargs: dict[str, Any] | None = None,
                     progress: bool = False, behavior: Behavior | None = None,
                     dart_sigma: float = 0.0, with_outcomes: bool = False) -> Any:
    """Roll ``expert`` out for ``n_episodes`` episodes, ``num_envs`` copies at a time.

    Returns one Minari ``EpisodeBuffer`` per episode, in episode order, with ``id = k``,
    ``seed = seed + k``, ``observations`` (T+1, obs_dim) in the observation space's dtype (the
    last row is the final observation), ``actions`` (T, act_dim) float32 (the applied actions,
    or the expert's clean labels under a behaviour that records labels: DART, DAgger),
    ``rewards`` (T,) float64, ``terminations`` / ``truncations`` (T,) bool.

    ``expert_noise`` (recorded noisy actions) and ``dart_sigma`` (recorded clean labels) are
    shorthands for :class:`GaussianActionNoise` behaviours; ``behavior`` gives any other one
    (e.g. DAgger's expert/learner mixture). At most one of the three may be set.

    ``with_outcomes``: return ``(episodes, outcomes)``, outcomes the per-episode ``success`` /
    ``mode`` arrays the env reports (:func:`qbc.stepping.loop.episode_outcomes`; {} for envs
    that report neither).
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
        episodes: list[EpisodeBuffer] = []
        outcomes: list[dict[str, np.ndarray]] = []
        with progress_bar(total=n_episodes, unit="ep", desc=f"collect {env_id}",
                          disable=not progress, leave=False) as bar:
            for start in range(0, n_episodes, m):
                k = min(m, n_episodes - start)
                if behavior is not None:
                    behavior.start(seed + start + np.arange(m), int(limit), act_space.shape[0])
                wave, outcome = _run_wave(venv, expert, k, seed + start, obs_space.dtype,
                                          behavior, bar)
                episodes += wave
                outcomes.append(outcome)
    finally:
        venv.close()
    if not with_outcomes:
        return episodes
    keys = set.intersection(*(set(o) for o in outcomes)) if outcomes else set()
    return episodes, {key: np.concatenate([o[key] for o in outcomes]) for key in sorted(keys)}


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


def _run_wave(venv: Any, expert: Any, k: int, wave_seed: int, obs_dtype: Any,
              behavior: Behavior | None, bar: Any
              ) -> tuple[list[EpisodeBuffer], dict[str, np.ndarray]]:
    """Play the first episode of copies 0..k-1 (seeds wave_seed + i) to its end, on
    :func:`qbc.stepping.loop.run_steps`: the expert's deterministic actions, executed through
    ``behavior`` when given, clipped to the action space. The episodes hold the executed
    actions, or the expert's labels (clipped too) when the behaviour records labels; with
    them the env's per-episode outcomes (:func:`qbc.stepping.loop.episode_outcomes`)."""
    steps = run_steps(venv, BoundActor(expert, deterministic=True), wave_seed, copies=k,
                      execute=None if behavior is None else behavior.act, clip=True,
                      on_step=lambda newly: bar.update(int(newly[:k].sum())))
    obs = steps.observations.astype(obs_dtype, copy=False)
    recorded = steps.actions
    if behavior is not None and behavior.record_label:
        space = venv.single_action_space
        recorded = np.clip(steps.labels, space.low, space.high)
    recorded = recorded.astype(np.float32, copy=False)  # the dataset's action dtype
    return [
        EpisodeBuffer(
            id=None, seed=int(wave_seed + i),
            observations=obs[: n + 1, i], actions=recorded[:n, i], rewards=steps.rewards[:n, i],
            terminations=steps.terminated[:n, i], truncations=steps.truncated[:n, i],
        )
        for i, n in enumerate(steps.lengths[:k])
    ], episode_outcomes(steps, k)


def _check_spaces(env_id: str, obs_space: gym.Space, act_space: gym.Space) -> None:
    for what, space in (("observation", obs_space), ("action", act_space)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise InvalidValueError(
                f"{env_id} has {what} space {space}; qbc collect needs flat Box spaces "
                "(1-D continuous observations and actions)"
            )
