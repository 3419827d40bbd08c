"""Measured speed of qbc against its natural baselines, in one process, as one table with ratios:
native vector env vs SyncVectorEnv (1, 64, 1024 copies), AR-transformer decoding with and
without the KV cache and its batch-1 latency, training samples/s and FLOP/s against a plain
matmul of comparable size, coupled-rollout actions/s and the tiny quickstart's wall time.
The same as `qbc bench`.

    python scripts/bench.py --quick                      # about a minute on 2 cores
    python scripts/bench.py --json runs/bench.json       # full run, results as JSON too
    python scripts/bench.py --threads 2 --no-quickstart
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
