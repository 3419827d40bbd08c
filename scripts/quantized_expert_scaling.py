"""Regret of the quantized expert against H and against the bin width
(:mod:`qbc.experiments.scaling`).

Usage: python scripts/quantized_expert_scaling.py [--env qbc/ScalarStable-v0] [--out DIR]
"""

import tyro

from qbc.experiments.scaling import ScalingConfig, run_scaling

if __name__ == "__main__":
    run_scaling(tyro.cli(ScalingConfig))
