"""Where a DAgger run (:mod:`qbc.interactive.dagger`) writes: its run folder and Minari datasets
directly,
or, for ``--overwrite`` of an existing run, staging places that replace the old run only when
every round has finished.

A staged run writes its run files and ``round-<r>/`` folders into a hidden folder beside the
run folder (``.<name>.staging-*``) and its round datasets, under their final ids, into a hidden
Minari root inside the datasets root (``.qbc-dagger-<base>.staging-*``), from which they are
read back for training. Until every round has finished, the old run and its datasets are
untouched: a failed run removes its staging places, a killed one leaves hidden folders that the
next ``--overwrite`` run of the same folder and dataset base removes.

When every round has finished, the run is published in three steps:

1. **commit**: a journal, ``.dagger-publish.json``, is written (atomically) into the staging
   folder: the round dataset ids, the base, the datasets root and staged root, the names of the
   entries to swap into the run folder and of the old run's entries to remove;
2. **publish**: each staged dataset is moved to its id (replacing the old one by renames), and
   the base's old round datasets past the new run's last round are removed;
3. **swap**: each entry of the staging folder replaces the run folder's entry of the same name
   (the old one set aside as ``.<name>.replaced`` and deleted after), the old run's other
   ``round-<r>/`` folders are removed, then the staged root and the staging folder (the journal
   last).

Every step is redone safely: a moved dataset or entry is no longer in its staging place, so it
is skipped. A run killed (or failing) after the commit leaves the journal; the next
``qbc dagger`` on that folder (continuing or ``--overwrite``) first finishes the publish and swap
(:func:`finish_interrupted`), so from then on the run folder and the round datasets are both
the new run's. Known gaps: a kill inside the replacement of one dataset can leave the old one in
a hidden ``.qbc-trash-*`` folder of the datasets root (not removed: other commands use such
folders); the journal is found by the folder's name, so a folder moved between the kill and the
next run is not finished.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.data import dataset_exists, dataset_lock, minari_root
from qbc.data.store import dataset_path, delete_dataset, publish_dataset
from qbc.infra.files import atomic_write_json, read_json_object
from qbc.infra.run_folder import check_out_dir, leftovers

#: the journal of a staged run whose rounds have all finished (its publish and swap are due).
JOURNAL = ".dagger-publish.json"


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
    return (out.is_dir() and any(out.iterdir())) or any(dataset_exists(i) for i in dataset_ids)


@contextmanager
def run_place(out: Path, dataset_ids: list[str], base: str, staged: bool,
              owned: tuple[str, ...]) -> Iterator[RunPlace]:
    """The :class:`RunPlace` of a run writing ``out`` and the datasets ``dataset_ids`` (rounds
    0..R under the namespace ``base``); the caller holds the lock of ``out``. Not ``staged``:
    ``out`` and the datasets root. Staged: staging places, committed and published when the
    block ends without error (see the module text); ``owned`` names the run folder's entries
    the new run replaces (the run files and every old ``round-<r>``)."""
    if not staged:
        out.mkdir(parents=True, exist_ok=True)
        yield RunPlace(out, None)
        return

    root = minari_root()
    with ExitStack() as stack:
        for i in dataset_ids:  # no other writer of these ids until the swap
            stack.enter_context(dataset_lock(i, root))
        place = _new_staging(out, root, base)
        try:
            yield place
        except BaseException:
            _discard(place.work, place.data_root)
            raise
        _commit(place, dataset_ids, base, root, owned)
        _complete(place.work, out)


def finish_interrupted(out: Path) -> bool:
    """Finish the publish and swap of a staged run of ``out`` that was killed after its commit
    (a staging folder holding a journal); True when there was one. The caller holds the lock
    of ``out``; the datasets are published under their own locks."""
    found = False
    for work in leftovers(Path(out).absolute().parent, _staging_prefix(out)):
        if (work / JOURNAL).is_file():
            _complete(work, Path(out))
            found = True
    return found


def _staging_prefix(out: Path) -> str:
    return f".{Path(out).name}.staging-"


def _new_staging(out: Path, root: Path, base: str) -> RunPlace:
    """Fresh staging places for ``out`` and ``base`` (a file ``out`` refused); the ones a run
    killed before its commit left are removed first (the caller holds the locks of ``out`` and
    of the base's ids, so no live run uses them)."""
    check_out_dir(out, True)
    parent = Path(out).absolute().parent
    data_prefix = f".qbc-dagger-{base.replace('/', '--')}.staging-"
    _discard(*leftovers(parent, _staging_prefix(out)), *leftovers(root, data_prefix))
    data_root = Path(tempfile.mkdtemp(prefix=data_prefix, dir=root))
    return RunPlace(Path(tempfile.mkdtemp(prefix=_staging_prefix(out), dir=parent)), data_root)


def _commit(place: RunPlace, dataset_ids: list[str], base: str, root: Path,
            owned: tuple[str, ...]) -> None:
    """Write the journal of a staged run whose rounds have all finished: from here on the run
    is published, now or by the next run of its folder."""
    entries = sorted(p.name for p in place.work.iterdir())
    atomic_write_json(place.work / JOURNAL, {
        "datasets": dataset_ids, "base": base, "root": str(Path(root).absolute()),
        "data_root": str(Path(place.data_root).absolute()), "entries": entries,
        "stale": sorted(set(owned) - set(entries))})


def _complete(work: Path, out: Path) -> None:
    """Publish the datasets and swap the run folder's entries as the journal in ``work`` says;
    each step skips what an interrupted earlier try already did."""
    journal: dict[str, Any] = read_json_object(work / JOURNAL, what="DAgger publish journal")
    publish(journal["datasets"], Path(journal["data_root"]), journal["base"],
            Path(journal["root"]))
    swap_in(work, out, journal["entries"], journal["stale"])
    _remove(Path(journal["data_root"]))
    _remove(work)  # holds only the journal now


def publish(dataset_ids: list[str], data_root: Path, base: str, root: Path) -> None:
    """Move the staged datasets still under ``data_root`` to their ids, then remove the base's
    round datasets past the new run's last round (a longer old run's)."""
    for i in dataset_ids:
        if dataset_path(i, data_root).exists():
            publish_dataset(i, data_root, root)
    for stale in old_rounds(base, len(dataset_ids), root):
        delete_dataset(stale, root)


def swap_in(work: Path, out: Path, entries: list[str], stale: list[str]) -> None:
    """Move the ``entries`` still in ``work`` into ``out``, each replacing the one of the same
    name, then remove the old run's entries ``stale``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in entries:
        new, target = work / name, out / name
        aside = out / f".{name}.replaced"
        if new.exists() or new.is_symlink():
            if target.exists() or target.is_symlink():
                _remove(aside)
                os.replace(target, aside)
            os.replace(new, target)
        _remove(aside)
    _remove(*(out / name for name in stale))


def _discard(*folders: Path | None) -> None:
    """Delete staging folders of a failed or abandoned run, as far as possible."""
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _remove(*paths: Path) -> None:
    """Delete files and folders (missing ones are fine); errors are raised (a publish that
    cannot finish keeps its journal and is tried again)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def old_rounds(base: str, first: int, root: Path) -> list[str]:
    """Ids ``<base>/round-<r>-v0`` with r >= ``first`` that exist under ``root``."""
    folder = root / base
    found = []
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = re.fullmatch(r"round-(\d+)-v0", sub.name)
        if m and int(m.group(1)) >= first and (sub / "data").exists():
            found.append(f"{base}/{sub.name}")
    return found
