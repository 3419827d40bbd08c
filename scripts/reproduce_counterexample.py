"""Theorem 6 of Cao & Xie on qbc/Arctan-v0: the constructed policy's per-step loss, deployed
plainly and with model-based deployment (Algorithm 1), for several ε and horizons
(:mod:`qbc.experiments.counterexample`).

Usage: python scripts/reproduce_counterexample.py [--out runs/counterexample] [--model-sample]
[--seed S]. Writes table.json, table.md and loss_vs_horizon.png; prints the table.
--model-sample adds the model-based deployment with sampled model states (Algorithm 1 as the
paper writes it) beside the default, which advances them by the model's mean.
"""

import sys
from functools import partial

from qbc.cli import run_script
from qbc.experiments.counterexample import CounterexampleConfig, run_counterexample

if __name__ == "__main__":  # bad input: one line, exit 2
    run = partial(run_counterexample, log=print)  # the table on stdout
    sys.exit(run_script(CounterexampleConfig, run, "reproduce_counterexample"))
