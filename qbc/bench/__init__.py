"""Speed measurements of qbc against its natural baselines (sections, timing, FLOP counts);
the ``qbc bench`` command runs them and prints one table."""

from qbc.bench.flops import forward_flops, train_flops_per_sample

__all__ = ["forward_flops", "train_flops_per_sample"]
