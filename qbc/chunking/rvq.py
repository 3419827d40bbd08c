"""``rvq``: residual vector quantization of whole chunks (VQ-BeT, MiniVLA style).

Chunks (N, k, D) are normalised per dimension (1st/99th percentiles to [-1, 1]) and flattened
to (N, k * D). Level 1 is k-means with ``codes`` centroids (the registry's joint ``vq``
quantizer); level l is k-means on the residuals left by levels 1..l-1. Tokens per chunk: ``levels``
(one code per level, each in [0, codes)); decoding sums the chosen codewords, so every sequence of
``levels`` in-range tokens decodes. Learned codebooks: no worst-case bound (see ``report``).

A reconstruction of ours, not the references' method: VQ-BeT (and MiniVLA, which reuses it)
trains a residual VQ-VAE, an MLP encoder and decoder around the residual codebooks, by gradient,
and its policy adds a predicted continuous offset to the decoded chunk; here the codebooks are
fitted by k-means directly on the normalised, flattened chunks (no encoder, no offset), and the
default sizes (4 levels x 256 codes) are neither VQ-BeT's (2 x 16) nor MiniVLA's (7 x 128).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.chunking.base import (
    SEED_LIMIT,
    ChunkTokenizer,
    check_int,
    check_quantile,
    register_chunk_tokenizer,
)
from qbc.chunking.chunks import QuantileNormalizer
from qbc.quantizers import Quantizer, make_quantizer


@register_chunk_tokenizer("rvq")
class ResidualVQTokenizer(ChunkTokenizer):
    """Args:
        levels: number of residual levels L (tokens per chunk).
        codes: codewords per level K (the vocabulary size).
        quantile: normalisation quantile (0.01: 1st/99th percentiles).
        n_init: k-means restarts per level.
        seed: k-means random state (level l uses seed + l).
    """

    _fitted_attrs = ("low_", "high_", "levels_")

    def __init__(self, levels: int = 4, codes: int = 256, quantile: float = 0.01,
                 n_init: int = 1, seed: int = 0):
        self.levels = levels
        self.codes = codes
        self.quantile = quantile
        self.n_init = n_init
        self.seed = seed
        self._validate_params()

    def _validate_params(self) -> None:
        for what, value, low in (("levels", self.levels, 1), ("codes", self.codes, 2),
                                 ("n_init", self.n_init, 1)):
            check_int("rvq", what, value, low)
        check_quantile("rvq", self.quantile)
        # level l draws k-means with seed + l: every one must be a valid random state
        check_int("rvq", "seed", self.seed, 0, SEED_LIMIT - self.levels)

    def _normalizer(self) -> QuantileNormalizer:
        norm = QuantileNormalizer(self.quantile)
        norm.low_, norm.high_ = self.low_, self.high_
        return norm

    def _fit(self, chunks: np.ndarray) -> None:
        norm = QuantileNormalizer(self.quantile).fit(chunks)
        self.low_, self.high_ = norm.low_, norm.high_
        residual = norm.transform(chunks).reshape(len(chunks), -1)
        levels: list[Quantizer] = []
        for level in range(self.levels):
            q = make_quantizer("vq", n_bins=self.codes, n_init=self.n_init,
                               seed=self.seed + level, standardize=False).fit(residual)
            residual = residual - q.codebook[q.encode(residual)]
            levels.append(q)
        self.levels_ = levels

    @property
    def vocab_size(self) -> int:
        return int(self.codes)

    @property
    def n_tokens(self) -> int:
        return int(self.levels)

    def _encode(self, chunks: np.ndarray) -> np.ndarray:
        residual = self._normalizer().transform(chunks).reshape(len(chunks), -1)
        tokens = np.empty((len(chunks), self.levels), dtype=np.int64)
        for level, q in enumerate(self.levels_):
            tokens[:, level] = q.encode(residual)
            residual = residual - q.codebook[tokens[:, level]]
        return tokens

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        z = sum(q.codebook[tokens[:, level]] for level, q in enumerate(self.levels_))
        z = np.asarray(z).reshape(len(tokens), self.chunk_len_, self.action_dim_)
        return self._normalizer().inverse(z)

    def _fitted_state(self) -> dict[str, Any]:
        return {"low_": self.low_.tolist(), "high_": self.high_.tolist(),
                "levels_": [q.state_dict() for q in self.levels_]}

    def _load_fitted(self, fitted: dict[str, Any]) -> None:
        self.low_ = np.asarray(fitted["low_"], dtype=float)
        self.high_ = np.asarray(fitted["high_"], dtype=float)
        self.levels_ = [Quantizer.from_state_dict(s) for s in fitted["levels_"]]
        size = self.chunk_len_ * self.action_dim_
        if len(self.levels_) != self.levels or any(
                q.codebook.shape != (self.codes, size) for q in self.levels_):
            raise ValueError(f"expected {self.levels} codebooks of shape ({self.codes}, {size})")
