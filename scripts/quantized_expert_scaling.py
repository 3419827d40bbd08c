"""Regret of the quantized expert against H and against the bin width
(:mod:`qbc.experiments.scaling`).

Usage: python scripts/quantized_expert_scaling.py [--env qbc/ScalarStable-v0] [--out DIR]
"""

import sys

from qbc.cli import run_script
from qbc.experiments.scaling import ScalingConfig, run_scaling

if __name__ == "__main__":  # bad input: one line, exit 2
    sys.exit(run_script(ScalingConfig, run_scaling, "quantized_expert_scaling"))
