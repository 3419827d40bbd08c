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

import functools
import sys

from qbc.cli import run_script
from qbc.experiments.reproduce_run import ReproduceArgs, reproduce

if __name__ == "__main__":  # an unknown --only name or a bad flag: one line, exit 2
    log = functools.partial(print, flush=True)
    sys.exit(run_script(ReproduceArgs, lambda args: reproduce(args, log), "reproduce_results"))
