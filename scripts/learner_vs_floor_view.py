"""The common-tokenizer view of finished learner-vs-floor folders: each DART and DAgger row
against plain BC's tokenizer's floor beside its own, from results.csv, written as one section of
README.md (:mod:`qbc.experiments.learner_vs_floor.views`).

Usage: python scripts/learner_vs_floor_view.py --folders DIR [DIR ...]
"""

import sys
from functools import partial

from qbc.cli import run_script
from qbc.experiments.learner_vs_floor.views import ViewConfig, run_view

if __name__ == "__main__":  # bad input: one line, exit 2
    run = partial(run_view, log=print)
    sys.exit(run_script(ViewConfig, run, "learner_vs_floor_view"))
