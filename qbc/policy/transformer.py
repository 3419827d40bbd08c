"""The transformer's parts (nanoGPT-sized): causal self-attention with a key/value cache, the
MLP and the pre-norm block, as used by :mod:`qbc.policy.ar_transformer`.

Speed: these policies are small (a handful of positions and heads), where the per-(sample, head)
overhead of a fused attention kernel dominates. When positions x heads is small, attention
therefore runs as two batched matmuls per sample over all (position, head) rows at once, with a
mask that keeps each head to itself and to earlier positions (the same function; ``qbc bench``
measures the difference). Larger models use ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from qbc.policy.ar_transformer import ARTransformerConfig

#: Per layer: (keys, values), each (B, n_heads, positions so far, head_dim), or, on the
#: small-model path, (B, positions so far * n_heads, head_dim) with row = position * n_heads + head.
KVCache = list[tuple[torch.Tensor, torch.Tensor]]

#: Largest positions x heads for which attention runs as masked batched matmuls over all
#: (position, head) rows of a sample (cost grows with its square); above it, fused SDPA.
SMALL_ATTENTION_ROWS = 64

# torch's registries of global module hooks (dicts, filled in place by register_module_*_hook).
_global_hooks = [getattr(torch.nn.modules.module, name, None) for name in (
    "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
    "_global_backward_pre_hooks")]


def run(module: nn.Module, *args):
    """``module(*args)``, going straight to ``module.forward`` when no hook is registered on the
    module or globally, which is all ``nn.Module.__call__`` would do then too, minus its frames
    (about 1.5 us a call; decoding one action at batch 1 makes about 80 such calls)."""
    if (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
            or module._backward_pre_hooks or any(_global_hooks)):
        return module(*args)
    return module.forward(*args)


def maybe_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout, skipped outright when it is the identity (saves a call per use)."""
    return F.dropout(x, p, training) if training and p > 0 else x


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional key/value cache."""

    def __init__(self, cfg: ARTransformerConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout
        self.small = cfg.seq_len * cfg.n_heads <= SMALL_ATTENTION_ROWS
        self._masks: dict[tuple, torch.Tensor] = {}

    def _mask(self, past: int, new: int, like: torch.Tensor) -> torch.Tensor:
        """Additive mask (new*h, (past+new)*h): 0 where row (l, head j) may see key (m, head j),
        i.e. same head and m <= past + l; -inf elsewhere. Cached per shape, device and dtype."""
        key = (past, new, like.device, like.dtype)
        if key not in self._masks:
            h = self.n_heads
            with torch.inference_mode(False):  # an ordinary tensor even when made while decoding
                r = torch.arange(new * h, device=like.device)[:, None]
                c = torch.arange((past + new) * h, device=like.device)[None, :]
                ok = (r % h == c % h) & (c // h <= past + r // h)
                self._masks[key] = torch.zeros(ok.shape, dtype=like.dtype, device=like.device
                                               ).masked_fill_(~ok, float("-inf"))
        return self._masks[key]

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, L, d_model) -> (y (B, L, d_model), (keys, values) including the past ones).

        Without ``past`` the L positions attend causally among themselves; with ``past`` only a
        single new position (L = 1) is allowed, and it attends to every cached position."""
        B, L, C = x.shape
        h, dh = self.n_heads, C // self.n_heads
        if past is not None and L != 1:
            raise ValueError("a cached step takes exactly one new position")
        q, k, v = run(self.qkv, x).chunk(3, dim=2)  # chunk: a C method; split is a Python wrapper
        if self.small and not (self.training and self.dropout > 0):
            # rows (position, head) of the whole sample at once: (B, L*h, dh)
            q, k, v = (t.reshape(B, L * h, dh) for t in (q, k, v))
            if past is not None:
                k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
            mask = self._mask(k.shape[1] // h - L, L, q)
            scores = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=dh ** -0.5)
            y = torch.bmm(scores.softmax(-1), v).view(B, L, C)
            return run(self.proj, y), (k, v)
        q, k, v = (t.view(B, L, h, dh).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=past is None and L > 1,
            dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, L, C)
        return maybe_dropout(run(self.proj, y), self.dropout, self.training), (k, v)


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear -> GELU -> Linear."""

    def __init__(self, cfg: ARTransformerConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return maybe_dropout(run(self.proj, F.gelu(run(self.fc, x))), self.dropout, self.training)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ARTransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = run(self.attn, run(self.ln1, x), past)
        x = x + a
        return x + run(self.mlp, run(self.ln2, x)), kv
