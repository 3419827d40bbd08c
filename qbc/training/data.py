"""Demonstrations as training tensors: the train/validation split by episodes, observation
histories, normalised actions, tokens and loss batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qbc.data.demonstrations import history_index
from qbc.policy import Normalizer, needs_tokenizer
from qbc.quantizers import quantile_params
from qbc.tokenizer import ActionTokenizer

if TYPE_CHECKING:  # annotations only: config.py imports evaluation.py, which imports this module
    from qbc.training.config import TrainConfig


def split_demos(demos: Any, val_fraction: float, seed: int) -> tuple[Any, Any | None]:
    """(training, validation or None): whole episodes held out by ``demos.split(val_fraction,
    seed)``; no validation split with ``val_fraction`` 0 or fewer than two episodes. The one
    split rule of the policy, its transition model and chunk training."""
    if val_fraction > 0 and len(np.unique(demos.episode_ids)) >= 2:
        return demos.split(val_fraction, seed)
    return demos, None


@dataclass
class SplitTensors:
    """One split, ready for batching: normalised observation histories, actions, tokens."""

    obs: torch.Tensor
    """(N, K, obs_dim) float32, normalised; rows before an episode's start repeat its first."""
    actions: torch.Tensor
    """(N, D) float32, normalised."""
    raw_actions: np.ndarray
    """(N, D) float32 in action units (for sampled / soft tokens)."""
    tokens: torch.Tensor | None
    """(N, n_tokens) int64 deterministic tokens (token policies)."""

    def __len__(self) -> int:
        return len(self.obs)


def split_tensors(demos: Any, normalizer: Normalizer, tokenizer: ActionTokenizer | None,
                  k: int, device: torch.device) -> SplitTensors:
    """The tensors of one split: histories of ``k`` observations, actions, tokens."""
    obs = normalizer.obs(np.asarray(demos.observations, dtype=np.float32))
    obs = obs[history_index(np.asarray(demos.episode_ids), k)]
    raw = np.asarray(demos.actions, dtype=np.float32)
    acts = (raw - normalizer.act_mean) / normalizer.act_std
    tokens = None if tokenizer is None else torch.from_numpy(tokenizer.encode(raw)).to(device)
    return SplitTensors(torch.from_numpy(obs).to(device),
                        torch.from_numpy(acts.astype(np.float32)).to(device), raw, tokens)


def fit_tokenizer(cfg: TrainConfig, actions: np.ndarray) -> ActionTokenizer:
    """The ActionTokenizer of ``cfg`` fitted on (training) actions (N, D)."""
    params = quantile_params(cfg.quantizer, cfg.quantile, cfg.range_margin)
    return ActionTokenizer(cfg.quantizer, cfg.bins, cfg.per_dim, params).fit(actions)


def prepare_data(cfg: TrainConfig, train_demos: Any, val_demos: Any | None,
                 device: torch.device, tokenizer: ActionTokenizer | None = None,
                 normalizer: Normalizer | None = None):
    """Fit (or reuse) the tokenizer and normaliser on the training split; tensors of both splits.

    Returns (tokenizer or None, normalizer, train SplitTensors, val SplitTensors or None)."""
    if needs_tokenizer(cfg.policy) and tokenizer is None:
        tokenizer = fit_tokenizer(cfg, train_demos.actions)
    if not needs_tokenizer(cfg.policy):
        tokenizer = None
    if normalizer is None:
        normalizer = Normalizer.fit(train_demos.observations, train_demos.actions)
    k = cfg.model.obs_history
    train_t = split_tensors(train_demos, normalizer, tokenizer, k, device)
    val_t = None
    if val_demos is not None and len(val_demos) > 0:
        val_t = split_tensors(val_demos, normalizer, tokenizer, k, device)
    return tokenizer, normalizer, train_t, val_t


def two_hot_targets(tokenizer: ActionTokenizer, actions: np.ndarray) -> np.ndarray:
    """Two-hot targets (N, D, V) for actions (N, D) of a per-dimension tokenizer: each value's
    probability split between the two codewords around it in proportion to its nearness, so
    the target's mean codeword is the value (clipped to the outer codewords) and its argmax the
    nearest codeword (the token of nearest-codeword quantizers such as uniform, kmeans and
    lloyd_max). Smooth binning's own targets are of this form ("Stop Regressing",
    Farebrother et al. 2024, calls them two-hot)."""
    code = tokenizer.codebooks()
    lo, hi, w = two_hot_parts(code, actions)
    n, dims = lo.shape
    out = np.zeros((n, dims, code.shape[1]), np.float32)
    rows, cols = np.arange(n)[:, None], np.arange(dims)[None, :]
    out[rows, cols, lo] += (1.0 - w).astype(np.float32)
    out[rows, cols, hi] += w.astype(np.float32)
    return out


def two_hot_parts(codebooks: np.ndarray, values: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two-hot targets of :func:`two_hot_targets` in compact form: for values (N, D) and
    codebooks (D, V) (any order), the codeword ids below and above each value, lo and hi
    (N, D) int64, and the weight w (N, D) float64 of hi (1 - w goes to lo; lo == hi with
    w = 0 only for a one-codeword book)."""
    code = np.asarray(codebooks, np.float64)
    x = np.asarray(values, np.float64)
    lo_ids = np.zeros(x.shape, np.int64)
    hi_ids = np.zeros(x.shape, np.int64)
    weight = np.zeros(x.shape, np.float64)
    for d in range(x.shape[1]):
        order = np.argsort(code[d], kind="stable")
        c = code[d][order]
        v = np.clip(x[:, d], c[0], c[-1])
        hi = np.clip(np.searchsorted(c, v, side="right"), 1, max(len(c) - 1, 1))
        lo = np.maximum(hi - 1, 0)
        hi = np.minimum(hi, len(c) - 1)
        gap = c[hi] - c[lo]
        weight[:, d] = np.where(gap > 0, (v - c[lo]) / np.where(gap > 0, gap, 1.0), 0.0)
        lo_ids[:, d], hi_ids[:, d] = order[lo], order[hi]
    return lo_ids, hi_ids, weight


def gauss_targets(tokenizer: ActionTokenizer, actions: np.ndarray, sigma: float) -> np.ndarray:
    """Histogram targets (N, D, V) for actions (N, D): each dimension's codewords weighted by
    a Gaussian around the action with std ``sigma`` x that dimension's mean codeword spacing,
    normalised (HL-Gauss, Farebrother et al. 2024). Their argmax is the nearest codeword, so
    the floor of argmax decoding is unchanged; neighbouring bins share the probability."""
    code = tokenizer.codebooks().astype(np.float64)  # (D, V)
    width = (code.max(1) - code.min(1)) / max(code.shape[1] - 1, 1)
    d2 = (code[None] - np.asarray(actions, np.float64)[:, :, None]) ** 2
    excess = d2 - d2.min(-1, keepdims=True)  # >= 0; 0 at the nearest codeword: stable far away
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        scale2 = (sigma * np.maximum(width, 1e-12)) ** 2  # (D,); 0 or inf for extreme sigmas
        # a sigma so small that scale2 underflows gives the one-hot target, not 0/0
        e = np.where(excess > 0, excess / (2.0 * scale2[None, :, None]), 0.0)
    w = np.exp(-e)
    return (w / w.sum(-1, keepdims=True)).astype(np.float32)


def make_batch(data: SplitTensors, idx: torch.Tensor, tokenizer: ActionTokenizer | None,
               token_target: str, rng: np.random.Generator | None,
               target_sigma: float = 0.0) -> dict[str, torch.Tensor]:
    """The rows ``idx`` as a loss batch: obs, actions and (token policies) tokens and, where the
    targets are not the tokens themselves, ``soft`` target distributions (B, n_tokens, V).

    The tokens are the conditioning prefix (and the targets without ``soft``): drawn by
    stochastic rounding from ``rng`` for a stochastic tokenizer, the deterministic ones
    otherwise. ``token_target`` (``--token-target``) picks ``soft`` for a per-dimension
    tokenizer: 'two-hot' (:func:`two_hot_targets`, smooth binning's own for a stochastic one:
    position i is then scored on its expected log-loss given a sampled prefix), 'one-hot'
    (none), and the earlier names 'soft' (two-hot for a stochastic tokenizer, none otherwise)
    and 'sampled' (none). ``target_sigma`` > 0 with a deterministic per-dimension tokenizer
    gives Gaussian histogram targets (:func:`gauss_targets`) instead. Joint tokens: none."""
    batch = {"obs": data.obs[idx], "actions": data.actions[idx]}
    if tokenizer is None:
        return batch
    dev = data.obs.device
    if tokenizer.stochastic and rng is not None:
        raw = data.raw_actions[idx.cpu().numpy()]
        batch["tokens"] = torch.from_numpy(tokenizer.encode(raw, rng=rng)).to(dev)
        soft = tokenizer.soft_targets(raw) if token_target in ("two-hot", "soft") else None
    else:
        batch["tokens"] = data.tokens[idx]
        two_hot = token_target == "two-hot"
        soft = None
        if not (tokenizer.stochastic or tokenizer.is_joint) and (target_sigma > 0 or two_hot):
            raw = data.raw_actions[idx.cpu().numpy()]
            soft = (gauss_targets(tokenizer, raw, target_sigma) if target_sigma > 0
                    else two_hot_targets(tokenizer, raw))
    if soft is not None:
        batch["soft"] = torch.from_numpy(soft).to(dev)
    return batch
