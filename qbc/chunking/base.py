"""The chunk-tokenizer base class and its registry (next to the scalar quantizer registry).

A chunk tokenizer turns chunks of actions (N, k, D) — k consecutive D-dimensional actions — into
token sequences and back. Fixed-length tokenizers (``beast``, ``rvq``, ``per-step``) give an
int64 array (N, n_tokens); variable-length ones (``fast``) give a list of N int64 arrays.

Conventions are those of :class:`~qbc.tokenizer.ActionTokenizer` and the quantizers:
constructor arguments stored as given and validated in ``fit``; ``fit`` returns ``self``; learned
attributes end in ``_``; save/load is JSON (no pickle) with a format tag and version; errors are
:mod:`qbc.errors` types with one-line messages.

Decoding a batch never raises on a malformed token sequence: it is repaired and counted
(:meth:`ChunkTokenizer.decode_with_failures`; ``decode`` adds to ``decode_failures``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from qbc.chunking.chunks import check_chunks
from qbc.errors import (
    CorruptFileError,
    InvalidValueError,
    NotFittedError,
    OutputExistsError,
    QbcError,
)
from qbc.infra.files import atomic_write_json, read_json
from qbc.quantizers.base import check_tokens
from qbc.registry import Registry, json_value
from qbc.tokenizer import _rms

FORMAT = "qbc.chunk_tokenizer"
FORMAT_VERSION = 1
#: The chunk tokenizers by name, each class registered in its own module
#: (:func:`register_chunk_tokenizer`).
CHUNK_TOKENIZERS: Registry[type[ChunkTokenizer]] = Registry("chunk tokenizer")

#: Token sequences: an int array (N, n_tokens) or a list of N 1-D int arrays (variable length).
Tokens = np.ndarray | list


class ChunkTokenizer:
    """Base class: subclasses set ``_fitted_attrs`` and implement ``_fit``, ``_encode``,
    ``_decode`` and :attr:`vocab_size` (and :attr:`n_tokens` for fixed-length codes)."""

    name: ClassVar[str] = ""
    #: True when chunks encode to sequences of different lengths (then decoding can fail).
    variable_length: ClassVar[bool] = False
    _fitted_attrs: ClassVar[tuple[str, ...]] = ()

    #: malformed sequences repaired by ``decode`` since fit/load (reset it freely).
    decode_failures: int = 0

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, chunks: np.ndarray) -> ChunkTokenizer:
        """Fit to chunks (N, k, D) in action units and return self."""
        self._validate_params()
        chunks = check_chunks(chunks)
        self.chunk_len_, self.action_dim_ = int(chunks.shape[1]), int(chunks.shape[2])
        self._fit(chunks)
        self.decode_failures = 0
        return self

    def _validate_params(self) -> None:
        """Raise InvalidValueError for parameters out of range."""

    def _fit(self, chunks: np.ndarray) -> None:
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return all(hasattr(self, a) for a in ("chunk_len_", "action_dim_", *self._fitted_attrs))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"chunk tokenizer {self.name!r} is not fitted; call fit(chunks) first")

    @property
    def vocab_size(self) -> int:
        """Number of distinct token values."""
        raise NotImplementedError

    @property
    def n_tokens(self) -> int | None:
        """Tokens per chunk for fixed-length codes; None for variable-length ones."""
        raise NotImplementedError

    # -- coding ----------------------------------------------------------------------------
    def encode(self, chunks: np.ndarray) -> Tokens:
        """Chunks (N, k, D) -> int64 tokens (N, n_tokens), or a list of N int64 arrays for
        variable-length codes."""
        self._check_fitted()
        return self._encode(check_chunks(chunks, shape=(self.chunk_len_, self.action_dim_)))

    def _encode(self, chunks: np.ndarray) -> Tokens:
        raise NotImplementedError

    def decode_with_failures(self, tokens: Tokens, prev_action: np.ndarray | None = None,
                             repair: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Tokens -> (chunks (N, k, D) float32, failed (N,) bool). Fixed-length codes take
        (N, n_tokens) arrays with every token in [0, vocab_size) and never fail; ``prev_action``
        (N, D) and ``repair`` matter only to variable-length codes (see ``fast``)."""
        self._check_fitted()
        tokens = self._check_fixed_tokens(tokens)
        return self._decode(tokens).astype(np.float32), np.zeros(len(tokens), dtype=bool)

    def decode(self, tokens: Tokens, prev_action: np.ndarray | None = None,
               repair: str | None = None) -> np.ndarray:
        """Tokens -> chunks (N, k, D) float32; repaired sequences are added to
        :attr:`decode_failures`."""
        chunks, failed = self.decode_with_failures(tokens, prev_action, repair)
        self.decode_failures += int(failed.sum())
        return chunks

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_fixed_tokens(self, tokens: Tokens) -> np.ndarray:
        try:
            tokens = np.asarray(tokens)
        except (ValueError, TypeError):  # ragged lists: sequences of different lengths
            raise InvalidValueError(
                f"{self.name}: tokens must be an (N, {self.n_tokens}) integer array; got "
                "sequences of different lengths (a fixed-length code decodes exactly "
                f"{self.n_tokens} tokens per chunk)") from None
        if tokens.ndim != 2 or tokens.shape[1] != self.n_tokens:
            raise InvalidValueError(
                f"{self.name}: tokens must have shape (N, {self.n_tokens}), got {tokens.shape}")
        return check_tokens(tokens, self.vocab_size, f"{self.name}: ")

    # -- inspection ------------------------------------------------------------------------
    def report(self, chunks: np.ndarray, tokens: Tokens | None = None,
               prev_action: np.ndarray | None = None) -> dict[str, Any]:
        """Reconstruction of ``chunks`` (N, k, D) from ``tokens`` (default: ``encode(chunks)``;
        pass a policy's tokens to score them), JSON-safe: mean tokens per chunk, compression
        ratio against per-step binning (k x D tokens), RMSE overall and per dimension, max abs
        error (action units), and for variable-length codes the decode-failure rate."""
        self._check_fitted()
        chunks = check_chunks(chunks, shape=(self.chunk_len_, self.action_dim_))
        tokens = self.encode(chunks) if tokens is None else tokens
        recon, failed = self.decode_with_failures(tokens, prev_action)
        if len(recon) != len(chunks):
            raise InvalidValueError(f"{len(recon)} token sequences for {len(chunks)} chunks")
        err = recon.astype(np.float64) - chunks
        lengths = np.array([len(t) for t in tokens], dtype=np.float64)
        per_step = self.chunk_len_ * self.action_dim_
        mean_len = float(lengths.mean())
        return {
            "tokenizer": self.name, "params": self.get_params(),
            "chunk_len": self.chunk_len_, "action_dim": self.action_dim_,
            "n_chunks": int(len(chunks)), "vocab_size": int(self.vocab_size),
            "variable_length": self.variable_length,
            "mean_tokens_per_chunk": mean_len, "max_tokens_per_chunk": int(lengths.max()),
            "per_step_tokens": per_step,
            "compression_ratio": per_step / mean_len if mean_len > 0 else float("inf"),
            "rmse": _rms(err), "rmse_per_dim": [_rms(err[..., d]) for d in range(err.shape[2])],
            "max_abs_error": float(np.abs(err).max()),
            "decode_failures": int(failed.sum()),
            "decode_failure_rate": float(failed.mean()) if self.variable_length else None,
        }

    # -- persistence -----------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as given (JSON-safe)."""
        sig = inspect.signature(type(self).__init__)
        return {p: json_value(getattr(self, p)) for p in sig.parameters if p != "self"}

    def _fitted_state(self) -> dict[str, Any]:
        """Learned attributes as JSON-safe values (override for nested objects)."""
        return {a: json_value(getattr(self, a)) for a in self._fitted_attrs}

    def _load_fitted(self, fitted: dict[str, Any]) -> None:
        """Inverse of :meth:`_fitted_state` (lists become float arrays)."""
        for a in self._fitted_attrs:
            value = fitted[a]
            setattr(self, a, np.asarray(value, dtype=float) if isinstance(value, list) else value)

    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"format": FORMAT, "version": FORMAT_VERSION, "name": self.name,
                "params": self.get_params(), "chunk_len": self.chunk_len_,
                "action_dim": self.action_dim_, "fitted": self._fitted_state()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ChunkTokenizer:
        """Rebuild a fitted chunk tokenizer of the class ``state["name"]`` names. The whole
        state is checked: its fields and their types, the parameters, the learned values, and
        that the tokenizer decodes its own encodings of probe chunks (CorruptFileError naming
        the field or the failed check otherwise)."""
        _check_state_fields(state)
        try:
            klass = get_chunk_tokenizer_class(state["name"])
        except QbcError:
            raise CorruptFileError(f"field 'name': unknown chunk tokenizer {state['name']!r} "
                                   f"(known: {', '.join(available_chunk_tokenizers())})") from None
        try:
            tok = klass(**state["params"])
        except QbcError as exc:
            raise CorruptFileError(f"field 'params': {exc}") from None
        except TypeError as exc:
            raise CorruptFileError(f"field 'params': {exc}") from None
        tok.chunk_len_, tok.action_dim_ = state["chunk_len"], state["action_dim"]
        try:
            tok._load_fitted(state["fitted"])
        except Exception as exc:  # noqa: BLE001  (any failure on the stored values: damaged)
            raise CorruptFileError(f"field 'fitted' is incomplete or damaged "
                                   f"({_what(exc)})") from None
        try:
            with np.errstate(all="ignore"):  # damaged values overflow: the check says so
                tok._self_check()
        except Exception as exc:  # noqa: BLE001
            raise CorruptFileError(f"it does not decode its own encodings ({_what(exc)}); the "
                                   "stored values are damaged") from None
        return tok

    def _self_check(self) -> None:
        """Raise ValueError unless probe chunks (zero, and constant at each end of the fitted
        range when the tokenizer records one) encode, and decode without a failure to finite
        chunks of the right shape, and (fixed-length codes) every token decodes to finite
        actions."""
        probes = [np.zeros((self.chunk_len_, self.action_dim_))]
        for bound in ("low_", "high_"):
            value = getattr(self, bound, None)
            if value is not None:
                probes.append(np.broadcast_to(np.asarray(value, float),
                                              (self.chunk_len_, self.action_dim_)))
        probes = np.stack(probes)
        chunks, failed = self.decode_with_failures(self.encode(probes))
        if chunks.shape != probes.shape or not np.isfinite(chunks).all():
            raise ValueError("a probe chunk does not decode to a finite chunk of its shape")
        if failed.any():
            raise ValueError(f"{int(failed.sum())} of its {len(probes)} probe encodings do "
                             "not decode")
        if self.n_tokens is not None:  # fixed length: every token id at every position, which a
            # policy may emit though no probe encodes to it (a codeword of 1e308 -> inf)
            every = np.repeat(np.arange(self.vocab_size)[:, None], self.n_tokens, axis=1)
            chunks, failed = self.decode_with_failures(every)
            if not np.isfinite(chunks[~failed].astype(np.float32)).all():
                raise ValueError("a token decodes to a non-finite action")

    def save(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """Write the tokenizer as JSON (atomically). Floats round-trip exactly."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        return atomic_write_json(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ChunkTokenizer:
        """Read a saved chunk tokenizer; a damaged file raises CorruptFileError naming the
        file and the field."""
        state = read_json(path, what="chunk tokenizer file")
        try:
            return cls.from_state_dict(state)
        except CorruptFileError as exc:
            raise CorruptFileError(f"chunk tokenizer file {str(path)!r}: {exc}; re-create "
                                   "it") from None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


#: Largest chunk (k x D values) a file may describe: far beyond any real chunk, small enough
#: that checking a damaged file cannot exhaust memory.
MAX_CHUNK_VALUES = 1 << 20


def _what(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_state_fields(state: Any) -> None:
    """CorruptFileError naming the first field of a saved state that is missing or of the
    wrong type (the learned values are checked by the tokenizer itself)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptFileError(f"not a qbc chunk tokenizer (field 'format' is not {FORMAT!r})")
    version = state.get("version")  # an int, not a bool (True == 1)
    if type(version) is not int or version != FORMAT_VERSION:
        raise CorruptFileError(
            f"chunk tokenizer format version {state.get('version')!r} is not supported "
            f"(this qbc reads version {FORMAT_VERSION})")
    types = {"name": str, "params": dict, "chunk_len": int, "action_dim": int, "fitted": dict}
    for field, kind in types.items():
        value = state.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CorruptFileError(f"field {field!r} must be a {kind.__name__}, got "
                                   f"{_short(value)}")
    k, d = state["chunk_len"], state["action_dim"]
    if not (1 <= k and 1 <= d and k * d <= MAX_CHUNK_VALUES):
        raise CorruptFileError(f"fields 'chunk_len' ({k}) and 'action_dim' ({d}) must be >= 1 "
                               f"with at most {MAX_CHUNK_VALUES} values per chunk")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- checks of constructor parameters, shared by the tokenizers --------------------------------
def check_int(owner: str, what: str, value: Any, low: int, high: int | None = None) -> None:
    """InvalidValueError unless ``value`` is an integer (not a bool) in [low, high]."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, np.integer))
          and value >= low and (high is None or value <= high))
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidValueError(f"{owner}: {what} must be an integer {rng}, got {_short(value)}")


def check_quantile(owner: str, value: Any) -> None:
    """InvalidValueError unless ``value`` is a number in [0, 0.5)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.floating,
                                                             np.integer))
          and 0.0 <= value < 0.5)  # compared as given: float() of a huge int overflows
    if not ok:
        raise InvalidValueError(f"{owner}: quantile must be a number in [0, 0.5), got "
                                f"{_short(value)}")


#: Seeds of scikit-learn's random states: [0, 2^32).
SEED_LIMIT = 1 << 32


# -- the registry ------------------------------------------------------------------------------
def register_chunk_tokenizer(name: str):
    """Class decorator: register a :class:`ChunkTokenizer` subclass under ``name``."""
    return CHUNK_TOKENIZERS.register(name)


def available_chunk_tokenizers() -> list[str]:
    """Registered chunk tokenizer names, sorted."""
    return CHUNK_TOKENIZERS.names()


def get_chunk_tokenizer_class(name: str) -> type[ChunkTokenizer]:
    """The class registered under ``name``; unknown names list the valid ones."""
    return CHUNK_TOKENIZERS.get(name)


def make_chunk_tokenizer(spec: str | dict | ChunkTokenizer, **params: Any) -> ChunkTokenizer:
    """Resolve a chunk tokenizer from a name (``make_chunk_tokenizer("fast", scale=20)``), a dict
    (``{"name": "beast", "bins": 64}``; a saved state with ``format`` restores a fitted one) or
    an instance (returned unchanged)."""
    if isinstance(spec, ChunkTokenizer):
        if params:
            raise InvalidValueError("cannot pass parameters together with a tokenizer instance")
        return spec
    if isinstance(spec, dict):
        if "format" in spec:
            return ChunkTokenizer.from_state_dict(spec)
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise InvalidValueError("a chunk tokenizer dict needs a 'name' entry")
        return make_chunk_tokenizer(name, **{**spec, **params})
    if not isinstance(spec, str):
        raise InvalidValueError(f"cannot make a chunk tokenizer from {type(spec).__name__}")
    klass = get_chunk_tokenizer_class(spec)
    try:
        return klass(**params)
    except TypeError as exc:
        allowed = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]
        raise InvalidValueError(
            f"bad parameters for chunk tokenizer {spec!r} ({exc}); it takes {', '.join(allowed)}"
        ) from None
