"""The quantizer registry: one place for every quantizer in qbc.

>>> from qbc.quantizers import make_quantizer
>>> q = make_quantizer("uniform", n_bins=8).fit(x)
>>> tokens = q.encode(x); x_hat = q.decode(tokens)

Names: ``uniform``, ``smooth`` (stochastic rounding), ``sign``, ``kmeans``, ``lloyd_max``, the
joint vector quantizer ``vq`` and ``theorem6`` (the adversarial codebook of Cao & Xie's Theorem 6).
Every built-in name is registered on ``import qbc.quantizers``; README.md's quantizer table lists
the same names (tests/project/test_docs.py checks it). Register your own with
``@register_quantizer("name")``.
"""

from qbc.quantizers.base import (
    QUANTIZERS,
    Quantizer,
    available_quantizers,
    get_quantizer_class,
    make_quantizer,
    register_quantizer,
    serialize_quantizer,
)
from qbc.quantizers.binning import (
    MARGIN_RANGE,
    QUANTILE_QUANTIZERS,
    QUANTILE_RANGE,
    SignQuantizer,
    SmoothQuantizer,
    UniformQuantizer,
    check_bins_flag,
    quantile_params,
    range_settings,
)
from qbc.quantizers.construction import Theorem6Quantizer
from qbc.quantizers.learned import KMeansQuantizer, LloydMaxQuantizer, VectorQuantizer

__all__ = [
    "QUANTIZERS",
    "MARGIN_RANGE",
    "QUANTILE_QUANTIZERS",
    "QUANTILE_RANGE",
    "Quantizer",
    "available_quantizers",
    "check_bins_flag",
    "get_quantizer_class",
    "make_quantizer",
    "quantile_params",
    "range_settings",
    "register_quantizer",
    "serialize_quantizer",
    "UniformQuantizer",
    "SmoothQuantizer",
    "SignQuantizer",
    "KMeansQuantizer",
    "LloydMaxQuantizer",
    "VectorQuantizer",
    "Theorem6Quantizer",
]
