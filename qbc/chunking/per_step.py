"""``per-step``: the baseline — any scalar (or ``vq``) registry quantizer applied to each step of a
chunk through :class:`~qbc.tokenizer.ActionTokenizer`; k x D tokens per chunk (k for ``vq``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.chunking.base import ChunkTokenizer, check_int, register_chunk_tokenizer
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.quantizers import available_quantizers
from qbc.tokenizer import ActionTokenizer


@register_chunk_tokenizer("per-step")
class PerStepTokenizer(ChunkTokenizer):
    """Per-step binning of a chunk: tokens (N, k * n_tokens), step-major (the D tokens of step 0
    first). Worst-case error per dimension is the quantizer's ``error_bound`` inside its range.

    Args:
        quantizer: a registry name (``uniform``, ``kmeans``, ...).
        n_bins: tokens per position (the vocabulary size).
        per_dim: one quantizer per action dimension (True) or one shared (False).
        quantizer_params: further parameters of the quantizer.
    """

    _fitted_attrs = ("tokenizer_",)

    def __init__(self, quantizer: str = "uniform", n_bins: int = 256, per_dim: bool = True,
                 quantizer_params: dict[str, Any] | None = None):
        self.quantizer = quantizer
        self.n_bins = n_bins
        self.per_dim = per_dim
        self.quantizer_params = quantizer_params
        self._validate_params()

    def _validate_params(self) -> None:
        if not isinstance(self.quantizer, str):
            raise InvalidValueError(f"per-step: quantizer must be a registry name, got "
                                    f"{self.quantizer!r}")
        if self.quantizer not in available_quantizers():
            raise UnknownNameError("quantizer", self.quantizer, available_quantizers())
        check_int("per-step", "n_bins", self.n_bins, 2)
        if not isinstance(self.per_dim, (bool, np.bool_)):
            raise InvalidValueError(f"per-step: per_dim must be true or false, got "
                                    f"{self.per_dim!r}")
        if not (self.quantizer_params is None or isinstance(self.quantizer_params, dict)):
            raise InvalidValueError(f"per-step: quantizer_params must be a dict, got "
                                    f"{self.quantizer_params!r}")

    def _fit(self, chunks: np.ndarray) -> None:
        self.tokenizer_ = ActionTokenizer(self.quantizer, self.n_bins, self.per_dim,
                                          self.quantizer_params).fit(_steps(chunks))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_.vocab_size

    @property
    def n_tokens(self) -> int:
        return self.chunk_len_ * self.tokenizer_.n_tokens

    @property
    def ordered_bins(self) -> bool:
        """True when every token position holds ordered scalar bins (a per-dimension quantizer,
        not a joint one): the positions :meth:`codebooks` describes."""
        return not self.tokenizer_.is_joint

    def codebooks(self) -> np.ndarray:
        """Codewords (k * D, vocab_size) of each token position (step-major, as the tokens),
        in action units; per-dimension quantizers only (see :attr:`ordered_bins`)."""
        if not self.ordered_bins:
            raise InvalidValueError(f"per-step {self.quantizer} is joint: its tokens have no "
                                    "ordered codewords per position")
        return np.tile(self.tokenizer_.codebooks(), (self.chunk_len_, 1))

    def _encode(self, chunks: np.ndarray) -> np.ndarray:
        return self.tokenizer_.encode(_steps(chunks)).reshape(len(chunks), -1)

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        steps = tokens.reshape(len(tokens) * self.chunk_len_, -1)
        return self.tokenizer_.decode(steps).reshape(len(tokens), self.chunk_len_, -1)

    def _fitted_state(self) -> dict[str, Any]:
        return {"tokenizer_": self.tokenizer_.state_dict()}

    def _load_fitted(self, fitted: dict[str, Any]) -> None:
        self.tokenizer_ = ActionTokenizer.from_state_dict(fitted["tokenizer_"])


def _steps(chunks: np.ndarray) -> np.ndarray:
    """(N, k, D) -> (N * k, D)."""
    return chunks.reshape(-1, chunks.shape[2])
