"""Experiments: compositions of the library that produce the published results.

``quickstart`` (the whole pipeline on embedded defaults, ``qbc quickstart``), ``counterexample``
(Theorem 6, ``scripts/reproduce_counterexample.py``), ``scaling`` (the quantized expert against
H and the bin width, ``scripts/quantized_expert_scaling.py``) and ``reproduce`` (every result
under docs/results re-run and checked from one place)."""
