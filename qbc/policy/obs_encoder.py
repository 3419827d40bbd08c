"""Quantized random projections of the observation as the policy's input (``--obs-encoder``).

``qrp:k=16,bits=2`` puts a fixed encoder in front of any policy kind: the (standardised)
observation z (d numbers) is projected by a seeded Gaussian matrix R (d, k) and each of the k
projections is quantized to ``bits`` bits by a quantizer designed for N(0, 1) (``lloyd_max`` by
default, or ``uniform`` with its MSE-optimal step: :func:`qbc.compressive.projection_quantizer`).
The policy sees the k codewords instead of z. Nothing in the encoder is trained; its matrix,
thresholds and codewords are buffers saved with the weights.

One change from the compressive-learning setting (:mod:`qbc.compressive`): rows are not scaled
to unit norm, since for control the size of the state matters as much as its direction (for
d = 1, a unit-norm row keeps only the sign). They are scaled by 1/sqrt(d) instead; standardised
observations have E|z|^2 = d, so each projection has variance 1 averaged over the data. Given
z it is N(0, |z|^2 / d), so over the data it is a scale mixture of normals: N(0, 1), the
distribution the quantizers are designed for, only when every observation has |z|^2 = d.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from qbc.compressive.projection import GaussianProjection, projection_quantizer, quantizer_cells
from qbc.errors import InvalidValueError

ENCODER_TYPES = ("qrp",)
_QRP_DEFAULTS = {"k": 16, "bits": 2, "quantizer": "lloyd_max", "seed": 0}


def parse_obs_encoder(spec: str) -> dict[str, Any]:
    """``"qrp:k=16,bits=2[,quantizer=lloyd_max|uniform][,seed=0]"`` -> a dict with every field
    (``"qrp"`` alone: the defaults). A setting given twice, or an empty one (``"qrp:"``,
    ``"qrp:k=8,,bits=2"``), is an InvalidValueError."""
    kind, sep, rest = str(spec).partition(":")
    if kind not in ENCODER_TYPES:
        raise InvalidValueError(f"unknown observation encoder {kind!r} in {spec!r}; "
                                f"known: {', '.join(ENCODER_TYPES)} (e.g. qrp:k=16,bits=2)")
    out: dict[str, Any] = {"type": kind, **_QRP_DEFAULTS}
    items = [s.strip() for s in rest.split(",")] if sep else []
    if "" in items:
        raise InvalidValueError(f"observation encoder {spec!r} has an empty setting; give "
                                f"{kind}:k=16,bits=2 (settings after ':', separated by one "
                                f"comma), or {kind} alone for the defaults")
    seen: set[str] = set()
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in _QRP_DEFAULTS:
            raise InvalidValueError(f"observation encoder setting {item!r} in {spec!r} is not "
                                    f"one of {', '.join(k + '=...' for k in _QRP_DEFAULTS)}")
        if key in seen:
            raise InvalidValueError(f"observation encoder setting {key} is given twice in "
                                    f"{spec!r}; give each setting once")
        seen.add(key)
        if key == "quantizer":
            out[key] = value
            continue
        try:
            out[key] = int(value)
        except ValueError:
            raise InvalidValueError(f"observation encoder setting {key} must be an integer, got "
                                    f"{value!r}") from None
    if out["k"] < 1:
        raise InvalidValueError(f"observation encoder k must be >= 1, got {out['k']}")
    return out


@dataclasses.dataclass(frozen=True)
class ObsEncoderConfig:
    """The settings of an observation encoder (``qbc train --obs-encoder k=16 bits=2``)."""

    type: str = "qrp"
    """encoder kind; qrp = quantized random projections (the only one)."""
    k: int = 16
    """number of Gaussian random projections (the policy's input size)."""
    bits: int = 2
    """bits of each projection's quantizer."""
    quantizer: str = "lloyd_max"
    """quantizer designed for N(0, 1): lloyd_max, or uniform (MSE-optimal step)."""
    seed: int = 0
    """seed of the projection matrix."""

    def spec(self) -> str:
        """The settings as a spec string, ``"qrp:k=16,bits=2,quantizer=lloyd_max,seed=0"``."""
        return (f"{self.type}:k={self.k},bits={self.bits},quantizer={self.quantizer},"
                f"seed={self.seed}")


def obs_encoder_config(value: ObsEncoderConfig | dict[str, Any] | str | None
                       ) -> ObsEncoderConfig | None:
    """``value`` as checked :class:`ObsEncoderConfig` settings: a spec string
    (``"qrp:k=16,bits=2"``), a dict of its fields (as stored in a config JSON) or the settings
    themselves; None (or ``"none"``) is no encoder."""
    if value is None or value == "none":
        return None
    if isinstance(value, str):
        return ObsEncoderConfig(**parse_obs_encoder(value))
    fields = dataclasses.asdict(value) if isinstance(value, ObsEncoderConfig) else dict(value)
    fields.pop("obs_dim", None)
    spec = str(fields.pop("type", "qrp")) + "".join(
        (":" if i == 0 else ",") + f"{k}={v}" for i, (k, v) in enumerate(fields.items()))
    return ObsEncoderConfig(**parse_obs_encoder(spec))


class QuantizedProjectionEncoder(nn.Module):
    """obs (..., obs_dim) standardised -> codewords (..., k) of the quantized projections."""

    def __init__(self, obs_dim: int, k: int = 16, bits: int = 2, quantizer: str = "lloyd_max",
                 seed: int = 0, type: str = "qrp"):
        super().__init__()
        self.settings = {"type": type, "k": int(k), "bits": int(bits), "quantizer": quantizer,
                         "seed": int(seed), "obs_dim": int(obs_dim)}
        matrix = GaussianProjection(k=int(k), seed=int(seed)).fit(int(obs_dim)).matrix_
        codebook, thresholds = quantizer_cells(projection_quantizer(quantizer, int(bits)))
        self.register_buffer("matrix", torch.from_numpy(matrix / np.sqrt(obs_dim)).float())
        self.register_buffer("thresholds", torch.from_numpy(thresholds).float())
        self.register_buffer("codebook", torch.from_numpy(codebook).float())

    @property
    def k(self) -> int:
        return self.settings["k"]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = obs @ self.matrix  # (..., k), about N(0, 1) on standardised observations
        return self.codebook[torch.bucketize(z.contiguous(), self.thresholds)]


def _through_encoder(name: str) -> property:
    """The inner policy's method ``name``, called on encoded observations; absent (so
    ``hasattr`` is false) when the inner policy has no such method."""
    def get(self: EncodedPolicy) -> Any:
        method = getattr(self.inner, name)  # AttributeError when the inner kind lacks it

        def call(obs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            return method(self.encoder(obs), *args, **kwargs)
        return call
    return property(get, doc=f"inner.{name} on encoded observations")


class EncodedPolicy(nn.Module):
    """A policy module (any kind) behind a fixed observation encoder.

    Looks like the inner policy to everything else (``kind``, ``cfg`` with the raw observation
    size, ``loss``, ``decode``, ``predict``, ``distribution``, ``logits``); its stored config is
    the inner one plus an ``obs_encoder`` entry (:func:`qbc.policy.registry.module_from_config`).
    """

    def __init__(self, encoder: QuantizedProjectionEncoder, inner: nn.Module):
        super().__init__()
        self.encoder, self.inner = encoder, inner
        self.cfg = dataclasses.replace(inner.cfg, obs_dim=encoder.settings["obs_dim"])

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def is_token_policy(self) -> bool:
        return self.inner.is_token_policy

    def config_dict(self) -> dict[str, Any]:
        return {**self.inner.config_dict(), "obs_encoder": dict(self.encoder.settings)}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.loss({**batch, "obs": self.encoder(batch["obs"])})

    decode = _through_encoder("decode")
    predict = _through_encoder("predict")
    distribution = _through_encoder("distribution")
    logits = _through_encoder("logits")


def wrap_with_encoder(inner_builder, spec: ObsEncoderConfig | dict[str, Any] | str | None,
                      obs_dim: int) -> nn.Module:
    """``inner_builder(input_dim)`` behind the encoder ``spec`` (or alone when spec is None)."""
    if spec is None:
        return inner_builder(obs_dim)
    if isinstance(spec, str):
        settings = parse_obs_encoder(spec)
    elif isinstance(spec, ObsEncoderConfig):
        settings = dataclasses.asdict(spec)
    else:
        settings = dict(spec)
    settings.pop("obs_dim", None)
    encoder = QuantizedProjectionEncoder(obs_dim, **settings)
    return EncodedPolicy(encoder, inner_builder(encoder.k))
