"""Demonstrations in memory: flat transitions of whole episodes, episode splits, checks.

:class:`Demonstrations` holds per-step arrays (observations (N, obs_dim), actions (N, act_dim),
...) in episode order; :mod:`qbc.data.store` reads and writes them as Minari datasets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np

from qbc.errors import CorruptFileError, InvalidValueError

_PER_STEP = ("observations", "actions", "next_observations", "rewards", "terminations",
             "truncations", "episode_ids")


@dataclass
class Demonstrations:
    """Flat transitions of whole episodes, in episode order.

    Row ``t`` is one step: ``observations[t]`` -> ``actions[t]`` -> ``next_observations[t]``,
    ``rewards[t]``, ``terminations[t]``, ``truncations[t]``. The last step of an episode has
    ``terminations | truncations`` true and its ``next_observations`` is the episode's final
    observation (never the next episode's reset observation).
    """

    observations: np.ndarray
    """(N, obs_dim) float32."""
    actions: np.ndarray
    """(N, act_dim) float32, the actions that were applied."""
    next_observations: np.ndarray
    """(N, obs_dim) float32."""
    rewards: np.ndarray
    """(N,) float32."""
    terminations: np.ndarray
    """(N,) bool."""
    truncations: np.ndarray
    """(N,) bool."""
    episode_ids: np.ndarray
    """(N,) int64, the dataset's episode id of each step (kept by ``select`` and ``split``)."""
    env_id: str | None = None
    """Gymnasium id of the env that produced the data, if known."""
    metadata: dict = field(default_factory=dict)
    """JSON-safe dataset metadata (Minari's keys plus qbc's provenance under ``"qbc"``)."""

    def __post_init__(self) -> None:
        n = len(self.observations)
        for name in _PER_STEP:
            if len(getattr(self, name)) != n:
                raise InvalidValueError(
                    f"Demonstrations.{name} has {len(getattr(self, name))} rows, "
                    f"observations has {n}; every per-step array needs the same length"
                )

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def n_episodes(self) -> int:
        """Number of distinct episodes."""
        return len(np.unique(self.episode_ids))

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def unique_episode_ids(self) -> np.ndarray:
        """(E,) int64 episode ids in the order they appear."""
        _, first = np.unique(self.episode_ids, return_index=True)
        return self.episode_ids[np.sort(first)]

    def episode_lengths(self) -> np.ndarray:
        """(E,) int64 steps per episode, in the order of :meth:`unique_episode_ids`."""
        ids = self.unique_episode_ids()
        return np.array([np.count_nonzero(self.episode_ids == i) for i in ids], dtype=np.int64)

    def episode_returns(self) -> np.ndarray:
        """(E,) float64 undiscounted return of each episode, in :meth:`unique_episode_ids` order."""
        ids = self.unique_episode_ids()
        order = {int(e): k for k, e in enumerate(ids)}
        index = np.array([order[int(e)] for e in self.episode_ids], dtype=np.int64)
        return np.bincount(index, weights=self.rewards.astype(np.float64), minlength=len(ids))

    def select(self, episode_ids: Iterable[int]) -> Demonstrations:
        """The steps of the given episodes (kept in dataset order); unknown ids are an error."""
        wanted = np.asarray(list(episode_ids), dtype=np.int64)
        missing = np.setdiff1d(wanted, self.episode_ids)
        if missing.size:
            raise InvalidValueError(
                f"episode ids {missing.tolist()} are not in these demonstrations "
                f"(they hold {self.n_episodes} episodes)"
            )
        mask = np.isin(self.episode_ids, wanted)
        return replace(self, **{name: getattr(self, name)[mask] for name in _PER_STEP},
                       metadata=dict(self.metadata))

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[Demonstrations,
                                                                        Demonstrations]:
        """Random split by whole episodes into ``(train, val)``.

        ``round(val_fraction * E)`` episodes go to val, clamped to ``[1, E - 1]`` when there are
        at least 2 episodes (each part gets one); with a single episode val is empty.
        """
        if not 0.0 < val_fraction < 1.0:
            raise InvalidValueError(
                f"val_fraction must be strictly between 0 and 1, got {val_fraction}"
            )
        ids = self.unique_episode_ids()
        n_val = 0 if len(ids) < 2 else min(max(round(val_fraction * len(ids)), 1), len(ids) - 1)
        perm = np.random.default_rng(seed).permutation(len(ids))
        val_ids = ids[perm[:n_val]]
        train_ids = ids[perm[n_val:]]
        return self.select(train_ids), self.select(val_ids)

    def to_tensors(self, device: str = "cpu") -> dict[str, Any]:
        """The per-step arrays as torch tensors (float32, bool, int64) on ``device``."""
        import torch

        return {name: torch.as_tensor(getattr(self, name), device=device) for name in _PER_STEP}

    @classmethod
    def from_episodes(cls, episodes: Sequence[Any], env_id: str | None = None,
                      metadata: dict | None = None) -> Demonstrations:
        """Flatten episodes that have ``id``, ``observations`` (T+1, obs_dim), ``actions``
        (T, act_dim), ``rewards``, ``terminations`` and ``truncations`` (T,) attributes (Minari's
        ``EpisodeData`` or ``EpisodeBuffer``)."""
        if not episodes:
            raise InvalidValueError("no episodes to make demonstrations from")
        obs, nxt, act, rew, term, trunc, eid = [], [], [], [], [], [], []
        for k, ep in enumerate(episodes):
            o = np.asarray(ep.observations)
            a = np.asarray(ep.actions)
            if o.ndim != 2 or a.ndim != 2:
                raise InvalidValueError(
                    f"episode {ep.id}: observations {o.shape} and actions {a.shape} must be 2-D "
                    "(flat Box spaces); flatten dict or image observations first"
                )
            if len(o) != len(a) + 1:
                raise CorruptFileError(
                    f"episode {ep.id} has {len(o)} observations for {len(a)} actions "
                    "(expected one more observation than actions); re-collect the dataset"
                )
            obs.append(o[:-1])
            nxt.append(o[1:])
            act.append(a)
            rew.append(np.asarray(ep.rewards))
            term.append(np.asarray(ep.terminations))
            trunc.append(np.asarray(ep.truncations))
            eid.append(np.full(len(a), k if ep.id is None else ep.id, dtype=np.int64))
        return cls(
            observations=np.concatenate(obs).astype(np.float32),
            actions=np.concatenate(act).astype(np.float32),
            next_observations=np.concatenate(nxt).astype(np.float32),
            rewards=np.concatenate(rew).astype(np.float32),
            terminations=np.concatenate(term).astype(bool),
            truncations=np.concatenate(trunc).astype(bool),
            episode_ids=np.concatenate(eid),
            env_id=env_id,
            metadata=dict(metadata or {}),
        )


def check_compatible(demos: Demonstrations, observation_space: gym.Space,
                     action_space: gym.Space) -> None:
    """Raise :class:`InvalidValueError` unless the demonstrations' per-step observation and
    action shapes equal the spaces' shapes."""
    problems = []
    for what, arr, space in (("observation", demos.observations, observation_space),
                             ("action", demos.actions, action_space)):
        shape = getattr(space, "shape", None)
        if shape is None or tuple(arr.shape[1:]) != tuple(shape):
            problems.append(f"{what}s are {tuple(arr.shape[1:])} but the {what} space is "
                            f"{shape} ({space})")
    if problems:
        source = demos.metadata.get("dataset_id") or "the demonstrations"
        raise InvalidValueError(
            f"{source} do not fit this env: " + "; ".join(problems)
            + ". Use demonstrations collected on the same env."
        )


def demos_sha256(demos: Any) -> str:
    """Hex sha256 of the demonstrations' content (observations, actions, episode ids): the same
    data gives the same hash however it is stored; a re-collected dataset a different one."""
    import hashlib

    h = hashlib.sha256()
    for name in ("observations", "actions", "episode_ids"):
        a = np.ascontiguousarray(getattr(demos, name))
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def history_index(episode_ids: np.ndarray, k: int) -> np.ndarray:
    """Row indices (N, k) of the last k observations of each step, oldest first, repeating the
    episode's first row before its start. Rows must be grouped by episode in time order."""
    n = len(episode_ids)
    t = np.arange(n)
    start = np.zeros(n, dtype=np.int64)
    new = np.r_[True, episode_ids[1:] != episode_ids[:-1]]
    start[new] = t[new]
    start = np.maximum.accumulate(start)
    lags = np.arange(k - 1, -1, -1)
    return np.maximum(t[:, None] - lags[None, :], start[:, None])
