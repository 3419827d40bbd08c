"""Reading a local Minari dataset back as flat :class:`~qbc.data.demonstrations.Demonstrations`
(through ``MinariDataset(path)``, which takes the datasets root explicitly; see
:mod:`qbc.data.store`), with episodes holding non-finite numbers refused or dropped."""

from __future__ import annotations

import os
import warnings

import numpy as np

from qbc.data.demonstrations import Demonstrations
from qbc.data.store import DatasetNotFoundError, local_dataset_ids, minari_root
from qbc.errors import CorruptFileError, InvalidValueError


def load_demonstrations(dataset_id: str, drop_nonfinite: bool = False,
                        root: str | os.PathLike | None = None) -> Demonstrations:
    """Read the local Minari dataset ``dataset_id`` (under ``root``, :func:`minari_root`) as
    flat :class:`Demonstrations`.

    Episodes whose observations or actions contain NaN/inf are refused
    (:class:`InvalidValueError` naming them); with ``drop_nonfinite=True`` they are dropped and
    a ``UserWarning`` says how many.
    """
    from minari import MinariDataset
    from minari.dataset.minari_storage import MinariStorage

    if not isinstance(dataset_id, str) or not dataset_id:
        raise InvalidValueError(f"dataset id must be a non-empty string, got {dataset_id!r}")
    base = minari_root(root)
    path = base / dataset_id
    if not (path / "data").is_dir():
        raise DatasetNotFoundError(dataset_id, local_dataset_ids(base), base)
    try:
        dataset = MinariDataset(path / "data")
        raw = MinariStorage.read_raw_metadata(path / "data")
        episodes = list(dataset.iterate_episodes())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            AssertionError, RecursionError, RuntimeError) as exc:  # Minari, h5py: a damaged file
        # (metadata.json a list, a number of 5000 digits, nested 100,000 deep, ...)
        raise CorruptFileError(
            f"Minari dataset {dataset_id!r} at {path} cannot be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); it is truncated or "
            "corrupted: delete it and collect it again"
        ) from None
    except MemoryError as exc:  # a damaged HDF5 header can claim arrays of any size
        raise CorruptFileError(
            f"Minari dataset {dataset_id!r} at {path} holds arrays larger than the memory "
            f"available ({str(exc).splitlines()[0] if str(exc) else 'MemoryError'}); unless it "
            "is really that large, it is damaged: delete it and collect it again") from None
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
