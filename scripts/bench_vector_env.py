"""Steps per second of the native qbc vector envs against gymnasium.vector.SyncVectorEnv at
1024 copies, side by side in one run; writes config.json and results.json to --out-dir.

    python scripts/bench_vector_env.py
    python scripts/bench_vector_env.py --env-ids qbc/LinearUnstable-v0 --num-envs 4096
"""

import sys

import tyro

from qbc.envs.bench import BenchVectorConfig, run_bench_vector
from qbc.errors import QbcError

if __name__ == "__main__":
    config = tyro.cli(BenchVectorConfig, description=__doc__)
    try:
        run_bench_vector(config)
    except QbcError as exc:
        sys.exit(f"bench_vector_env: error: {exc}")
