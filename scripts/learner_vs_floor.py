"""The token learner against its quantization floor: plain BC, DART and DAgger on unstable and
physics envs, with the quantized expert and an mlp-mse reference
(:mod:`qbc.experiments.learner_vs_floor`). Usage: python scripts/learner_vs_floor.py [--quick]
[--out DIR] [--envs ID ...] [--seeds 0 1 ...] [--workers N] (re-run it to continue a killed run)
"""

import sys
from functools import partial

from qbc.cli import run_script
from qbc.experiments.learner_vs_floor.comparison import run_comparison
from qbc.experiments.learner_vs_floor.config import FloorConfig

if __name__ == "__main__":  # bad input: one line, exit 2
    run = partial(run_comparison, log=partial(print, flush=True))  # a line per finished job
    sys.exit(run_script(FloorConfig, run, "learner_vs_floor"))
