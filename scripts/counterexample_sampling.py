"""Algorithm 1 on the Theorem 6 construction: model state advanced by the model's mean (qbc's
default) against drawn from the model (the algorithm as written), Gaussian head seeds 0-2 and
token head seeds 0-1 (:mod:`qbc.experiments.counterexample_sampling`).

Usage: python scripts/counterexample_sampling.py [--out DIR] [--gaussian-seeds S ...]
[--token-seeds S ...]. Writes per_seed.json, summary.json and table.md; prints the table.
"""

import sys
from functools import partial

from qbc.cli import run_script
from qbc.experiments.counterexample_sampling import (
    SamplingComparisonConfig,
    run_sampling_comparison,
)

if __name__ == "__main__":  # bad input: one line, exit 2
    run = partial(run_sampling_comparison, log=print)  # the table on stdout
    sys.exit(run_script(SamplingComparisonConfig, run, "counterexample_sampling"))
