"""Sweeps: grids of collect -> train -> coupled-rollout runs, resumable, on a process pool or Ray.

>>> from qbc.sweep import load_spec, run_sweep, write_report
>>> result = run_sweep(load_spec("scripts/sweeps/regret_vs_horizon.toml"), "runs/sweeps/h",
...                    workers=2)
>>> write_report("runs/sweeps/h")       # summary.csv, report.md, regret_vs_H.png, ...

Modules: :mod:`~qbc.sweep.spec` (the TOML file; :mod:`~qbc.sweep.chunk_axes` checks its chunk
axes), :mod:`~qbc.sweep.cells` (grid, content keys, dataset cache keys),
:mod:`~qbc.sweep.runner` (one cell; :mod:`~qbc.sweep.chunk_runner` a chunk cell),
:mod:`~qbc.sweep.table` (the CSV), :mod:`~qbc.sweep.run` (backends, resuming),
:mod:`~qbc.sweep.report` (aggregation, plots); the ``qbc sweep`` commands only call these.
"""

from qbc.sweep.cells import Cell, DatasetSpec, expand_cells, needed_datasets, stable_hash
from qbc.sweep.report import aggregate, growth_fits, write_report
from qbc.sweep.run import SweepResult, run_sweep
from qbc.sweep.runner import run_cell
from qbc.sweep.spec import (
    QUANTIZED_EXPERT,
    DataSpec,
    GridSpec,
    RolloutSpec,
    SweepSpec,
    TrainSpec,
    load_spec,
    spec_from_dict,
)
from qbc.sweep.table import COLUMNS, TIME_COLUMNS, read_table

__all__ = [
    "COLUMNS", "QUANTIZED_EXPERT", "TIME_COLUMNS", "Cell", "DataSpec", "DatasetSpec", "GridSpec",
    "RolloutSpec", "SweepResult", "SweepSpec", "TrainSpec", "aggregate", "expand_cells",
    "growth_fits", "load_spec", "needed_datasets", "read_table", "run_cell", "run_sweep",
    "spec_from_dict", "stable_hash", "write_report",
]
