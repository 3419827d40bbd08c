"""Where a DAgger run (:mod:`qbc.dagger`) writes: its run folder and Minari datasets directly,
or, for ``--overwrite`` of an existing run, staging places that replace the old run only when
every round has finished.

A staged run writes its run files and ``round-<r>/`` folders into a hidden folder beside the
run folder (:func:`qbc.io.output_dir`, ``.<name>.staging-*``) and its round datasets, under
their final ids, into a hidden Minari root inside the datasets root
(``.qbc-dagger-<base>.staging-*``), from which they are read back for training. At the end the
datasets are moved to their ids (each replacing the old one by renames), old round datasets
beyond the new run's last round are removed, and the run folder's entries are swapped in (old
``round-<r>/`` folders the new run did not write are removed). Until then, the old run and its
datasets are untouched: a failed run removes its staging places, a killed one leaves hidden
folders that the next run of the same folder and dataset base removes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from qbc.io import leftovers, output_dir


@dataclass(frozen=True)
class RunPlace:
    """Where the rounds are written. Stored texts (configs, provenance, rounds.csv) always name
    the final run folder and dataset ids."""

    work: Path
    """folder of the run files and ``round-<r>/`` (the run folder, or its staging folder)."""
    data_root: Path | None
    """Minari root the round datasets are written to and read from (None: the datasets root)."""

    @property
    def staged(self) -> bool:
        """Whether the run writes into staging places (and the datasets root is not its own)."""
        return self.data_root is not None


def needs_staging(out: Path, dataset_ids: list[str]) -> bool:
    """Whether an ``--overwrite`` run would replace something: a non-empty run folder or an
    existing round dataset."""
    from qbc.data import dataset_exists

    return (out.is_dir() and any(out.iterdir())) or any(dataset_exists(i) for i in dataset_ids)


@contextmanager
def run_place(out: Path, dataset_ids: list[str], base: str, staged: bool,
              owned: tuple[str, ...]) -> Iterator[RunPlace]:
    """The :class:`RunPlace` of a run writing ``out`` and the datasets ``dataset_ids`` (rounds
    0..R under the namespace ``base``). Not ``staged``: ``out`` and the datasets root. Staged:
    staging places, published when the block ends without error (see the module text);
    ``owned`` names the run folder's entries the new run replaces (the run files and every
    old ``round-<r>``)."""
    if not staged:
        out.mkdir(parents=True, exist_ok=True)
        yield RunPlace(out, None)
        return
    from qbc.data import dataset_lock, minari_root

    root = minari_root()
    with ExitStack() as stack:
        for i in dataset_ids:  # no other writer of these ids until the swap
            stack.enter_context(dataset_lock(i, root))
        data_root = stack.enter_context(_staged_root(root, base))
        work = stack.enter_context(output_dir(out, True, "dagger", owned=owned, stage=True))
        yield RunPlace(work, data_root)
        _publish(dataset_ids, data_root, base, root)


@contextmanager
def _staged_root(root: Path, base: str) -> Iterator[Path]:
    """A hidden Minari root inside ``root`` for the datasets of ``base``, removed at the end;
    leftovers of a killed run of the same base are removed first (the caller holds the locks of
    the base's ids, so no live run uses them)."""
    prefix = f".qbc-dagger-{base.replace('/', '--')}.staging-"
    for stale in leftovers(root, prefix):
        shutil.rmtree(stale, ignore_errors=True)
    staged = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _publish(dataset_ids: list[str], data_root: Path, base: str, root: Path) -> None:
    """Move the staged datasets to their ids, then remove the base's round datasets past the
    new run's last round (a longer old run's)."""
    from qbc.data.store import delete_dataset, publish_dataset

    for i in dataset_ids:
        publish_dataset(i, data_root, root)
    for stale in old_rounds(base, len(dataset_ids), root):
        delete_dataset(stale, root)


def old_rounds(base: str, first: int, root: Path) -> list[str]:
    """Ids ``<base>/round-<r>-v0`` with r >= ``first`` that exist under ``root``."""
    folder = root / base
    found = []
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = re.fullmatch(r"round-(\d+)-v0", sub.name)
        if m and int(m.group(1)) >= first and (sub / "data").exists():
            found.append(f"{base}/{sub.name}")
    return found
