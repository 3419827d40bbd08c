"""Benchmark the AR transformer policy: training samples/s and decode actions/s at batch 1024,
with and without the KV cache, in one run.

    python scripts/bench_policy.py                       # D = 4, default model, CPU
    python scripts/bench_policy.py --act-dim 8 --threads 2 --device cuda

Writes nothing; prints the numbers (and them as JSON with --json).
"""

import json
import sys
from dataclasses import dataclass, field

import tyro

from qbc.policy.bench import PolicyBenchConfig, bench_policy, format_bench


@dataclass
class Args:
    bench: PolicyBenchConfig = field(default_factory=PolicyBenchConfig)
    """benchmark settings."""
    json: bool = False
    """also print the result as one JSON line."""


if __name__ == "__main__":
    args = tyro.cli(Args, config=(tyro.conf.OmitArgPrefixes,))
    result = bench_policy(args.bench)
    print(format_bench(result))
    if args.json:
        print(json.dumps(result))
    sys.exit(0)
