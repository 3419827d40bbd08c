"""Running a sweep: skip finished cells, collect the datasets, run the rest, append their rows.

Backends: ``local`` with ``workers = 1`` runs the cells one after another in this process;
``local`` with more workers uses a :class:`concurrent.futures.ProcessPoolExecutor` (spawn
context); ``ray`` submits each cell as a Ray task (``pip install "qbc[ray]"``). In every case the
parent is the only process that writes the result table, and it appends a cell's rows only when
the whole cell has finished.

Sweep directory::

    sweep_config.json   the resolved sweep (spec, run options, every cell and its key)
    results.csv         one row per (cell, policy, H) — chunk cells: per (execution, H); a
                        cell's rows appear all at once
    cells/<key>/        each cell's checkpoints (error.txt when it failed)
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qbc.data import load_demonstrations
from qbc.errors import InvalidValueError
from qbc.infra.files import atomic_write_json, atomic_write_text
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import LOCK_WAIT_S
from qbc.stepping.limits import check_rollout_memory
from qbc.sweep.cells import Cell, expand_cells, needed_datasets
from qbc.sweep.entries import env_ids
from qbc.sweep.runner import ensure_dataset, run_cell
from qbc.sweep.spec import SweepSpec
from qbc.sweep.table import (
    CONFIG_FILE,
    TABLE_FILE,
    append_rows,
    finished_cells,
    read_config,
    sweep_lock,
)

BACKENDS = ("local", "ray")


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    out: Path
    table: Path
    n_cells: int
    """cells in the grid."""
    skipped: int
    """cells already in the table before this run."""
    executed: list[str] = field(default_factory=list)
    """keys of the cells run (and appended) now."""
    failed: dict[str, str] = field(default_factory=dict)
    """key -> one-line error of the cells that failed now (none of their rows were written)."""
    stale: int = 0
    """cells in the table that are not in this grid (kept; the report leaves them out)."""
    datasets_collected: int = 0
    seconds: float = 0.0


def run_sweep(spec: SweepSpec, out: str | Path, workers: int = 1, backend: str = "local",
              address: str | None = None, progress: bool = True,
              source: str | None = None, lock_timeout: float = LOCK_WAIT_S) -> SweepResult:
    """Run every cell of ``spec`` that has no rows in ``out/results.csv`` yet.

    Args:
        spec: the sweep (see :func:`qbc.sweep.load_spec`).
        out: sweep directory; created if needed. Rerunning with the same directory resumes.
        workers: processes (local) or CPUs of a Ray cluster started here (ray without address).
        backend: "local" or "ray".
        address: Ray cluster address (e.g. "auto" or "ray://head:10001"); default: start a local
            Ray instance, or use the one already initialised in this process.
        progress: show a progress bar over cells.
        source: where the spec came from (recorded in sweep_config.json).
        lock_timeout: seconds to wait for a dataset another sweep sharing the datasets root is
            collecting, before giving up (LockTimeoutError naming its holder).
    """
    if backend not in BACKENDS:
        raise InvalidValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if workers < 1:
        raise InvalidValueError(f"--workers must be >= 1, got {workers}")
    if not (math.isfinite(lock_timeout) and lock_timeout >= 0):
        raise InvalidValueError(f"--lock-timeout must be a finite number of seconds >= 0, got "
                                f"{lock_timeout!r}")
    if address is not None and backend != "ray":
        raise InvalidValueError("--address is for --backend ray; drop it or add --backend ray")
    actors = max(len(c.policies) * (len(c.settings.get("executions", [])) or 1)
                 for c in expand_cells(spec)) + 1  # the largest coupled rollout of a cell
    # one cell's coupled rollout: its policies and the expert
    for env_id in env_ids(spec.grid.envs):
        check_rollout_memory(env_id, actors, spec.rollout.episodes,
                             max(spec.grid.horizons), "use fewer [rollout] episodes or "
                             "smaller [grid] horizons")
    t0 = time.perf_counter()
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sweep_lock(out):
            result = _run_locked(spec, out, workers, backend, address, progress, source,
                                 lock_timeout)
    except BaseException:
        for folder in created:  # refused before writing: the folders it made go again
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    result.seconds = time.perf_counter() - t0
    return result


def _run_locked(spec: SweepSpec, out: Path, workers: int, backend: str, address: str | None,
                progress: bool, source: str | None, lock_timeout: float) -> SweepResult:
    table = out / TABLE_FILE
    read_config(out / CONFIG_FILE)  # a damaged one is refused, not replaced
    cells = expand_cells(spec)
    done = finished_cells(table)
    todo = [c for c in cells if c.key not in done]
    result = SweepResult(out=out, table=table, n_cells=len(cells), skipped=len(cells) - len(todo),
                         stale=len(done - {c.key for c in cells}))
    # the datasets first: a wait for another sweep's dataset that runs out writes nothing here
    result.datasets_collected = _collect(todo, spec.data.num_envs, progress, lock_timeout)
    atomic_write_json(out / CONFIG_FILE, {
        "source": source, "spec": spec.to_dict(),
        "run": {"workers": workers, "backend": backend, "address": address},
        "cells": [{"key": c.key, **{k: v for k, v in asdict(c).items() if k != "params"}}
                  for c in cells],
    })
    if todo:
        execute = {"local": _local, "ray": _ray}[backend]
        bar = progress_bar(total=len(cells), initial=result.skipped, desc="sweep", unit="cell",
                           disable=not progress, dynamic_ncols=True)
        try:
            for cell, outcome in execute(todo, out / "cells", workers, address):
                if isinstance(outcome, BaseException):
                    result.failed[cell.key] = _record_failure(out, cell, outcome)
                    bar.write(f"cell {cell.key} failed: {result.failed[cell.key]}")
                else:
                    append_rows(table, outcome["rows"])
                    result.executed.append(cell.key)
                bar.update(1)
        finally:
            bar.close()
    return result


def _collect(cells: list[Cell], num_envs: int, progress: bool, lock_timeout: float) -> int:
    """Collect, in this process, every dataset the cells need that is not cached yet."""
    specs = needed_datasets(cells)
    made = 0
    for ds in progress_bar(specs, desc="datasets", unit="dataset", disable=not progress,
                           leave=False):
        made += ensure_dataset(ds, num_envs=num_envs, lock_timeout=lock_timeout,
                               progress=progress)
    return made


def _record_failure(out: Path, cell: Cell, exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cause = getattr(exc, "__cause__", None)
    if cause is not None and "Traceback" in str(cause):  # the worker's own traceback
        text += str(cause)
    atomic_write_text(out / "cells" / cell.key / "error.txt", text)
    line = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {line[0] if line else ''}"


Outcome = Iterator[tuple[Cell, Any]]


def _local(cells: list[Cell], work: Path, workers: int, address: str | None) -> Outcome:
    if workers == 1:
        for cell in cells:
            try:
                outcome: Any = run_cell(cell.to_dict(), str(work))
            except Exception as exc:  # noqa: BLE001  (recorded; the other cells go on)
                outcome = exc
            yield cell, outcome
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(cells)), mp_context=ctx) as pool:
        pending = {pool.submit(run_cell, c.to_dict(), str(work)): c for c in cells}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    cell = pending.pop(fut)
                    exc = fut.exception()
                    yield cell, exc if exc is not None else fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _ray(cells: list[Cell], work: Path, workers: int, address: str | None) -> Outcome:
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = workers
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
        started = True
    try:
        task = ray.remote(num_cpus=1)(run_cell)
        # The parent reads each dataset once and ships it through Ray's object store, so workers
        # on other machines do not need the datasets folder.
        refs = {ds: ray.put(load_demonstrations(ds.dataset_id))
                for ds in needed_datasets(cells)}
        pending = {task.remote(c.to_dict(), str(work), refs[c.dataset]): c for c in cells}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cell = pending.pop(ref)
                    try:
                        outcome: Any = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # task error, lost worker
                        outcome = exc
                    yield cell, outcome
        finally:
            for ref in pending:
                ray.cancel(ref)
    finally:
        if started:
            ray.shutdown()


def import_ray() -> Any:
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InvalidValueError(
            "--backend ray needs Ray, which is not installed; install it with "
            "pip install \"qbc[ray]\" (or pip install \"ray>=2.9\"), or use --backend local"
        ) from None
    return ray
