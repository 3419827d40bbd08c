"""Straight-through estimators: forward/backward quantizer pairs, quantized layers, and the
two-layer binary-network STE experiment.

>>> from qbc.ste import QuantLinear, get_ste, anneal_step, export_deployed
"""

from qbc.ste.functions import (
    STE_PAIRS,
    Anneal,
    ForwardBackward,
    STEPair,
    STEQuantizer,
    available_ste,
    get_ste,
    prox_w,
    serialize_ste,
    signswish,
    signswish_grad,
)
from qbc.ste.layers import (
    QuantConv2d,
    QuantLinear,
    anneal_step,
    export_deployed,
    quantize_linear_layers,
    save_deployed,
    ste_quantizers,
)

__all__ = [
    "Anneal",
    "ForwardBackward",
    "STE_PAIRS",
    "STEPair",
    "STEQuantizer",
    "available_ste",
    "get_ste",
    "prox_w",
    "serialize_ste",
    "signswish",
    "signswish_grad",
    "QuantConv2d",
    "QuantLinear",
    "anneal_step",
    "export_deployed",
    "quantize_linear_layers",
    "save_deployed",
    "ste_quantizers",
]
