"""Demonstrations: Minari datasets in and out, flat arrays and tensors, episode splits.

A dataset on disk is a Minari dataset with HDF5 storage under the datasets root
(:func:`minari_root`: an explicit ``root``, else ``$MINARI_DATASETS_PATH``, else
``~/.minari/datasets``). :func:`write_dataset` creates one from episode buffers, atomically (it
is built in a hidden staging folder and renamed into place); :func:`load_demonstrations` reads
one back as a :class:`Demonstrations` of flat transitions.

- :mod:`qbc.data.demonstrations`: :class:`Demonstrations` in memory, splits, checks;
- :mod:`qbc.data.store`: the root, dataset ids, locks, writing and reading Minari datasets.
"""

from qbc.data.demonstrations import Demonstrations, check_compatible, demos_sha256
from qbc.data.loading import load_demonstrations
from qbc.data.store import (
    CONFIG_FILE,
    DatasetNotFoundError,
    dataset_exists,
    dataset_lock,
    dataset_path,
    join_dataset_ids,
    local_dataset_ids,
    minari_root,
    split_dataset_ids,
    validate_dataset_id,
    write_dataset,
)

__all__ = [
    "CONFIG_FILE",
    "DatasetNotFoundError",
    "Demonstrations",
    "check_compatible",
    "dataset_exists",
    "dataset_lock",
    "dataset_path",
    "demos_sha256",
    "join_dataset_ids",
    "load_demonstrations",
    "local_dataset_ids",
    "minari_root",
    "split_dataset_ids",
    "validate_dataset_id",
    "write_dataset",
]
