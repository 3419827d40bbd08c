"""Quantized compressive learning (Li & Li, NeurIPS 2019): Gaussian random projections of
unit-norm rows, b-bit quantization of the projections with quantizers designed for N(0,1), the
raw and debiased inner-product estimators with their exact moments and delta-method variance,
and 1-NN / linear / least-squares learners on the quantized projections.

>>> from qbc.compressive import GaussianProjection, InnerProductEstimator, projection_quantizer
>>> q = projection_quantizer("lloyd_max", bits=2)
>>> est = InnerProductEstimator(q)
>>> est.variance(0.9, k=64)
"""

from qbc.compressive.datasets import DATASETS, make_split
from qbc.compressive.estimators import InnerProductEstimator, one_bit_variance
from qbc.compressive.learners import MODELS, fit_score
from qbc.compressive.moments import bivariate_step_moment
from qbc.compressive.projection import (
    GaussianProjection,
    normalize_rows,
    projection_quantizer,
    quantizer_cells,
)
from qbc.compressive.sweep import compare_quantizers, run_grid, summarize

__all__ = [
    "DATASETS",
    "MODELS",
    "GaussianProjection",
    "InnerProductEstimator",
    "bivariate_step_moment",
    "compare_quantizers",
    "fit_score",
    "make_split",
    "normalize_rows",
    "one_bit_variance",
    "projection_quantizer",
    "quantizer_cells",
    "run_grid",
    "summarize",
]
