"""Experiments: compositions of the library that produce the published results
(``reproduce``: every result under docs/results re-run and checked from one place)."""
