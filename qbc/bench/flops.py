"""Analytic FLOP count of the AR transformer policy (matrix multiplies only).

For a config with observation history K, obs_dim o, n tokens per action, vocabulary V, width d,
N blocks, MLP ratio r and L = K + n - 1 positions, one sample's forward pass costs

    F = 2*K*o*d                      observation embedding (K rows of o -> d)
      + N * L * (6 + 2 + 4r) * d^2   per block: qkv (d -> 3d), attention output (d -> d),
                                     MLP (d -> r*d -> d); 2 FLOPs per multiply-add
      + N * 4 * L^2 * d              per block: scores Q K^T and the weighted sum A V over all
                                     L x L pairs (what a dense kernel computes; causal masking
                                     makes half of them unused)
      + 2 * n * d * V                output heads (one d -> V head per token position)

Token and position embeddings are table look-ups (0 FLOPs); layer norms, softmax, GELU, residual
adds and the loss are not counted. A training step costs 3F per sample (backward ~ 2x forward).
These are the model's FLOPs, not the hardware's: small models compute attention over all
(position, head) rows of a sample at once (qbc.policy.ar_transformer), n_heads times the score
FLOPs above with the cross-head part masked away; that extra work is not counted.
"""

from __future__ import annotations

from typing import Any

from qbc.policy.ar_transformer import ARTransformerConfig


def forward_flops(cfg: ARTransformerConfig) -> dict[str, int]:
    """FLOPs of one sample's teacher-forced forward pass, by part, and their ``total``."""
    K, o, n, V = cfg.obs_history, cfg.obs_dim, cfg.n_tokens, cfg.vocab_size
    d, N, r, L = cfg.d_model, cfg.n_layers, cfg.mlp_ratio, cfg.seq_len
    parts = {
        "obs_embed": 2 * K * o * d,
        "attn_proj": N * L * 8 * d * d,
        "mlp": N * L * 4 * r * d * d,
        "attn_scores": N * 4 * L * L * d,
        "head": 2 * n * d * V,
    }
    parts["total"] = sum(parts.values())
    return parts


def train_flops_per_sample(cfg: ARTransformerConfig) -> int:
    """FLOPs of one training sample: forward + backward = 3 x forward."""
    return 3 * forward_flops(cfg)["total"]


def comparable_matmul(cfg: ARTransformerConfig, batch: int) -> tuple[int, int, int]:
    """(M, K, N) of the model's largest matrix multiply in a training batch: the MLP's first
    layer, (batch * L, d) @ (d, r * d)."""
    return batch * cfg.seq_len, cfg.d_model, cfg.mlp_ratio * cfg.d_model


def describe(cfg: ARTransformerConfig) -> dict[str, Any]:
    """The FLOP counts and the formula's inputs, for the JSON report."""
    return {"forward_per_sample": forward_flops(cfg),
            "train_per_sample": train_flops_per_sample(cfg),
            "positions": cfg.seq_len, "d_model": cfg.d_model, "n_layers": cfg.n_layers,
            "mlp_ratio": cfg.mlp_ratio, "vocab_size": cfg.vocab_size, "n_tokens": cfg.n_tokens}
