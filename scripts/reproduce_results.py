"""Re-run every published result (docs/results/*) and compare its headline numbers with the
stored reference values (reference.json in each result's folder).

Usage:
    python scripts/reproduce_results.py --quick          # reduced runs, a few minutes
    python scripts/reproduce_results.py                  # the published runs (about an hour on
                                                         # 2 cores); regenerates docs/results
    python scripts/reproduce_results.py --only counterexample --quick
    python scripts/reproduce_results.py --update [--quick]  # store new numbers after an
                                                            # intended change (say why)
Prints result / key / stored / now / within tolerance; exits 1 if any number is off.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from qbc.cli import run_script
from qbc.experiments.reproduce import (
    compare,
    format_rows,
    publish,
    run_result,
    select,
    update_reference,
)


@dataclass
class Args:
    quick: bool = False
    """run the reduced versions (compared with the stored quick values)."""
    only: tuple[str, ...] = ()
    """result names (folders under docs/results, e.g. counterexample sweeps/regret_vs_horizon)."""
    update: bool = False
    """store this run's numbers as the reference values (tolerances kept)."""
    out: Path = Path("runs/reproduce")
    """where the runs write (one folder per mode and result)."""


def main(args: Args) -> int:
    mode = "quick" if args.quick else "full"
    rows = []
    for result in select(list(args.only)):
        out = args.out / mode / result.name
        print(f"[{mode}] {result.name} ...", flush=True)
        now = run_result(result, mode, out)
        if mode == "full":
            publish(result, out)
        rows += compare(result, mode, now)
        if args.update:
            print(f"  stored in {update_reference(result, mode, now)}")
    print(format_rows(rows))
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} numbers within tolerance")
    return 1 if failed and not args.update else 0


if __name__ == "__main__":  # an unknown --only name or a bad flag: one line, exit 2
    sys.exit(run_script(Args, main, "reproduce_results"))
