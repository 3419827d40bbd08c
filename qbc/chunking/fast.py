"""``fast``: the FAST tokenizer (Pertsch et al. 2025, pi0-FAST): DCT of each chunk + BPE.

Encoding a chunk (k, D) in action units:

1. per-dimension quantile normalisation to [-1, 1] (1st/99th percentiles of the fitting data);
2. DCT-II along time, orthonormal (``scipy.fft.dct(..., norm="ortho")``), per dimension;
3. coefficients times ``scale`` (default 10), rounded to integers, clipped to the range seen in
   fitting (only chunks unlike the fitting data reach beyond it; the clip is the only loss beyond
   rounding);
4. flattened frequency-major (all D dimensions of the lowest frequency first) into k * D
   integers, each mapped to one character (offset by the fitted minimum);
5. a BPE (HuggingFace ``tokenizers``, trained in ``fit``, vocabulary ``vocab_size``, merges seen
   at least ``min_frequency`` times) turns the string into tokens: character-level by default
   (``bpe="char"``: one initial token per integer symbol), or byte-level as in the reference
   implementation (``bpe="byte"``: the string's UTF-8 bytes, 256 initial tokens; a generated
   sequence can then also fail by ending inside a multi-byte character).

Decoding inverts each step. Error: rounding moves each coefficient by at most 0.5 / scale, so each
decoded value is within ``error_bound`` (action units, per dimension; the tight worst case) of the
input for chunks whose coefficients lie in the fitted range, and the RMS error is at most
0.5 / scale normalised units.

Decode failures: a generated token sequence need not decode to exactly k * D coefficients (too
few or too many tokens; token ids outside the vocabulary). Such a sequence is repaired by one of
:data:`REPAIR_RULES`, counted, and never raises:

- ``pad-zeros-high-frequency`` (default): keep the coefficients decoded before the first
  undecodable id, truncate to k * D or pad with zeros — the missing ones are the highest
  frequencies, so a short sequence gives a smoother chunk;
- ``hold-last-action``: repeat ``prev_action`` (the last executed action, (N, D)) for all k steps;
  rows without a previous action (``prev_action=None``) get the zero chunk;
- ``zero-chunk``: all k actions are 0 (in action units — the reference decoder's all-zero chunk is
  in normalised units, i.e. the middle of the 1%–99% quantile range; qbc's envs take 0 as "no
  input").

Constrained generation (:meth:`FastTokenizer.length_constraint`) makes such failures impossible
for sequences a model generates: every BPE token expands to a fixed number of symbols (its
string's length: one character per coefficient; any string of exactly k * D symbols of the
alphabet decodes), so a generator that tracks the symbols emitted so far can mask every token
that would overshoot k * D or leave a remainder it cannot complete in the positions left, and
allow its end token only at exactly k * D (:func:`qbc.policy.chunked.allowed_token_table`).
This holds for the character-level BPE only: a byte-level token need not hold whole symbols, and
:meth:`FastTokenizer.token_symbol_counts` does not describe it (most of its ids count as -1), so
with ``bpe="byte"`` :meth:`FastTokenizer.length_constraint` gives None and a chunk policy generates
unconstrained (with a warning).
The repair rules stay for sequences from elsewhere.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import scipy.fft

from qbc.chunking.base import (
    ChunkTokenizer,
    Tokens,
    check_int,
    check_quantile,
    register_chunk_tokenizer,
)
from qbc.chunking.chunks import QuantileNormalizer
from qbc.errors import InvalidValueError

REPAIR_RULES = ("pad-zeros-high-frequency", "hold-last-action", "zero-chunk")
#: BPE levels: character-level over the integer symbols (default) or byte-level (the reference).
BPE_LEVELS = ("char", "byte")
_BYTES = 256
#: First code point of the symbol alphabet: Latin Extended-A onwards, no whitespace or controls.
_BASE = 0x100
_MAX_SYMBOLS = 0xD800 - _BASE  # code points below the UTF-16 surrogates
#: BPE vocabulary size when ``vocab_size`` is not given and the symbols fit in it (FAST's).
DEFAULT_VOCAB_SIZE = 1024


def dct_chunks(z: np.ndarray) -> np.ndarray:
    """Normalised chunks (N, k, D) -> DCT-II coefficients (N, k, D) along time (orthonormal)."""
    return scipy.fft.dct(z, type=2, axis=1, norm="ortho")


def idct_chunks(coeffs: np.ndarray) -> np.ndarray:
    """DCT-II coefficients (N, k, D) -> normalised chunks (N, k, D) (the exact inverse)."""
    return scipy.fft.idct(coeffs, type=2, axis=1, norm="ortho")


@register_chunk_tokenizer("fast")
class FastTokenizer(ChunkTokenizer):
    """Args:
        scale: multiplier of the DCT coefficients before rounding (larger: finer, more tokens).
        vocab_size: BPE vocabulary size; at least the number of integer symbols seen in fitting.
            Default (None): 1024, or that number of symbols when the data spans more (heavy-
            tailed actions: values far beyond the normalisation quantiles give large
            coefficients); an explicit size smaller than the symbols is refused.
        min_frequency: a BPE merge needs at least this many occurrences.
        quantile: normalisation quantile (0.01: 1st/99th percentiles to [-1, 1]).
        repair: rule for malformed sequences, one of :data:`REPAIR_RULES`.
        bpe: 'char' (default: character-level BPE over the integer symbols, a reconstruction of
            ours) or 'byte' (byte-level BPE over their UTF-8 encoding, as the reference trains;
            the vocabulary is then ``vocab_size`` or 1024 and does not grow with the symbols).
    """

    variable_length = True
    _fitted_attrs = ("low_", "high_", "min_symbol_", "n_symbols_", "bpe_json_")

    def __init__(self, scale: float = 10.0, vocab_size: int | None = None, min_frequency: int = 2,
                 quantile: float = 0.01, repair: str = "pad-zeros-high-frequency",
                 bpe: str = "char"):
        self.scale = scale
        self.vocab_size_param = vocab_size
        self.min_frequency = min_frequency
        self.quantile = quantile
        self.repair = repair
        self.bpe = bpe
        self._validate_params()

    # vocab_size is both a parameter and the fitted vocabulary; the fitted one is the property.
    def get_params(self) -> dict[str, Any]:
        return {"scale": self.scale, "vocab_size": self.vocab_size_param,
                "min_frequency": self.min_frequency, "quantile": self.quantile,
                "repair": self.repair, "bpe": self.bpe}

    def _validate_params(self) -> None:
        if not (isinstance(self.scale, (int, float, np.integer, np.floating))
                and not isinstance(self.scale, bool) and np.isfinite(self.scale)
                and self.scale > 0):
            raise InvalidValueError(f"fast: scale must be a finite number > 0, got {self.scale!r}")
        if self.vocab_size_param is not None:  # None: DEFAULT_VOCAB_SIZE, or the symbol count
            check_int("fast", "vocab_size", self.vocab_size_param, 2)
        check_int("fast", "min_frequency", self.min_frequency, 1)
        check_quantile("fast", self.quantile)
        _check_repair(self.repair)
        if self.bpe not in BPE_LEVELS:
            raise InvalidValueError(f"fast: bpe must be one of {', '.join(BPE_LEVELS)}, "
                                    f"got {self.bpe!r}")
        if self.bpe == "byte" and self.vocab_size_param is not None \
                and self.vocab_size_param < _BYTES:
            raise InvalidValueError(f"fast: a byte-level BPE needs vocab_size >= {_BYTES} (its "
                                    f"initial alphabet), got {self.vocab_size_param}")

    # -- fitting ---------------------------------------------------------------------------
    def _fit(self, chunks: np.ndarray) -> None:
        norm = QuantileNormalizer(self.quantile).fit(chunks)
        self.low_, self.high_ = norm.low_, norm.high_
        ints = self._rounded(self.coefficients(chunks))
        self.min_symbol_ = int(ints.min())
        self.n_symbols_ = int(ints.max()) - self.min_symbol_ + 1
        vocab = self.vocab_size_param
        if self.bpe == "byte":  # bytes spell every symbol: the vocabulary need not cover them
            vocab = DEFAULT_VOCAB_SIZE if vocab is None else vocab
        elif vocab is None:
            vocab = max(DEFAULT_VOCAB_SIZE, min(self.n_symbols_, _MAX_SYMBOLS))
        if self.n_symbols_ > _MAX_SYMBOLS or (self.bpe == "char" and self.n_symbols_ > vocab):
            raise InvalidValueError(
                f"fast: vocab_size {vocab} is smaller than the "
                f"{self.n_symbols_} integer symbols the rounded DCT coefficients span "
                f"([{self.min_symbol_}, {self.min_symbol_ + self.n_symbols_ - 1}] at scale "
                f"{self.scale}); use vocab_size >= {self.n_symbols_} or a smaller scale")
        self.bpe_json_ = _train_bpe(self._strings(ints), self.n_symbols_, vocab,
                                    self.min_frequency, self.bpe)
        self._bpe_cache = None

    def _normalizer(self) -> QuantileNormalizer:
        norm = QuantileNormalizer(self.quantile)
        norm.low_, norm.high_ = self.low_, self.high_
        return norm

    def coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """Chunks (N, k, D) in action units -> DCT coefficients (N, k, D) of the normalised
        chunks, before scaling and rounding (float64)."""
        return dct_chunks(self._normalizer().transform(np.asarray(chunks, dtype=np.float64)))

    def chunks_from_coefficients(self, coeffs: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`coefficients`: (N, k, D) -> chunks (N, k, D) in action units."""
        return self._normalizer().inverse(idct_chunks(coeffs))

    def _rounded(self, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients (N, k, D) -> frequency-major ints (N, k * D)."""
        return np.rint(coeffs * self.scale).astype(np.int64).reshape(len(coeffs), -1)

    @property
    def error_bound(self) -> np.ndarray:
        """(D,) worst |decode(encode(x)) - x| in action units, for chunks whose rounded
        coefficients lie in the fitted symbol range.

        Decoded step t is sum_j M[t, j] c_j with M (k, k) the inverse DCT (rows: time steps,
        columns: frequencies); rounding moves each c_j by at most 0.5 / scale, independently, so
        the worst error at step t is (0.5 / scale) * sum_j |M[t, j]|. The bound is therefore
        (0.5 / scale) x the largest row sum of |M| (the induced infinity-norm of M) x the
        dimension's half range. It is tight: chunks whose scaled coefficients sit just beyond
        half-integers, with signs following row t of M, come as close to it as wanted."""
        self._check_fitted()
        inverse = idct_chunks(np.eye(self.chunk_len_)[None, :, :])[0]  # (k, k): [time, freq]
        gain = np.abs(inverse).sum(axis=1).max()
        return 0.5 / self.scale * gain * self._normalizer().half_range

    # -- BPE -------------------------------------------------------------------------------
    def _bpe(self):
        """The HuggingFace tokenizer rebuilt from ``bpe_json_`` (cached)."""
        if getattr(self, "_bpe_cache", None) is None:
            from tokenizers import Tokenizer

            self._bpe_cache = Tokenizer.from_str(self.bpe_json_)
        return self._bpe_cache

    def _strings(self, ints: np.ndarray) -> list[str]:
        """Ints (N, L) in the symbol range -> N strings of L characters."""
        codes = (ints - self.min_symbol_ + _BASE).astype("<u4")
        return [row.tobytes().decode("utf-32-le") for row in codes]

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        return int(self._bpe().get_vocab_size())

    @property
    def n_tokens(self) -> None:
        return None

    def token_symbol_counts(self) -> np.ndarray:
        """(vocab_size,) int64: how many coefficient symbols each token id decodes to (the
        length of its string; -1 for a token holding a character outside the alphabet, which
        no valid sequence may contain)."""
        self._check_fitted()
        counts = np.full(self.vocab_size, -1, dtype=np.int64)
        for piece, idx in self._bpe().get_vocab().items():
            codes = np.frombuffer(piece.encode("utf-32-le"), dtype="<u4").astype(np.int64) - _BASE
            if len(codes) and np.all((codes >= 0) & (codes < self.n_symbols_)):
                counts[idx] = len(codes)
        return counts

    def length_constraint(self) -> tuple[np.ndarray, int] | None:
        """What constrained generation needs: (symbols per token id (vocab_size,), see
        :meth:`token_symbol_counts`; symbols of a whole chunk, k * D); None for the byte-level
        BPE, whose tokens need not hold whole symbols, so no count per token describes them."""
        self._check_fitted()
        if self.bpe == "byte":
            return None
        return self.token_symbol_counts(), self.chunk_len_ * self.action_dim_

    # -- coding ----------------------------------------------------------------------------
    def _encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        ints = self._rounded(self.coefficients(chunks))
        ints = np.clip(ints, self.min_symbol_, self.min_symbol_ + self.n_symbols_ - 1)
        encodings = self._bpe().encode_batch(self._strings(ints), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def decode_with_failures(self, tokens: Tokens, prev_action: np.ndarray | None = None,
                             repair: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Token sequences (a list of N int sequences, or an (N, L) array) -> (chunks (N, k, D)
        float32, failed (N,) bool). Malformed sequences are repaired by ``repair`` (default: the
        tokenizer's rule) and flagged; none raises."""
        self._check_fitted()
        repair = _check_repair(self.repair if repair is None else repair)
        seqs = _as_sequences(tokens)
        prev = _check_prev_action(prev_action, len(seqs), self.action_dim_)
        size = self.chunk_len_ * self.action_dim_
        ints, failed = self._decode_ints(seqs, size)
        coeffs = ints.reshape(len(seqs), self.chunk_len_, self.action_dim_) / self.scale
        chunks = self.chunks_from_coefficients(coeffs)
        if repair != "pad-zeros-high-frequency" and failed.any():
            chunks[failed] = 0.0
            if repair == "hold-last-action" and prev is not None:
                chunks[failed] = prev[failed][:, None, :]
        return chunks.astype(np.float32), failed

    def _decode_ints(self, seqs: list[np.ndarray | None], size: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Sequences -> (ints (N, size) float64, failed (N,) bool). A sequence fails unless all
        its ids are in the vocabulary and it decodes to exactly ``size`` symbols; a failed one
        keeps the symbols before its first bad id, truncated or zero-padded to ``size``."""
        vocab = self.vocab_size
        prefixes, failed = [], np.zeros(len(seqs), dtype=bool)
        for i, seq in enumerate(seqs):
            if seq is None:
                seq, failed[i] = np.zeros(0, dtype=np.int64), True
            bad = np.flatnonzero((seq < 0) | (seq >= vocab))
            if len(bad):
                seq, failed[i] = seq[:bad[0]], True
            prefixes.append(seq.tolist())
        strings = self._bpe().decode_batch(prefixes, skip_special_tokens=False)
        out = np.zeros((len(seqs), size))
        for i, s in enumerate(strings):
            symbols = np.frombuffer(s.encode("utf-32-le"), dtype="<u4").astype(np.int64) - _BASE
            if np.any((symbols < 0) | (symbols >= self.n_symbols_)):
                symbols, failed[i] = symbols[:np.argmax((symbols < 0) |
                                                        (symbols >= self.n_symbols_))], True
            failed[i] |= len(symbols) != size
            n = min(size, len(symbols))
            out[i, :n] = symbols[:n] + self.min_symbol_
        return out, failed

    def _self_check(self) -> None:
        """The base class's probes, and every symbol of the fitted range must pass through the
        BPE unchanged (a damaged alphabet or symbol range would fail some encodings)."""
        super()._self_check()
        size = self.chunk_len_ * self.action_dim_
        symbols = np.arange(self.n_symbols_, dtype=np.int64) + self.min_symbol_
        rows = np.resize(symbols, (-(-len(symbols) // size), size))
        encodings = self._bpe().encode_batch(self._strings(rows), add_special_tokens=False)
        ints, failed = self._decode_ints([np.asarray(e.ids, np.int64) for e in encodings], size)
        if failed.any() or not np.array_equal(ints, rows):
            raise ValueError(f"{int(failed.sum())} of {len(rows)} rows of its "
                             f"{self.n_symbols_} symbols do not pass through bpe_json_ unchanged")

    # -- persistence -----------------------------------------------------------------------
    def _fitted_state(self) -> dict[str, Any]:
        return {"low_": self.low_.tolist(), "high_": self.high_.tolist(),
                "min_symbol_": self.min_symbol_, "n_symbols_": self.n_symbols_,
                "bpe_json_": self.bpe_json_}

    def _load_fitted(self, fitted: dict[str, Any]) -> None:
        self.low_ = np.asarray(fitted["low_"], dtype=float)
        self.high_ = np.asarray(fitted["high_"], dtype=float)
        self.min_symbol_, self.n_symbols_ = fitted["min_symbol_"], fitted["n_symbols_"]
        for what, value, low, high in (("min_symbol_", self.min_symbol_, -(1 << 40), 1 << 40),
                                       ("n_symbols_", self.n_symbols_, 1, _MAX_SYMBOLS)):
            check_int("fast", what, value, low, high)
        if not (np.all(np.isfinite(self.low_)) and np.all(np.isfinite(self.high_))
                and np.all(self.low_ <= self.high_)):
            raise ValueError("normalisation bounds low_ <= high_ must be finite")
        if not isinstance(fitted["bpe_json_"], str):
            raise ValueError("bpe_json_ is not a string")
        json.loads(fitted["bpe_json_"])  # damaged JSON fails here, as a ValueError
        self.bpe_json_ = fitted["bpe_json_"]
        self._bpe_cache = None
        try:
            self._bpe()  # built now, so that a damaged one is named here
        except Exception as exc:  # noqa: BLE001  (tokenizers raises a bare Exception)
            raise ValueError(f"bpe_json_ is not a BPE tokenizer ({exc})") from None
        if self.low_.shape != (self.action_dim_,) or self.high_.shape != (self.action_dim_,):
            raise ValueError(f"normalisation bounds are not of shape ({self.action_dim_},)")


def _train_bpe(strings: list[str], n_symbols: int, vocab_size: int, min_frequency: int,
               level: str = "char") -> str:
    """Train a BPE on ``strings``; returns the tokenizer's JSON. ``level='char'``: every one of
    the ``n_symbols`` symbols is in the initial alphabet; ``'byte'``: the 256 byte values are
    (the string is split into UTF-8 bytes, as one word: no regex pre-split). Either way any
    symbol string encodes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    if level == "byte":
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        bpe.decoder = decoders.ByteLevel()  # bytes back to text (an incomplete one: U+FFFD)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        bpe.decoder = decoders.Fuse()  # decoding concatenates the tokens' strings, no spaces
        alphabet = [chr(_BASE + i) for i in range(n_symbols)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        initial_alphabet=alphabet, special_tokens=[])
    bpe.train_from_iterator(strings, trainer=trainer)
    return bpe.to_str()


def _check_repair(repair: object) -> str:
    if repair not in REPAIR_RULES:
        raise InvalidValueError(
            f"fast: unknown repair rule {repair!r}; use one of {', '.join(REPAIR_RULES)}")
    return str(repair)


def _as_sequences(tokens: Tokens) -> list[np.ndarray | None]:
    """Each sequence as a 1-D int64 array, or None where it is not one (then it fails)."""
    if isinstance(tokens, np.ndarray) and tokens.ndim == 2:
        tokens = list(tokens)
    if not isinstance(tokens, (list, tuple)):
        raise InvalidValueError(
            f"fast: tokens must be a list of N token sequences or an (N, L) array, got "
            f"{type(tokens).__name__}")
    out: list[np.ndarray | None] = []
    for seq in tokens:
        try:
            arr = np.asarray(seq)
        except ValueError:
            arr = None
        ok = arr is not None and arr.ndim == 1 and (arr.size == 0 or arr.dtype.kind in "iu")
        out.append(arr.astype(np.int64) if ok else None)
    return out


def _check_prev_action(prev: np.ndarray | None, n: int, dim: int) -> np.ndarray | None:
    if prev is None:
        return None
    try:
        prev = np.asarray(prev, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidValueError("fast: prev_action must be an (N, D) array of numbers") from None
    if prev.shape != (n, dim):
        raise InvalidValueError(
            f"fast: prev_action must have shape (N, D) = ({n}, {dim}), got {prev.shape}")
    if not np.isfinite(prev).all():
        raise InvalidValueError(
            f"fast: prev_action holds {int((~np.isfinite(prev)).sum())} NaN/inf values; the "
            "hold-last-action repair needs the finite last executed action")
    return prev
