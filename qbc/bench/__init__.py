"""Speed measurements of qbc against its natural baselines (``qbc bench``)."""

from qbc.bench.command import BENCH_COMMAND, BenchConfig, format_table, run_bench
from qbc.bench.flops import forward_flops, train_flops_per_sample

__all__ = ["BENCH_COMMAND", "BenchConfig", "format_table", "forward_flops", "run_bench",
           "train_flops_per_sample"]
