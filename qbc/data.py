"""Demonstrations: Minari datasets in and out, flat arrays and tensors, episode splits.

A dataset on disk is a Minari dataset with HDF5 storage under ``$MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``). :func:`write_dataset` creates one from episode buffers through Minari's
own API, atomically (it is built in a hidden staging folder and renamed into place);
:func:`load_demonstrations` reads one back as a :class:`Demonstrations` of flat transitions.

qbc's provenance (expert, seeds, qbc version, the env's stability numbers) is stored in the
dataset's metadata under the key ``"qbc"``.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from qbc.errors import (
    CorruptFileError,
    InvalidValueError,
    OutputExistsError,
    UnknownNameError,
)
from qbc.io import atomic_write_json

#: Name of the resolved-config file written beside a dataset's ``data/`` folder.
CONFIG_FILE = "qbc_config.json"

_PER_STEP = ("observations", "actions", "next_observations", "rewards", "terminations",
             "truncations", "episode_ids")


# -- in memory ------------------------------------------------------------------------------------
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


# -- on disk --------------------------------------------------------------------------------------
class DatasetNotFoundError(UnknownNameError):
    """A Minari dataset id with no dataset under the local datasets folder."""

    def __init__(self, dataset_id: str, local_ids: Iterable[str]):
        local_ids = list(local_ids)
        super().__init__("dataset", dataset_id, local_ids)
        root = _datasets_root()
        if local_ids:
            ranked = sorted(local_ids, key=lambda i: (
                -difflib.SequenceMatcher(None, dataset_id, i).ratio(), i))
            have = f"local datasets, closest first: {', '.join(ranked)}"
        else:
            have = "there are no local datasets"
        self.args = (
            f"no Minari dataset {dataset_id!r} in {root} ({have}). Collect one with "
            f"'qbc collect --dataset-id {dataset_id} ...' or set MINARI_DATASETS_PATH",
        )


def _datasets_root() -> Path:
    from minari.storage.datasets_root_dir import get_dataset_path

    # Absolute: the staging trick below re-points MINARI_DATASETS_PATH, and Minari joins a
    # relative root with paths it already joined (a relative root breaks writes).
    return Path(get_dataset_path()).resolve()


def validate_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if Minari accepts it as ``(namespace/)name-vN``, else raise."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    m = DATASET_ID_RE.fullmatch(dataset_id)
    if not m or m.group("version") is None:
        raise InvalidValueError(
            f"malformed dataset id {dataset_id!r}: Minari ids look like 'name-v0' or "
            "'namespace/name-v0' (letters, digits, '-', '_', and a -v<version> suffix)"
        )
    return dataset_id


def dataset_path(dataset_id: str) -> Path:
    """Folder of the dataset ``dataset_id`` under the local datasets root (may not exist)."""
    return _datasets_root() / validate_dataset_id(dataset_id)


def dataset_exists(dataset_id: str) -> bool:
    return (dataset_path(dataset_id) / "data").exists()


def demos_fingerprint(demos: Any) -> str:
    """Hex sha256 of the demonstrations' content (observations, actions, episode ids): the same
    data gives the same hash however it is stored; a re-collected dataset a different one."""
    import hashlib

    h = hashlib.sha256()
    for name in ("observations", "actions", "episode_ids"):
        a = np.ascontiguousarray(getattr(demos, name))
        h.update(f"{name}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dataset_lock(dataset_id: str):
    """The lock on writing ``dataset_id`` (:func:`qbc.io.exclusive`): a hidden file in the
    datasets root, held from the existence check to the final rename."""
    from qbc.io import exclusive

    root = _datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f".qbc-lock-{validate_dataset_id(dataset_id).replace('/', '--')}"
    return exclusive(lock, f"qbc command is writing Minari dataset {dataset_id!r}")


def write_dataset(dataset_id: str, episodes: Sequence[Any], env: str | gym.Env | Any,
                  metadata: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                  overwrite: bool = False, description: str | None = None,
                  algorithm_name: str | None = None):
    """Create the Minari dataset ``dataset_id`` (HDF5 storage) from episode buffers.

    Args:
        dataset_id: ``(namespace/)name-vN``.
        episodes: ``minari.data_collector.EpisodeBuffer`` objects with array fields.
        env: env id, env or ``EnvSpec`` the data came from (``recover_environment`` rebuilds it).
        metadata: JSON-safe provenance, stored under the metadata key ``"qbc"``.
        config: JSON-safe resolved run config, written to ``<dataset>/qbc_config.json``.
        overwrite: replace an existing dataset; otherwise :class:`OutputExistsError`.

    Returns:
        the dataset as loaded by ``minari.load_dataset(dataset_id)``.

    The dataset is built in a hidden staging folder under the datasets root and renamed into
    place, so an interrupted write never leaves a half-written dataset under ``dataset_id``.
    """
    import minari

    final = dataset_path(dataset_id)
    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Minari dataset {dataset_id!r} already exists at {final}; pass --overwrite to "
            "replace it or choose another --dataset-id (e.g. bump the -vN version)"
        )
    root = _datasets_root()
    staging = Path(tempfile.mkdtemp(prefix=".qbc-staging-", dir=root))
    old_env = os.environ.get("MINARI_DATASETS_PATH")
    try:
        # Minari resolves paths from MINARI_DATASETS_PATH on every call; pointing it at the
        # staging folder lets its own create_dataset_from_buffers build the dataset there.
        os.environ["MINARI_DATASETS_PATH"] = str(staging)
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*(code_permalink|author|eval_env).*is set to None")
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id, buffer=list(episodes), env=env,
                algorithm_name=algorithm_name or "qbc", author="qbc",
                description=description or "demonstrations written by qbc",
                data_format="hdf5",
            )
        from minari.dataset.minari_storage import MinariStorage

        storage = MinariStorage.read(staging / dataset_id / "data")
        storage.update_metadata({"qbc": _json_safe(metadata or {})})
        if config is not None:
            atomic_write_json(staging / dataset_id / CONFIG_FILE, _json_safe(config))
    except BaseException:
        _restore_env(old_env)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _restore_env(old_env)
    try:
        with dataset_lock(dataset_id):
            _move_into_place(staging / dataset_id, final, dataset_id, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.load_dataset(dataset_id)


def _move_into_place(built: Path, final: Path, dataset_id: str, overwrite: bool) -> None:
    """Rename the built dataset to ``final``, under the dataset's lock. Without ``overwrite`` a
    dataset that appeared meanwhile is refused, never replaced; with it the old one is set
    aside first and deleted only after the new one is in place."""
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces

    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Minari dataset {dataset_id!r} appeared at {final} while this one was being "
            "written; nothing was replaced: choose another --dataset-id or pass --overwrite")
    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is not None and namespace not in list_local_namespaces():
        create_namespace(namespace)
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=".qbc-trash-", dir=_datasets_root()))
        os.replace(final, trash / "old")
    os.rename(built, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _restore_env(old: str | None) -> None:
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


def _json_safe(obj: Any) -> Any:
    """Round-trip through JSON so numpy scalars and tuples become plain types (NaN refused)."""
    return json.loads(json.dumps(obj, allow_nan=False, default=_to_builtin))


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def load_demonstrations(dataset_id: str, drop_nonfinite: bool = False) -> Demonstrations:
    """Read the local Minari dataset ``dataset_id`` as flat :class:`Demonstrations`.

    Episodes whose observations or actions contain NaN/inf are refused
    (:class:`InvalidValueError` naming them); with ``drop_nonfinite=True`` they are dropped and
    a ``UserWarning`` says how many.
    """
    import minari

    if not isinstance(dataset_id, str) or not dataset_id:
        raise InvalidValueError(f"dataset id must be a non-empty string, got {dataset_id!r}")
    path = _datasets_root() / dataset_id
    if not (path / "data").is_dir():
        raise DatasetNotFoundError(dataset_id, _local_ids())
    try:
        dataset = minari.load_dataset(dataset_id)
        raw = _raw_metadata(path / "data")
        episodes = list(dataset.iterate_episodes())
    except (OSError, ValueError, KeyError, TypeError, AssertionError,
            json.JSONDecodeError) as exc:
        raise CorruptFileError(
            f"Minari dataset {dataset_id!r} at {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); it is truncated or "
            "corrupted: delete it and collect it again"
        ) from None
    if not episodes:
        raise InvalidValueError(f"Minari dataset {dataset_id!r} has no episodes")
    env_spec = dataset.env_spec
    try:
        demos = Demonstrations.from_episodes(
            episodes, env_id=None if env_spec is None else env_spec.id, metadata=raw)
    except ValueError as exc:  # e.g. episodes with observations of different sizes
        raise CorruptFileError(
            f"Minari dataset {dataset_id!r} at {path} holds episodes that do not fit together "
            f"({str(exc).splitlines()[0]}); collect it again") from None
    return _handle_nonfinite(demos, dataset_id, drop_nonfinite)


def _raw_metadata(data_path: Path) -> dict[str, Any]:
    from minari.dataset.minari_storage import MinariStorage

    return MinariStorage.read_raw_metadata(data_path)


def _local_ids() -> list[str]:
    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # misconfigured neighbours are not this call's business
        return list(minari.list_local_datasets())


def _handle_nonfinite(demos: Demonstrations, dataset_id: str, drop: bool) -> Demonstrations:
    bad_rows = ~(np.isfinite(demos.observations).all(axis=1)
                 & np.isfinite(demos.next_observations).all(axis=1)
                 & np.isfinite(demos.actions).all(axis=1))
    if not bad_rows.any():
        return demos
    bad_eps = np.unique(demos.episode_ids[bad_rows])
    shown = ", ".join(map(str, bad_eps[:20].tolist())) + (" ..." if len(bad_eps) > 20 else "")
    what = (f"{int(bad_rows.sum())} steps with NaN/inf observations or actions in "
            f"{len(bad_eps)} episodes of {dataset_id!r} (episode ids {shown})")
    if not drop:
        raise InvalidValueError(
            f"{what}; pass drop_nonfinite=True (--drop-nonfinite) to drop those episodes, or "
            "re-collect the dataset")
    keep = np.setdiff1d(demos.unique_episode_ids(), bad_eps)
    if keep.size == 0:
        raise InvalidValueError(f"{what}: that is every episode, nothing is left to use")
    warnings.warn(f"dropped {what}; {keep.size} episodes remain", UserWarning, stacklevel=3)
    out = demos.select(keep)
    out.metadata["dropped_nonfinite_episodes"] = bad_eps.tolist()
    return out


# -- the `qbc data` command -----------------------------------------------------------------------
@dataclass
class DataConfig:
    """Summarise a local Minari dataset: episodes, steps, returns, shapes and provenance."""

    dataset_id: str
    """Minari dataset id, e.g. qbc/linear-unstable-lqr-v0 (under $MINARI_DATASETS_PATH)."""
    drop_nonfinite: bool = False
    """drop episodes with NaN/inf observations or actions instead of refusing the dataset."""


def run_data(cfg: DataConfig) -> Demonstrations:
    demos = load_demonstrations(cfg.dataset_id, drop_nonfinite=cfg.drop_nonfinite)
    print(format_demonstrations(demos))
    return demos


def format_demonstrations(demos: Demonstrations) -> str:
    """A few lines describing demonstrations and where they came from."""
    returns, lengths = demos.episode_returns(), demos.episode_lengths()
    q = demos.metadata.get("qbc") or {}
    expert = q.get("expert") or {}
    lines = [
        f"dataset {demos.metadata.get('dataset_id', '?')}: env {demos.env_id}, "
        f"{demos.n_episodes} episodes, {len(demos)} steps, obs_dim {demos.obs_dim}, "
        f"act_dim {demos.act_dim}",
        f"episode length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), "
        f"{int(demos.terminations.sum())} terminated",
        f"return {returns.mean():.4g} +- {returns.std():.4g} (min {returns.min():.4g}, "
        f"max {returns.max():.4g})",
        f"actions min {np.round(demos.actions.min(axis=0), 4).tolist()} "
        f"max {np.round(demos.actions.max(axis=0), 4).tolist()}",
    ]
    if q:
        lines.append(f"expert {expert.get('name')} {json.dumps(expert.get('params', {}))}, "
                     f"noise {q.get('expert_noise')}, seed {q.get('seed')}, "
                     f"qbc {q.get('qbc_version')}")
    return "\n".join(lines)


def _data_command():
    from qbc.cli import Command

    return Command(DataConfig, run_data, "summarise a Minari demonstrations dataset")


DATA_COMMAND = _data_command()

__all__ = [
    "CONFIG_FILE",
    "DataConfig",
    "DatasetNotFoundError",
    "Demonstrations",
    "check_compatible",
    "dataset_exists",
    "dataset_path",
    "load_demonstrations",
    "validate_dataset_id",
    "write_dataset",
]
