"""The ledger of issue 33 (:mod:`qbc.experiments.multimodal.ledger`): mlp-mse, Gaussian, AR token
(uniform, smooth, k-means) and chunked token policies on the detour task, PointMaze and
FetchPickAndPlace over several seeds: success, mode coverage, regret, the tokenizers' floors, and
a paragraph on where tokens win and where they cost. Resumable: a re-run into the same --out
keeps every finished cell.

Usage: python scripts/multimodal_ledger.py [--out runs/multimodal_ledger] [--quick]
"""

import functools
import sys

from qbc.cli import run_script
from qbc.experiments.multimodal import LedgerConfig, results_text, run_ledger

if __name__ == "__main__":  # bad input: one line, exit 2; a line per cell
    run = functools.partial(run_ledger, log=functools.partial(print, flush=True))
    sys.exit(run_script(LedgerConfig, lambda cfg: print(results_text(run(cfg)), end=""),
                        "multimodal_ledger"))
