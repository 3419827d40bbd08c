"""The ordered output head of chunk training (:mod:`qbc.training.chunked`): which runs build
it, the settings that only it reads, and what a run records.

The chunk AR transformer's ordered head (:mod:`qbc.policy.ar_transformer`) and its two-hot
targets apply where every token position holds ordered scalar bins: ``per-step`` tokens of a
per-dimension quantizer (uniform, kmeans, smooth, ...). FAST, BEAST and residual-VQ tokens, and
a joint per-step quantizer (vq), get the plain head, and ``model.head`` is recorded as 'plain'.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from qbc.policy import ModelConfig
from qbc.policy.registry import LOCATION_SETTINGS, given_settings, refuse_location_settings
from qbc.quantizers import available_quantizers, get_quantizer_class
from qbc.training.chunk_data import tokenizer_params

if TYPE_CHECKING:  # annotations only: chunked.py imports this module
    from qbc.training.chunked import ChunkTrainConfig


def has_ordered_head(cfg: ChunkTrainConfig) -> bool:
    """True when ``cfg`` trains the ordered head (two-hot targets): chunk-ar-transformer with
    ``--model.head ordered`` on per-step tokens of a per-dimension quantizer."""
    if cfg.policy != "chunk-ar-transformer" or cfg.model.head != "ordered" \
            or cfg.chunk_tokenizer != "per-step":
        return False
    quantizer = tokenizer_params(cfg).get("quantizer")
    return isinstance(quantizer, str) and quantizer in available_quantizers() \
        and not get_quantizer_class(quantizer).joint


def check_head_settings(cfg: ChunkTrainConfig) -> None:
    """Refuse the ordered head's settings where the run builds none: ``--model.head plain``,
    or tokens without ordered bins per position (fast, beast, rvq, a joint per-step
    quantizer)."""
    if cfg.policy != "chunk-ar-transformer" or has_ordered_head(cfg):
        return
    why = ("--model.head plain has none" if cfg.model.head == "plain" else
           f"--chunk-tokenizer {cfg.chunk_tokenizer} tokens do not have one (no ordered bins "
           "per position; only per-step with a per-dimension quantizer)")
    refuse_location_settings(given_settings(cfg.model, LOCATION_SETTINGS), why)


def recorded_head(cfg: ChunkTrainConfig) -> ChunkTrainConfig:
    """``cfg`` as trained: ``model.head`` 'plain' where the tokens have no ordered bins."""
    if cfg.policy == "chunk-ar-transformer" and not has_ordered_head(cfg):
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head="plain"))
    return cfg


def with_used_head_settings(cfg: ChunkTrainConfig) -> ChunkTrainConfig:
    """``cfg`` with the ordered head's settings back at their defaults where the run builds no
    ordered head: what a caller that gives several chunk tokenizers one set of model settings
    (a sweep's cells) passes to each."""
    if cfg.policy != "chunk-ar-transformer" or has_ordered_head(cfg):
        return cfg
    return dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, **{name: getattr(ModelConfig, name) for name in LOCATION_SETTINGS}))
