"""The data of chunk training (:mod:`qbc.training.chunked`): windows of k actions cut from the
demonstrations, the chunk tokenizer's settings, and the tensors a training step reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qbc.chunking import make_chunk_tokenizer, make_chunks
from qbc.errors import InvalidValueError
from qbc.infra.validate import check_memory
from qbc.policy import POLICY_KINDS, Normalizer
from qbc.policy.chunked import chunk_token_layout, has_ordered_bins, pad_sequences
from qbc.training.data import split_demos, two_hot_parts

if TYPE_CHECKING:  # annotations only: chunked.py imports this module
    from qbc.training.chunked import ChunkTrainConfig


# -- data ------------------------------------------------------------------------------------------
def chunk_rows(demos: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(observations (N, obs_dim) at each chunk's first step, chunks (N, k, D)) of every window
    of k steps inside an episode (stride 1). Episodes shorter than k are refused (one line)."""
    ids = np.asarray(demos.episode_ids)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(ids)], strict=True))
    actions = np.asarray(demos.actions, dtype=np.float32)
    chunks = make_chunks([actions[a:b] for a, b in bounds], k)
    obs = np.concatenate([np.asarray(demos.observations[a:b - k + 1], dtype=np.float32)
                          for a, b in bounds])
    return obs, chunks


def parse_params(text: str) -> dict[str, Any]:
    """'scale=20,quantizer=kmeans' -> {'scale': 20, 'quantizer': 'kmeans'} (JSON values where
    they parse, else strings); a name given twice is an InvalidValueError (the last one won)."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValueError(
                f"bad --chunk-tokenizer-params item {item!r}; write name=value,name=value")
        if name.strip() in out:
            raise InvalidValueError(f"--chunk-tokenizer-params gives {name.strip()} twice in "
                                    f"{text!r}; give each parameter once")
        try:
            out[name.strip()] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or a number of thousands of digits)
            out[name.strip()] = value.strip()
    return out


def tokenizer_params(cfg: ChunkTrainConfig) -> dict[str, Any]:
    """The chunk tokenizer's parameters: per-name defaults from k and --bins, then the user's."""
    k, bins = cfg.chunk_k, cfg.bins
    points = min(k, 10)
    defaults = {"per-step": {"quantizer": "uniform", "n_bins": bins},
                "beast": {"n_control_points": points, "degree": min(3, points - 1), "bins": bins},
                "rvq": {"levels": 4, "codes": bins, "seed": cfg.seed}, "fast": {}}
    return {**defaults.get(cfg.chunk_tokenizer, {}), **parse_params(cfg.chunk_tokenizer_params)}


#: The parameter holding each chunk tokenizer's vocabulary size (fast: its BPE vocabulary).
VOCAB_PARAMS = {"per-step": "n_bins", "beast": "bins", "rvq": "codes", "fast": "vocab_size"}


def check_vocab_memory(cfg: ChunkTrainConfig) -> None:
    """Refuse (one-line InvalidValueError) a chunk tokenizer vocabulary whose model could not be
    held in memory, before anything is read: the token embedding and output head (at least
    2 x vocabulary x d_model weights, with gradients and AdamW moments), one batch of logits
    and, for rvq, its float64 codebooks (levels x codes x k values at least). A vocabulary of
    10^9 used to be fitted first and end in the out-of-memory line (or the OOM killer)."""
    params = tokenizer_params(cfg)
    vocab = params.get(VOCAB_PARAMS.get(cfg.chunk_tokenizer, ""))
    if cfg.policy != "chunk-ar-transformer" or type(vocab) is not int or vocab < 1:
        return  # no tokens, or a bad value the tokenizer itself refuses
    levels = params.get("levels", 1) if cfg.chunk_tokenizer == "rvq" else 0
    levels = levels if type(levels) is int and levels > 0 else 1
    n_bytes = (32.0 * vocab * cfg.model.d_model + 12.0 * cfg.batch_size * vocab
               + 8.0 * levels * vocab * cfg.chunk_k)
    name = VOCAB_PARAMS[cfg.chunk_tokenizer]
    smaller = (f"a smaller {name} in --chunk-tokenizer-params"
               if name in parse_params(cfg.chunk_tokenizer_params) else "fewer --bins")
    check_memory(n_bytes, f"training chunk-ar-transformer on --chunk-tokenizer "
                          f"{cfg.chunk_tokenizer} tokens (a vocabulary of {vocab:,})",
                 f"use {smaller} or a smaller --model.d-model")


@dataclass
class ChunkData:
    """One split as tensors: obs (N, 1, obs_dim) normalised; targets by policy kind."""

    obs: torch.Tensor
    actions: torch.Tensor | None = None
    """(N, k * D) normalised chunks (chunk-mlp-l1)."""
    tokens: torch.Tensor | None = None
    """(N, n) int64 (chunk-ar-transformer)."""
    mask: torch.Tensor | None = None
    """(N, n) float32, variable-length codes: 1 up to and including the end token."""
    two_hot: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """ordered bins: the two-hot targets in compact form, codeword ids lo, hi (N, n) int64 and
    hi's weight (N, n) float32 (:func:`qbc.training.data.two_hot_parts`)."""
    vocab: int = 0
    """V, the width of the two-hot targets a batch expands."""
    raw: tuple[np.ndarray, np.ndarray] | None = None
    """(observations (N, obs_dim), chunks (N, k, D)) in env units (the action error's inputs)."""

    def __len__(self) -> int:
        return len(self.obs)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows ``idx`` (B,): obs and the targets of this split; with two-hot targets,
        soft (B, n, V) float32 as well."""
        fields = {"obs": self.obs, "actions": self.actions, "tokens": self.tokens,
                  "mask": self.mask}
        out = {name: t[idx] for name, t in fields.items() if t is not None}
        if self.two_hot is not None:
            lo, hi, w = (t[idx] for t in self.two_hot)
            soft = torch.zeros((*lo.shape, self.vocab), dtype=torch.float32, device=lo.device)
            soft.scatter_add_(-1, lo[..., None], (1.0 - w)[..., None])
            soft.scatter_add_(-1, hi[..., None], w[..., None])
            out["soft"] = soft
        return out


def chunk_tensors(obs: np.ndarray, chunks: np.ndarray, normalizer: Normalizer,
                  encoded: Any, layout: tuple[int, int, int | None] | None,
                  device: torch.device, codebooks: np.ndarray | None = None) -> ChunkData:
    """Tensors of one split: ``encoded`` are the chunks' tokens (None for the MLP) laid out by
    ``layout`` = (positions, vocabulary, end token or None); with ``codebooks`` (n, V), each
    position's ordered codewords, two-hot targets of the chunks' values as well."""
    x = torch.from_numpy(normalizer.obs(obs)[:, None]).to(device)
    if encoded is None:
        z = (chunks - normalizer.act_mean) / normalizer.act_std
        return ChunkData(x, actions=torch.from_numpy(z.reshape(len(z), -1).astype(np.float32))
                         .to(device))
    n, vocab, end = layout
    if end is None:
        tokens = torch.from_numpy(np.asarray(encoded, np.int64)).to(device)
        if codebooks is None:
            return ChunkData(x, tokens=tokens)
        lo, hi, w = two_hot_parts(codebooks, chunks.reshape(len(chunks), -1))
        return ChunkData(x, tokens=tokens, vocab=vocab, two_hot=(
            torch.from_numpy(lo).to(device), torch.from_numpy(hi).to(device),
            torch.from_numpy(w.astype(np.float32)).to(device)))
    tokens, mask = pad_sequences(encoded, n, end)
    return ChunkData(x, tokens=torch.from_numpy(tokens).to(device),
                     mask=torch.from_numpy(mask).to(device))


def prepare_chunk_data(cfg: ChunkTrainConfig, demos: Any, device: torch.device):
    """Split by episodes, cut chunks, fit the normaliser (per step) and the chunk tokenizer on
    the training split; with the ordered head on a tokenizer of ordered bins, the token targets
    are two-hot (each value split between its two neighbouring codewords), as in ``qbc
    train``. Returns (tokenizer or None, normalizer, longest token sequence or None,
    train ChunkData, val ChunkData or None)."""
    train_demos, val_demos = split_demos(demos, cfg.val_fraction, cfg.seed)
    parts = [chunk_rows(train_demos, cfg.chunk_k)]
    if val_demos is not None and len(val_demos) > 0:
        parts.append(chunk_rows(val_demos, cfg.chunk_k))
    normalizer = Normalizer.fit(train_demos.observations, train_demos.actions)
    tokenizer = layout = max_len = codebooks = None
    encoded: list[Any] = [None] * len(parts)
    if POLICY_KINDS.meta(cfg.policy)["tokens"]:
        tokenizer = make_chunk_tokenizer(cfg.chunk_tokenizer, **tokenizer_params(cfg))
        tokenizer.fit(parts[0][1])
        encoded = [tokenizer.encode(chunks) for _, chunks in parts]
        max_len = max(len(s) for enc in encoded for s in enc)
        layout = chunk_token_layout(tokenizer, max_len)
        if cfg.model.head == "ordered" and has_ordered_bins(tokenizer):
            codebooks = tokenizer.codebooks()
    data = [chunk_tensors(o, c, normalizer, e, layout, device, codebooks)
            for (o, c), e in zip(parts, encoded, strict=True)]
    for d, part in zip(data, parts, strict=True):
        d.raw = part
    return tokenizer, normalizer, max_len, data[0], (data[1] if len(data) > 1 else None)
