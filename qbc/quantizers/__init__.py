"""The quantizer registry: one place for every quantizer in qbc.

>>> from qbc.quantizers import make_quantizer
>>> q = make_quantizer("uniform", n_bins=8).fit(x)
>>> tokens = q.encode(x); x_hat = q.decode(tokens)

Names: ``uniform``, ``smooth`` (stochastic rounding), ``sign``, ``kmeans``, ``lloyd_max``, and the
joint vector quantizer ``vq``. Register your own with ``@register_quantizer("name")``.
"""

from qbc.quantizers.base import (
    Quantizer,
    available_quantizers,
    get_quantizer_class,
    make_quantizer,
    register_quantizer,
    serialize_quantizer,
)
from qbc.quantizers.binning import SignQuantizer, SmoothQuantizer, UniformQuantizer
from qbc.quantizers.learned import KMeansQuantizer, LloydMaxQuantizer, VectorQuantizer

__all__ = [
    "Quantizer",
    "available_quantizers",
    "get_quantizer_class",
    "make_quantizer",
    "register_quantizer",
    "serialize_quantizer",
    "UniformQuantizer",
    "SmoothQuantizer",
    "SignQuantizer",
    "KMeansQuantizer",
    "LloydMaxQuantizer",
    "VectorQuantizer",
]
