"""Chunk policies: predict the next k actions (a chunk) from the current observation.

- ``chunk-ar-transformer``: the AR transformer (:mod:`qbc.policy.ar_transformer`, KV-cache
  decoding) over a chunk tokenizer's token sequence (:mod:`qbc.chunking`). Fixed-length codes
  (``beast``, ``rvq``, ``per-step``) use ``n_tokens`` positions of the tokenizer's vocabulary.
  Variable-length codes (``fast``) get one extra token value, the end token ``V``, and one extra
  position: a sequence is its tokens then the end token, padded with end tokens; the log-loss
  counts positions up to and including the first end token; decoding stops once every row has
  emitted it. A sequence without an end token, or one that does not decode, is repaired by the
  tokenizer's rule and counted (``decode_failures``) — never raised.
- ``chunk-mlp-l1``: the continuous baseline (ACT-like): an MLP regressing the whole normalised
  chunk (k x D outputs) with an L1 loss.

:class:`ChunkPolicy` is the numpy-facing wrapper: ``predict_chunks(obs (B, obs_dim)) ->
(chunks (B, k, D) in action units, failed (B,) bool)``; ``act`` executes a chunk's first action
(re-planning every step). :class:`qbc.chunking.execution.ChunkExecutor` runs the other modes.
Checkpoints are the usual directory (:func:`qbc.policy.loading.save_checkpoint`) with the chunk
tokenizer's JSON as ``tokenizer.json``; :func:`qbc.policy.load_policy` returns a ChunkPolicy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.baselines import MLPConfig, MLPRegressionPolicy
from qbc.policy.wrapper import Normalizer, Policy

#: Chunk policy kinds.
CHUNK_POLICIES = ("chunk-ar-transformer", "chunk-mlp-l1")


@dataclass
class ChunkARConfig(ARTransformerConfig):
    """An AR transformer over the tokens of a chunk (n_tokens positions, vocab_size values)."""

    chunk_len: int = 1
    """actions per chunk k."""
    action_dim: int = 1
    """action dimensions D."""
    end_token: int | None = None
    """variable-length codes: the end-of-sequence token value (vocab_size - 1); else None."""


class ChunkARTransformer(ARTransformerPolicy):
    """p(tok_i | obs, tok_<i) over a chunk's token sequence (``chunk-ar-transformer``)."""

    kind = "chunk-ar-transformer"
    is_chunk_policy = True

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-loss (nats per counted token): obs (B, 1, obs_dim), tokens (B, n) and, for
        variable-length codes, mask (B, n) (1 up to and including the first end token)."""
        logits = self.logits(batch["obs"], batch["tokens"])
        logp = F.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, batch["tokens"][..., None])[..., 0]  # (B, n)
        mask = batch.get("mask")
        if mask is None:
            return nll.mean()
        return (nll * mask).sum() / mask.sum().clamp(min=1)

    def decode(self, obs: torch.Tensor, sample: bool = False, temperature: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True,
               stop_token: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, n) and probs (B, n, V), stopping at the end token when there is one."""
        stop = self.cfg.end_token if stop_token is None else stop_token
        return super().decode(obs, sample, temperature, generator, use_cache, stop)


@dataclass
class ChunkMLPConfig(MLPConfig):
    """An MLP regressing a whole chunk: out_dim = chunk_len * action_dim."""

    chunk_len: int = 1
    """actions per chunk k."""


class ChunkMLPRegression(MLPRegressionPolicy):
    """Continuous chunk baseline (``chunk-mlp-l1``): normalised chunk (B, k * D), L1 loss."""

    kind = "chunk-mlp-l1"
    is_chunk_policy = True

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
    if kind not in CHUNK_POLICIES:
        from qbc.errors import UnknownNameError

        raise UnknownNameError("chunk policy", kind, CHUNK_POLICIES)
    if model.obs_history != 1:
        raise InvalidValueError(
            f"chunk policies see the current observation only; got obs_history "
            f"{model.obs_history}, use 1")
    if kind == "chunk-mlp-l1":
        return ChunkMLPRegression(ChunkMLPConfig(
            obs_dim=obs_dim, out_dim=chunk_len * act_dim, hidden=model.hidden,
            n_layers=model.mlp_layers, chunk_len=chunk_len))
    if tokenizer is None:
        raise InvalidValueError("chunk-ar-transformer needs a fitted chunk tokenizer")
    if model.d_model % model.n_heads:
        raise InvalidValueError(
            f"d_model ({model.d_model}) must be divisible by n_heads ({model.n_heads})")
    n, vocab, end = chunk_token_layout(tokenizer, max_len)
    return ChunkARTransformer(ChunkARConfig(
        obs_dim=obs_dim, n_tokens=n, vocab_size=vocab, d_model=model.d_model,
        n_layers=model.n_layers, n_heads=model.n_heads, mlp_ratio=model.mlp_ratio,
        dropout=model.dropout, chunk_len=chunk_len, action_dim=act_dim, end_token=end))


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
                                       generator=self.draws(generator), use_cache=self.use_cache)
        tokens = tokens.cpu().numpy()
        end = self.module.cfg.end_token
        seqs = tokens if end is None else strip_end(tokens, end)
        chunks, failed = self.chunk_tokenizer.decode_with_failures(seqs, prev_action)
        self.decode_failures += int(failed.sum())
        return chunks.astype(np.float32), failed

    def act(self, obs: np.ndarray, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """The first action (B, D) of each predicted chunk (re-planning every step)."""
        return self.predict_chunks(obs, deterministic=deterministic, generator=generator)[0][:, 0]

    def __repr__(self) -> str:
        tok = "" if self.chunk_tokenizer is None else f", tokenizer={self.chunk_tokenizer!r}"
        return f"ChunkPolicy(kind={self.kind!r}, k={self.chunk_len}{tok})"


def load_chunk_policy(directory: str | Path, module: torch.nn.Module, cfg: dict[str, Any],
                      device: str | torch.device = "cpu", decode_mode: str = "argmax"
                      ) -> ChunkPolicy:
    """The ChunkPolicy of a checkpoint directory whose module ``load_module`` has rebuilt."""
    from qbc.chunking import ChunkTokenizer
    from qbc.io import read_json_object
    from qbc.policy.loading import verify_file

    directory = Path(directory)
    normalizer = Normalizer.from_dict(read_json_object(directory / "normalizer.json",
                                                       what="normalizer"))
    tokenizer = None
    if module.is_token_policy:
        tokenizer = ChunkTokenizer.load(directory / "tokenizer.json")
        n, vocab, end = chunk_token_layout(tokenizer, module.cfg.n_tokens - 1)
        if (vocab, end) != (module.cfg.vocab_size, module.cfg.end_token) or (
                end is None and n != module.cfg.n_tokens) or (
                tokenizer.chunk_len_ != module.cfg.chunk_len):
            raise CorruptFileError(
                f"{directory / 'tokenizer.json'} does not belong to the weights in {directory} "
                "(another vocabulary, token count or chunk length); use the files of one run")
        verify_file(directory, "tokenizer.json", cfg)  # an edit of the same shapes, too
    if len(normalizer.obs_mean) != module.cfg.obs_dim:
        raise CorruptFileError(f"{directory / 'normalizer.json'} is for another observation size")
    return ChunkPolicy(module, normalizer, tokenizer, decode_mode=decode_mode, device=device,
                       env_id=cfg.get("env_id"))
