"""The quantized expert with the data-fitted token range against ranges widened by
--range-margin: regret and diverged episodes (qbc.experiments.quantized_expert_range).

    python scripts/quantized_expert_range.py --datasets floor/qbc_scalarunstable_v0-s0-bc-v0 ...
        [--env qbc/ScalarUnstable-v0] [--expert lqr] [--quantizer uniform] [--bins 64]
        [--margins 0 0.5 1] [--episodes 100] [--horizon 500] [--seed 900000]
(the datasets of `scripts/learner_vs_floor.py` lie under its --out folder's datasets/: set
MINARI_DATASETS_PATH to it).
"""

import sys

from qbc.cli import run_script
from qbc.experiments.quantized_expert_range import RangeConfig, compare_ranges


def main(cfg: RangeConfig) -> None:
    compare_ranges(cfg, log=print)


if __name__ == "__main__":
    sys.exit(run_script(RangeConfig, main, "quantized_expert_range"))
