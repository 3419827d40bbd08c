"""Regret of the quantized expert against H and against the bin width
(:mod:`qbc.experiments.scaling`).

Usage: python scripts/quantized_expert_scaling.py [--env qbc/ScalarStable-v0] [--out DIR]
"""

import sys
from functools import partial

from qbc.cli import run_script
from qbc.experiments.scaling import ScalingConfig, run_scaling

if __name__ == "__main__":  # bad input: one line, exit 2
    run = partial(run_scaling, log=print)  # the table on stdout
    sys.exit(run_script(ScalingConfig, run, "quantized_expert_scaling"))
