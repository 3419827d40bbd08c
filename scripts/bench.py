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

import tyro

from qbc.bench import BenchConfig, run_bench
from qbc.errors import QbcError

if __name__ == "__main__":
    config = tyro.cli(BenchConfig, description=__doc__)
    try:
        run_bench(config)
    except QbcError as exc:
        sys.exit(f"bench: error: {exc}")
