"""One reproduction run (``scripts/reproduce_results.py``): run the chosen results, publish a
full run's files, compare every headline number with its stored reference and, with
``update``, store the new ones (:mod:`qbc.experiments.reproduce`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qbc.experiments.reproduce import (
    compare,
    format_rows,
    publish,
    run_result,
    select,
    update_reference,
)
from qbc.infra.progress import Log, silent


@dataclass
class ReproduceArgs:
    """Re-run published results and compare their numbers with the stored ones."""

    quick: bool = False
    """run the reduced versions (compared with the stored quick values)."""
    only: tuple[str, ...] = ()
    """result names (folders under docs/results, e.g. counterexample sweeps/regret_vs_horizon)."""
    update: bool = False
    """store this run's numbers as the reference values (tolerances kept)."""
    out: Path = Path("runs/reproduce")
    """where the runs write (one folder per mode and result)."""


def reproduce(args: ReproduceArgs, log: Log = silent) -> int:
    """Run, compare (and store); ``log`` gets each result's start, the table and the count.
    Returns the exit code: 1 when a number is off and nothing was stored, else 0."""
    mode = "quick" if args.quick else "full"
    rows = []
    for result in select(list(args.only)):
        out = args.out / mode / result.name
        log(f"[{mode}] {result.name} ...")
        now = run_result(result, mode, out)
        if mode == "full":
            publish(result, out)
        rows += compare(result, mode, now)
        if args.update:
            log(f"  stored in {update_reference(result, mode, now)}")
    log(format_rows(rows))
    failed = [r for r in rows if not r["ok"]]
    log(f"{len(rows) - len(failed)} of {len(rows)} numbers within tolerance")
    return 1 if failed and not args.update else 0
