"""Why tokens at all: mlp-mse vs token policies on the two-sided detour task
(:mod:`qbc.experiments.multimodal`): success, mode coverage and regret, coupled rollouts.

Usage: python scripts/multimodal.py [--out runs/multimodal] [--n-demos 100] [--steps 2000]
"""

import tyro

from qbc.experiments.multimodal import MultimodalConfig, format_table, run_multimodal

if __name__ == "__main__":
    print(format_table(run_multimodal(tyro.cli(MultimodalConfig))["rows"]), end="")
