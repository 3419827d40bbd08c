"""ActionTokenizer: continuous actions (N, D) <-> discrete tokens, built on the quantizer registry.

Three layouts:

- per-dimension (default): one quantizer per action dimension, tokens (N, D);
- shared (``per_dim=False``): one scalar quantizer fitted on all dimensions together, tokens (N, D);
- joint (``quantizer="vq"``): one token per action vector (k-means over R^D), tokens (N, 1).

>>> tok = ActionTokenizer(quantizer="uniform", n_bins=64).fit(actions)   # or
>>> tok = ActionTokenizer.fit(actions, quantizer="uniform", n_bins=64)
>>> tokens = tok.encode(actions); recon = tok.decode(tokens)
>>> tok.save("tokenizer.json"); ActionTokenizer.load("tokenizer.json")
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import (
    ClippedActionsWarning,
    CorruptFileError,
    InvalidValueError,
    NotFittedError,
    OutputExistsError,
)
from qbc.infra.files import atomic_write_json, check_not_folder, read_json
from qbc.infra.validate import check_memory
from qbc.quantizers import Quantizer, get_quantizer_class, make_quantizer
from qbc.quantizers.base import (
    action_matrix,
    check_probabilities,
    check_tokens,
    tokenizer_params,
)

FORMAT = "qbc.tokenizer"
FORMAT_VERSION = 1


class _instance_or_class_method:
    """Lets ``fit`` be called on the class (a default instance is made) or on an instance."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        return functools.partial(self.func, obj if obj is not None else cls())


def _check_fit_memory(n_bins: Any, actions: np.ndarray) -> None:
    """Refuse a number of bins whose tables (a few float64 copies of D x bins: codebooks,
    counts, the decode table) would not fit in memory, before they are made."""
    if isinstance(n_bins, (int, np.integer)) and not isinstance(n_bins, bool):
        n_dims = int(actions.shape[1])
        check_memory(32.0 * max(int(n_bins), 1) * n_dims + 16.0 * actions.size,
                     f"a tokenizer of {int(n_bins):,} bins for {n_dims} action dimension(s)",
                     "use fewer --bins")


class ActionTokenizer:
    """Turns actions (N, D) into integer tokens (N, n_tokens) with values in [0, vocab_size).

    Args:
        quantizer: a registry name (see ``qbc.quantizers.available_quantizers()``).
        n_bins: number of tokens per position (the vocabulary size).
        per_dim: one quantizer per dimension (True) or one shared by all dimensions (False).
            Ignored for joint quantizers (``vq``).
        quantizer_params: further parameters of the quantizer (e.g. ``{"quantile": 0.01}``).

    The settings are checked when the tokenizer is made and when ``fit`` changes them
    (InvalidValueError, UnknownNameError): ``per_dim="no"`` would be taken as true.
    """

    def __init__(self, quantizer: str = "uniform", n_bins: int = 64, per_dim: bool = True,
                 quantizer_params: dict[str, Any] | None = None):
        tokenizer_params(quantizer, n_bins, per_dim, quantizer_params)
        self.quantizer = quantizer
        self.n_bins = n_bins
        self.per_dim = per_dim
        self.quantizer_params = dict(quantizer_params or {})

    # -- fitting -----------------------------------------------------------------------------
    @_instance_or_class_method
    def fit(self, actions: np.ndarray, quantizer: str | None = None, n_bins: int | None = None,
            per_dim: bool | None = None, **quantizer_params: Any) -> ActionTokenizer:
        """Fit to actions (N, D) and return self. Keyword arguments override the constructor's
        (refused ones change nothing)."""
        settings = (self.quantizer if quantizer is None else quantizer,
                    self.n_bins if n_bins is None else n_bins,
                    self.per_dim if per_dim is None else per_dim,
                    {**self.quantizer_params, **quantizer_params})
        params = tokenizer_params(*settings)
        actions = self._check_actions(actions, fitting=True)
        self.quantizer, self.n_bins, self.per_dim, self.quantizer_params = settings
        klass = get_quantizer_class(self.quantizer)
        if "n_bins" in params:
            _check_fit_memory(self.n_bins, actions)
        if self.per_dim and not klass.joint:
            self.quantizers_ = [make_quantizer(self.quantizer, **params).fit(actions[:, d])
                                for d in range(actions.shape[1])]
        else:  # one quantizer: joint (over R^D) or shared by all dimensions
            self.quantizers_ = [make_quantizer(self.quantizer, **params).fit(actions)]
        self.action_dim_ = int(actions.shape[1])
        if self.quantizers_[0].n_levels != self.n_bins:
            self.n_bins = self.quantizers_[0].n_levels  # e.g. lloyd_max with bits=b
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "quantizers_"):
            raise NotFittedError("ActionTokenizer is not fitted; call fit(actions) first")

    def _check_actions(self, actions: np.ndarray, fitting: bool = False) -> np.ndarray:
        actions = action_matrix(actions)
        if not fitting and actions.shape[1] != self.action_dim_:
            raise InvalidValueError(
                f"actions have {actions.shape[1]} dimensions but the tokenizer was fitted on "
                f"{self.action_dim_}; use a tokenizer fitted on actions of this env"
            )
        return actions

    # -- shape facts -------------------------------------------------------------------------
    @property
    def is_joint(self) -> bool:
        self._check_fitted()
        return self.quantizers_[0].joint

    @property
    def n_tokens(self) -> int:
        """Tokens per action: D, or 1 for a joint quantizer."""
        return 1 if self.is_joint else self.action_dim_

    @property
    def vocab_size(self) -> int:
        """Number of distinct token values per position."""
        self._check_fitted()
        return int(self.quantizers_[0].n_levels)

    @property
    def stochastic(self) -> bool:
        """True when ``encode(..., rng=...)`` samples tokens (smooth binning)."""
        self._check_fitted()
        return self.quantizers_[0].stochastic

    @property
    def bits_per_action(self) -> float:
        return self.n_tokens * math.log2(self.vocab_size)

    def _quantizer_for(self, d: int) -> Quantizer:
        return self.quantizers_[d] if len(self.quantizers_) > 1 else self.quantizers_[0]

    def codebooks(self) -> np.ndarray:
        """Codewords: (D, vocab_size) for scalar layouts, (vocab_size, D) for a joint one."""
        if self.is_joint:
            return self.quantizers_[0].codebook.astype(np.float32)
        return np.stack([self._quantizer_for(d).codebook for d in range(self.action_dim_)]
                        ).astype(np.float32)

    # -- coding ------------------------------------------------------------------------------
    def encode(self, actions: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions (N, D) -> int64 tokens (N, n_tokens). Out-of-range values go to the edge cells
        (count them with :meth:`clipped_mask`). ``rng`` samples stochastic (smooth) tokens."""
        self._check_fitted()
        actions = self._check_actions(actions)
        if self.is_joint:
            return self.quantizers_[0].encode(actions)[:, None]
        if len(self.quantizers_) == 1:
            return self.quantizers_[0].encode(actions, rng=rng)
        return np.stack([q.encode(actions[:, d], rng=rng) for d, q in enumerate(self.quantizers_)],
                        axis=1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens (N, n_tokens) -> float32 actions (N, D)."""
        self._check_fitted()
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.n_tokens:
            raise InvalidValueError(
                f"tokens must have shape (N, {self.n_tokens}), got {tokens.shape}"
            )
        if self.is_joint:
            return self.quantizers_[0].decode(tokens[:, 0])
        if len(self.quantizers_) == 1:
            return self.quantizers_[0].decode(tokens)
        # Per-dimension codebooks: one lookup in the (D, vocab_size) table instead of D calls
        # (the same codewords as each quantizer's decode; a tenth of batch-1 acting time).
        tokens = check_tokens(tokens, self.vocab_size)
        return self._codebook_table()[np.arange(self.action_dim_), tokens]

    def _codebook_table(self) -> np.ndarray:
        """codebooks() as float32, cached for the current list of fitted quantizers."""
        cached = getattr(self, "_table_cache", None)
        if cached is None or cached[0] is not self.quantizers_:
            cached = self._table_cache = (self.quantizers_, self.codebooks())
        return cached[1]

    def soft_targets(self, actions: np.ndarray) -> np.ndarray:
        """Two-hot targets (N, D, vocab_size) of smooth binning (stochastic quantizers only)."""
        self._check_fitted()
        if not self.stochastic:
            raise InvalidValueError(
                f"soft targets need a stochastic quantizer such as 'smooth', not {self.quantizer!r}"
            )
        actions = self._check_actions(actions)
        return np.stack([self._quantizer_for(d).soft_targets(actions[:, d])
                         for d in range(self.action_dim_)], axis=1)

    def expected_action(self, probs: np.ndarray) -> np.ndarray:
        """Mean decoding: token probabilities (N, n_tokens, vocab_size) -> E[action] (N, D).
        Anything but probabilities of that shape is an InvalidValueError."""
        self._check_fitted()
        probs = check_probabilities(probs, (self.n_tokens, self.vocab_size), "token probabilities")
        if self.is_joint:
            return (probs[:, 0, :] @ self.codebooks()).astype(np.float32)
        return np.einsum("ndk,dk->nd", probs, self.codebooks()).astype(np.float32)

    def clipped_mask(self, actions: np.ndarray) -> np.ndarray:
        """Boolean (N, D): values outside the quantizer's range (which encode clips)."""
        self._check_fitted()
        actions = self._check_actions(actions)
        mask = np.zeros(actions.shape, dtype=bool)
        for d in range(self.action_dim_):
            if self.is_joint:
                break
            rng_ = self._quantizer_for(d).range
            if rng_ is not None:
                mask[:, d] = (actions[:, d] < rng_[0]) | (actions[:, d] > rng_[1])
        return mask

    def warn_clipped(self, actions: np.ndarray, what: str = "action") -> int:
        """Count the values of ``actions`` (N, D) outside the tokenizer's range (``encode`` maps
        them to the edge cells) and, when there are any, warn with a
        :class:`~qbc.errors.ClippedActionsWarning` giving the count. Returns the count."""
        mask = self.clipped_mask(actions)
        n = int(mask.sum())
        if n:
            warnings.warn(clipped_message(n, mask.size, what), ClippedActionsWarning, stacklevel=2)
        return n

    # -- inspection --------------------------------------------------------------------------
    def report(self, actions: np.ndarray) -> dict[str, Any]:
        """Reconstruction quality on ``actions`` (N, D), JSON-safe.

        Per dimension: ``max_abs_error``, ``mean_abs_error``, ``rmse``, ``error_bound`` (worst
        case inside the range; None without one: learned quantizers, ``sign``), ``clipped_fraction``
        and ``usage_entropy_bits`` (entropy of the empirical token distribution). Overall:
        ``bits_per_action`` and ``vocab_size``.
        """
        actions = self._check_actions(actions)
        if len(actions) == 0:
            raise InvalidValueError("no actions to report on (shape (0, D)); give at least one")
        tokens = self.encode(actions)
        err = np.abs(self.decode(tokens).astype(np.float64) - actions)
        clipped = self.clipped_mask(actions)
        per_dim = []
        for d in range(self.action_dim_):
            tok = tokens[:, 0] if self.is_joint else tokens[:, d]
            bound = None if self.is_joint else self._quantizer_for(d).error_bound
            per_dim.append({
                "max_abs_error": float(err[:, d].max()),
                "mean_abs_error": float(err[:, d].mean()),
                "rmse": _rms(err[:, d]),
                "error_bound": None if bound is None else float(bound),
                "clipped_fraction": float(clipped[:, d].mean()),
                "usage_entropy_bits": _entropy_bits(tok, self.vocab_size),
            })
        return {
            "quantizer": self.quantizer,
            "layout": "joint" if self.is_joint else ("per_dim" if self.per_dim else "shared"),
            "vocab_size": self.vocab_size,
            "n_tokens": self.n_tokens,
            "bits_per_action": self.bits_per_action,
            "n_actions": int(len(actions)),
            "per_dim": per_dim,
        }

    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "quantizer": self.quantizer,
            "n_bins": self.n_bins,
            "per_dim": self.per_dim,
            "quantizer_params": self.quantizer_params,
            "action_dim": self.action_dim_,
            "quantizers": [q.state_dict() for q in self.quantizers_],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ActionTokenizer:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CorruptFileError("not a qbc tokenizer (missing format 'qbc.tokenizer')")
        if type(state.get("version")) is not int or state["version"] != FORMAT_VERSION:  # not True
            raise CorruptFileError(
                f"tokenizer format version {state.get('version')!r} is not supported "
                f"(this qbc reads version {FORMAT_VERSION})"
            )
        try:
            tok = cls(state["quantizer"], state["n_bins"], state["per_dim"],
                      state["quantizer_params"])
            tok.quantizers_ = [Quantizer.from_state_dict(q) for q in state["quantizers"]]
            tok.action_dim_ = int(state["action_dim"])  # inf: OverflowError
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CorruptFileError(f"tokenizer state is incomplete or damaged: {exc}") from None
        if not all(q.is_fitted for q in tok.quantizers_):
            raise CorruptFileError("tokenizer state holds an unfitted quantizer")
        try:
            tok._self_check()
        except Exception as exc:  # any failure here means the stored numbers are damaged
            raise CorruptFileError(
                f"tokenizer state is damaged ({type(exc).__name__}: {exc}); re-create it"
            ) from None
        return tok

    def _self_check(self) -> None:
        """Raise unless the (loaded) state is coherent: the quantizers fit makes, of one kind and
        vocabulary, whose finite codewords encode to tokens in range and decode to float32."""
        qs = self.quantizers_
        if not (isinstance(self.action_dim_, int) and self.action_dim_ >= 1):
            raise ValueError(f"action_dim {self.action_dim_!r} is not a positive integer")
        one_each = self.per_dim is True and not get_quantizer_class(self.quantizer).joint
        if not isinstance(self.per_dim, bool) or len(qs) != (self.action_dim_ if one_each else 1):
            raise ValueError(f"{len(qs)} quantizers for {self.action_dim_} action dimensions "
                             f"with per_dim {self.per_dim!r} (fit makes one per dimension)")
        if any(q.name != self.quantizer or q.n_levels != qs[0].n_levels for q in qs):
            raise ValueError("the quantizers differ in kind or vocabulary")
        if self.n_bins != qs[0].n_levels:
            raise ValueError(f"n_bins {self.n_bins!r} is not the vocabulary {qs[0].n_levels}")
        for q in qs:
            code = np.asarray(q.codebook, dtype=np.float64)
            shape = (q.n_levels, self.action_dim_) if q.joint else (q.n_levels,)
            if code.shape != shape or not np.isfinite(code).all():
                raise ValueError(f"codebook of shape {code.shape} (expected {shape}) or "
                                 "non-finite")
            tokens = np.asarray(q.encode(code))
            if tokens.shape != code.shape[:1] or tokens.min() < 0 or tokens.max() >= q.n_levels:
                raise ValueError("codewords do not encode to tokens in range")
            if not np.isfinite(q.decode(tokens)).all():
                raise ValueError("codewords decode to non-finite values")

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the tokenizer as JSON (atomically). Floats round-trip exactly. A folder, or an
        existing file without ``overwrite``, is an OutputExistsError."""
        path = check_not_folder(path)
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path} exists; pass overwrite=True (--overwrite) to replace it"
            )
        return atomic_write_json(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ActionTokenizer:
        """The tokenizer saved at ``path``; a problem with the file is a CorruptFileError
        naming it."""
        try:
            return cls.from_state_dict(read_json(path, what="tokenizer file"))
        except (CorruptFileError, InvalidValueError) as exc:
            where = "" if str(path) in str(exc) else f"tokenizer file {str(path)!r}: "
            raise CorruptFileError(f"{where}{exc}") from None

    def __repr__(self) -> str:
        fitted = f", action_dim={self.action_dim_}" if hasattr(self, "quantizers_") else ""
        return (f"ActionTokenizer(quantizer={self.quantizer!r}, n_bins={self.n_bins}, "
                f"per_dim={self.per_dim}{fitted})")


def clipped_message(n_clipped: int, n_values: int, what: str = "action") -> str:
    """'N of M action values (p%) ... clipped' — the one wording of every clipping warning."""
    return (f"{n_clipped} of {n_values} {what} values ({n_clipped / max(1, n_values):.2%}) lie "
            "outside the tokenizer's range and were clipped to its edge cells; fit the tokenizer "
            "on actions that cover them (or a smaller --quantile) if that is not intended")


def _rms(x: np.ndarray) -> float:
    """Root mean square, scaled by the largest value first so that huge errors (up to the
    float64 range) do not overflow when squared."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return top * float(np.sqrt(np.mean((x / top) ** 2))) if top > 0 else 0.0


def _entropy_bits(tokens: np.ndarray, vocab_size: int) -> float:
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())
