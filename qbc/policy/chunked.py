"""Chunk policies: predict the next k actions (a chunk) from the current observation.

- ``chunk-ar-transformer``: the AR transformer (:mod:`qbc.policy.ar_transformer`, KV-cache
  decoding) over a chunk tokenizer's token sequence (:mod:`qbc.chunking`). Fixed-length codes
  (``beast``, ``rvq``, ``per-step``) use ``n_tokens`` positions of the tokenizer's vocabulary.
  Variable-length codes (``fast``) get one extra token value, the end token ``V``, and one extra
  position: a sequence is its tokens then the end token, padded with end tokens; the log-loss
  counts positions up to and including the first end token; decoding stops once every row has
  emitted it. Generation is constrained (:class:`LengthConstraint`): only tokens from which a
  sequence of exactly k x D coefficients can still be completed are allowed, and the end token
  only when the count is complete, so generated sequences decode by construction
  (``ChunkPolicy.constrained = False`` switches it off). A sequence without an end token, or one
  that does not decode, is repaired by the tokenizer's rule and counted (``decode_failures``) —
  never raised.
- ``chunk-mlp-l1``: the continuous baseline (ACT-like): an MLP regressing the whole normalised
  chunk (k x D outputs) with an L1 loss.

:class:`ChunkPolicy` is the numpy-facing wrapper: ``predict_chunks(obs (B, obs_dim)) ->
(chunks (B, k, D) in action units, failed (B,) bool)``; ``act`` executes a chunk's first action
(re-planning every step). :class:`qbc.chunking.execution.ChunkExecutor` runs the other modes.
Checkpoints are the usual directory (:func:`qbc.policy.loading.save_checkpoint`) with the chunk
tokenizer's JSON as ``tokenizer.json``; :func:`qbc.policy.load_policy` returns a ChunkPolicy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qbc.errors import InvalidValueError, QbcWarning, UnknownNameError
from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.baselines import MLPConfig, MLPRegressionPolicy
from qbc.policy.registry import (
    MLP_READS,
    POLICY_KINDS,
    TRANSFORMER_READS,
    chunk_policies,
    register_policy,
)
from qbc.policy.wrapper import Normalizer, Policy


@dataclass
class ChunkARConfig(ARTransformerConfig):
    """An AR transformer over the tokens of a chunk (n_tokens positions, vocab_size values)."""

    chunk_len: int = 1
    """actions per chunk k."""
    action_dim: int = 1
    """action dimensions D."""
    end_token: int | None = None
    """variable-length codes: the end-of-sequence token value (vocab_size - 1); else None."""


def _build_ar(model: Any, obs_dim: int, act_dim: int, chunk_len: int, tokenizer: Any,
              max_len: int | None) -> ChunkARTransformer:
    """The AR kind from the model settings' transformer fields and a fitted chunk tokenizer."""
    if tokenizer is None:
        raise InvalidValueError("chunk-ar-transformer needs a fitted chunk tokenizer")
    if model.d_model % model.n_heads:
        raise InvalidValueError(
            f"d_model ({model.d_model}) must be divisible by n_heads ({model.n_heads})")
    n, vocab, end = chunk_token_layout(tokenizer, max_len)
    ordered = model.head == "ordered" and has_ordered_bins(tokenizer)
    module = ChunkARTransformer(ChunkARConfig(
        obs_dim=obs_dim, n_tokens=n, vocab_size=vocab, d_model=model.d_model,
        n_layers=model.n_layers, n_heads=model.n_heads, mlp_ratio=model.mlp_ratio,
        dropout=model.dropout, ordered_head=ordered, loc_layers=model.loc_layers,
        loc_hidden=model.hidden, loc_trunk=model.loc_inputs == "obs+trunk",
        chunk_len=chunk_len, action_dim=act_dim, end_token=end))
    if ordered:
        module.set_bin_centers(tokenizer.codebooks())
    return module


def has_ordered_bins(tokenizer: Any) -> bool:
    """True for a fitted chunk tokenizer whose every token position holds ordered scalar bins
    (``per-step`` with a per-dimension quantizer): the ones the ordered head and two-hot
    targets apply to."""
    return bool(getattr(tokenizer, "ordered_bins", False))


@register_policy("chunk-ar-transformer", ChunkARConfig, tokens=True, build=_build_ar, chunk=True,
                 reads=(*TRANSFORMER_READS, "hidden", "head", "loc_layers", "loc_inputs"))
# obs_history must be 1; the ordered head's settings apply to per-step tokens of scalar bins
class ChunkARTransformer(ARTransformerPolicy):
    """p(tok_i | obs, tok_<i) over a chunk's token sequence (``chunk-ar-transformer``)."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-loss (nats per counted token): obs (B, 1, obs_dim), tokens (B, n) and, for
        variable-length codes, mask (B, n) (1 up to and including the first end token); with
        soft (B, n, V) target distributions (two-hot), the cross-entropy against them."""
        logits = self.logits(batch["obs"], batch["tokens"])
        logp = F.log_softmax(logits.float(), dim=-1)
        if "soft" in batch:  # two-hot targets (ordered bins; fixed-length codes)
            return -(batch["soft"] * logp).sum(-1).mean()
        nll = -logp.gather(-1, batch["tokens"][..., None])[..., 0]  # (B, n)
        mask = batch.get("mask")
        if mask is None:
            return nll.mean()
        return (nll * mask).sum() / mask.sum().clamp(min=1)

    def decode(self, obs: torch.Tensor, sample: bool = False, temperature: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True,
               stop_token: int | None = None, constraint: Any = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, n) and probs (B, n, V), stopping at the end token when there is one;
        ``constraint`` (e.g. a :class:`LengthConstraint`) masks tokens position by position."""
        stop = self.cfg.end_token if stop_token is None else stop_token
        return super().decode(obs, sample, temperature, generator, use_cache, stop, constraint)


# -- constrained decoding (variable-length codes) -------------------------------------------------
def allowed_token_table(symbols: np.ndarray, size: int, n_positions: int) -> np.ndarray:
    """Which token may come next, for generating sequences that decode to exactly ``size``
    symbols: bool (n_positions, size + 3, V + 1), indexed [position i, state, token].

    ``symbols`` (V,): symbols each token id expands to (< 1: never allowed); token V is the end
    token. States 0..size: symbols emitted so far; ``size + 1``: the row has ended (only the end
    token follows); ``size + 2``: the row is off the rails (everything allowed: a row that was
    infeasible from the start, see below). A token of s symbols is allowed at position i from
    state c when c + s <= size and the remainder size - c - s can be made of at most
    n_positions - 2 - i more tokens (the fewest tokens summing to each remainder: a coin-change
    table over the token lengths), so the end token still fits by the last position; the end
    token is allowed only at c == size. Starting from state 0 at a feasible position, every
    allowed choice keeps a valid completion, so generated sequences decode by construction; a
    state with no allowed token (a model with too few positions) allows all."""
    symbols = np.asarray(symbols, dtype=np.int64)
    V = len(symbols)
    lengths = sorted({int(s) for s in symbols if 0 < s <= size})
    big = np.iinfo(np.int64).max // 4
    fewest = np.full(size + 1, big, dtype=np.int64)  # fewest tokens summing to exactly r
    fewest[0] = 0
    for r in range(1, size + 1):
        for s in lengths:
            if s <= r and fewest[r - s] + 1 < fewest[r]:
                fewest[r] = fewest[r - s] + 1
    valid = (symbols >= 1) & (symbols <= size)
    rem = size - np.arange(size + 1)[:, None] - np.where(valid, symbols, size + 1)[None, :]
    need = np.where(rem >= 0, fewest[np.clip(rem, 0, size)], big)  # (size + 1, V)
    table = np.zeros((n_positions, size + 3, V + 1), dtype=bool)
    for i in range(n_positions):
        table[i, :size + 1, :V] = need <= n_positions - 2 - i
    table[:, size, V] = True
    table[:, size + 1, V] = True
    table[:, size + 2, :] = True
    stuck = ~table.any(axis=2)
    table[stuck] = True
    return table


class LengthConstraint:
    """Constrained decoding of a variable-length chunk code (``fast``): the
    :data:`qbc.policy.ar_transformer.Constraint` that allows, at each position, only tokens
    from which a sequence decoding to exactly k x D symbols can still be completed (see
    :func:`allowed_token_table`). Built from ``tokenizer.length_constraint()``; the table is
    made once (per device) and each step is one lookup by (position, symbols so far)."""

    def __init__(self, symbols: np.ndarray, size: int, n_positions: int, end_token: int):
        symbols = np.asarray(symbols, dtype=np.int64)
        if end_token != len(symbols):
            raise InvalidValueError(f"the end token must follow the {len(symbols)} token ids "
                                    f"of the code, got {end_token}")
        self.size, self.end = int(size), int(end_token)
        self._table_np = allowed_token_table(symbols, self.size, n_positions)
        # the end token adds no symbols; an invalid id (picked only in an all-allowed state)
        # pushes the row past size, into the all-allowed state
        self._symbols_np = np.append(np.where(symbols >= 1, symbols, self.size + 1), 0)
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, batch: int, device: torch.device):
        key = str(device)
        if key not in self._on:
            self._on[key] = (torch.as_tensor(self._table_np, device=device),
                             torch.as_tensor(self._symbols_np, device=device))
        table, symbols = self._on[key]
        size, end = self.size, self.end
        count = torch.zeros(batch, dtype=torch.long, device=device)
        ended = torch.zeros(batch, dtype=torch.bool, device=device)

        def allowed(i: int, prev: torch.Tensor | None) -> torch.Tensor:
            nonlocal count, ended
            if prev is not None:
                ended = ended | (prev == end)
                count = count + symbols[prev]
            state = torch.where(ended, size + 1, count.clamp(max=size + 2))
            return table[i][state]

        return allowed


@dataclass
class ChunkMLPConfig(MLPConfig):
    """An MLP regressing a whole chunk: out_dim = chunk_len * action_dim."""

    chunk_len: int = 1
    """actions per chunk k."""


def _build_mlp(model: Any, obs_dim: int, act_dim: int, chunk_len: int, tokenizer: Any,
               max_len: int | None) -> ChunkMLPRegression:
    """The MLP kind from the model settings' ``hidden`` and ``mlp_layers``."""
    return ChunkMLPRegression(ChunkMLPConfig(
        obs_dim=obs_dim, out_dim=chunk_len * act_dim, hidden=model.hidden,
        n_layers=model.mlp_layers, chunk_len=chunk_len))


@register_policy("chunk-mlp-l1", ChunkMLPConfig, tokens=False, build=_build_mlp, chunk=True,
                 reads=MLP_READS)
class ChunkMLPRegression(MLPRegressionPolicy):
    """Continuous chunk baseline (``chunk-mlp-l1``): normalised chunk (B, k * D), L1 loss."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean absolute error over the normalised chunk's components; actions (B, k * D)."""
        return F.l1_loss(self._features(batch["obs"]), batch["actions"])


# -- building --------------------------------------------------------------------------------------
def chunk_token_layout(tokenizer: Any, max_len: int | None = None) -> tuple[int, int, int | None]:
    """(positions n, vocabulary V, end token or None) of the AR model for a fitted chunk
    tokenizer; variable-length codes need ``max_len``, the longest sequence to be learned."""
    if tokenizer.n_tokens is not None:
        return int(tokenizer.n_tokens), int(tokenizer.vocab_size), None
    if max_len is None or max_len < 0:
        raise InvalidValueError("a variable-length chunk tokenizer needs max_len >= 0")
    vocab = int(tokenizer.vocab_size)
    return int(max_len) + 1, vocab + 1, vocab


def build_chunk_policy(kind: str, model: Any, obs_dim: int, act_dim: int, chunk_len: int,
                       tokenizer: Any = None, max_len: int | None = None) -> torch.nn.Module:
    """A fresh chunk policy module (seed torch first). ``model``: a
    :class:`qbc.policy.ModelConfig` (its transformer fields for the AR kind, ``hidden`` and
    ``mlp_layers`` for the MLP); observation history is not supported for chunks."""
    if kind not in chunk_policies():
        raise UnknownNameError("chunk policy", kind, chunk_policies())
    if model.obs_history != 1:
        raise InvalidValueError(
            f"chunk policies see the current observation only; got obs_history "
            f"{model.obs_history}, use 1")
    build = POLICY_KINDS.meta(kind)["build"]
    return build(model, obs_dim, act_dim, chunk_len, tokenizer, max_len)


# -- tokens <-> chunks -----------------------------------------------------------------------------
def pad_sequences(seqs: list[np.ndarray], n: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length sequences -> (tokens (N, n) int64: each sequence, then ``end``, padded
    with ``end``; mask (N, n) float32: 1 up to and including the first end token). Sequences
    longer than n - 1 are refused."""
    lengths = np.array([len(s) for s in seqs])
    if lengths.max(initial=0) > n - 1:
        raise InvalidValueError(f"a token sequence of {lengths.max()} tokens does not fit "
                                f"{n} positions (n - 1 tokens and the end token)")
    tokens = np.full((len(seqs), n), end, dtype=np.int64)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = s
    mask = (np.arange(n)[None, :] <= lengths[:, None]).astype(np.float32)
    return tokens, mask


def strip_end(tokens: np.ndarray, end: int) -> list[np.ndarray]:
    """Generated tokens (B, n) -> B sequences cut before their first end token (whole rows
    when there is none: such a row usually fails to decode and is repaired)."""
    is_end = tokens == end
    lengths = np.where(is_end.any(axis=1), is_end.argmax(axis=1), tokens.shape[1])
    return [row[:length] for row, length in zip(tokens, lengths, strict=True)]


# -- the numpy-facing wrapper ----------------------------------------------------------------------
class ChunkPolicy(Policy):
    """A trained chunk policy on numpy batches (see the module docstring).

    ``chunk_tokenizer``: the fitted :class:`~qbc.chunking.ChunkTokenizer` (AR kind only);
    ``decode_failures``: repaired chunks since construction. ``tokenizer`` is None (there is no
    per-step tokenizer, so rollouts make no per-step quantized expert for it).
    """

    def __init__(self, module: torch.nn.Module, normalizer: Normalizer, chunk_tokenizer: Any = None,
                 decode_mode: str = "argmax", temperature: float = 1.0, use_cache: bool = True,
                 device: str | torch.device = "cpu", env_id: str | None = None):
        super().__init__(module, normalizer, None, decode_mode, temperature, use_cache, device,
                         env_id)
        self.chunk_tokenizer = chunk_tokenizer
        self.decode_failures = 0
        #: variable-length codes: generate under a :class:`LengthConstraint` (sequences decode
        #: by construction); False generates freely (then the repair rules apply).
        self.constrained = True
        self._constraint: LengthConstraint | None = None

    @property
    def chunk_len(self) -> int:
        return int(self.module.cfg.chunk_len)

    @property
    def decode_mode(self) -> str:
        return self._decode_mode

    @decode_mode.setter
    def decode_mode(self, mode: str) -> None:
        if mode not in ("argmax", "sample"):
            raise InvalidValueError(
                f"chunk policies decode by 'argmax' or 'sample', not {mode!r}")
        self._decode_mode = mode

    def predict_chunks(self, obs: np.ndarray, prev_action: np.ndarray | None = None,
                       deterministic: bool = True, generator: torch.Generator | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Observations (B, obs_dim) -> (chunks (B, k, D) float32 in action units, failed (B,)
        bool: token sequences that did not decode and were repaired, by the tokenizer's rule
        with ``prev_action`` (B, D) for ``hold-last-action``)."""
        x = self._obs_tensor(obs)
        B, k = x.shape[0], self.chunk_len
        if not self.module.is_token_policy:
            with torch.no_grad():
                z = self.module.predict(x).float().cpu().numpy().reshape(B, k, -1)
            return self.normalizer.unnormalize_actions(z), np.zeros(B, dtype=bool)
        sample = self.decode_mode == "sample" or not deterministic
        tokens, _ = self.module.decode(x, sample=sample, temperature=self.temperature,
                                       generator=self.draws(generator), use_cache=self.use_cache,
                                       constraint=self.constraint())
        tokens = tokens.cpu().numpy()
        end = self.module.cfg.end_token
        seqs = tokens if end is None else strip_end(tokens, end)
        chunks, failed = self.chunk_tokenizer.decode_with_failures(seqs, prev_action)
        self.decode_failures += int(failed.sum())
        return chunks.astype(np.float32), failed

    def constraint(self) -> LengthConstraint | None:
        """The constraint generation runs under: a :class:`LengthConstraint` for a
        variable-length code when :attr:`constrained`, else None (built once)."""
        end = getattr(self.module.cfg, "end_token", None)
        if not self.constrained or end is None or not hasattr(self.chunk_tokenizer,
                                                               "length_constraint"):
            return None
        if self._constraint is None:
            spec = self.chunk_tokenizer.length_constraint()
            if spec is None:  # e.g. FAST's byte-level BPE: no symbol count per token
                warnings.warn(f"{self.chunk_tokenizer!r} cannot constrain generation (its tokens "
                              "need not hold whole symbols): sequences are generated freely, "
                              "and malformed ones repaired by its rule and counted as decode "
                              "failures", QbcWarning, stacklevel=2)
                self.constrained = False
                return None
            self._constraint = LengthConstraint(*spec, self.module.cfg.n_tokens, end)
        return self._constraint

    def act(self, obs: np.ndarray, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """The first action (B, D) of each predicted chunk (re-planning every step)."""
        return self.predict_chunks(obs, deterministic=deterministic, generator=generator)[0][:, 0]

    def __repr__(self) -> str:
        tok = "" if self.chunk_tokenizer is None else f", tokenizer={self.chunk_tokenizer!r}"
        return f"ChunkPolicy(kind={self.kind!r}, k={self.chunk_len}{tok})"
