"""Quantized compressive learning (Li & Li, NeurIPS 2019): Gaussian random projections of
unit-norm rows, b-bit quantization of the projections with quantizers designed for N(0,1), the
raw and debiased inner-product estimators with their exact moments and delta-method variance,
and 1-NN / linear / least-squares learners on the quantized projections.

>>> from qbc.compressive import GaussianProjection, InnerProductEstimator, projection_quantizer
>>> q = projection_quantizer("lloyd_max", bits=2)
>>> est = InnerProductEstimator(q)
>>> est.variance(0.9, k=64)
"""

from importlib import import_module

#: name -> the module of this package that defines it. Imported on first use (PEP 562): the
#: policies import qbc.compressive.projection for their observation encoder, and the rest of the
#: package (scipy.stats, scipy.interpolate, scikit-learn) would add about 0.5 s to every command.
_WHERE = {
    "DATASETS": "datasets", "make_split": "datasets",
    "InnerProductEstimator": "estimators", "one_bit_variance": "estimators",
    "MODELS": "learners", "fit_score": "learners",
    "bivariate_step_moment": "moments",
    "GaussianProjection": "projection", "normalize_rows": "projection",
    "projection_quantizer": "projection", "quantizer_cells": "projection",
    "compare_quantizers": "sweep", "run_grid": "sweep", "summarize": "sweep",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
