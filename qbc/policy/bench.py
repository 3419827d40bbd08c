"""Speed of the AR transformer policy: training samples/s and decoding actions/s with and
without the KV cache, measured side by side in one process (ratios, not absolute claims)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qbc.policy.registry import ModelConfig, build_policy
from qbc.tokenizer import ActionTokenizer


@dataclass
class PolicyBenchConfig:
    """Benchmark the AR transformer policy on synthetic data."""

    act_dim: int = 4
    """action dimensions D (tokens per action)."""
    obs_dim: int = 8
    """observation length."""
    bins: int = 64
    """vocabulary size per token."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings (the defaults of qbc train)."""
    train_batch: int = 256
    """batch size of the training steps."""
    train_steps: int = 50
    """timed training steps (after 5 warm-up steps)."""
    decode_batch: int = 1024
    """observations decoded per call."""
    decode_repeats: int = 20
    """timed decode calls per variant (interleaved; the median is reported)."""
    threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    device: str = "cpu"
    """torch device."""
    seed: int = 0
    """seed of the synthetic data and the weights."""


def bench_policy(cfg: PolicyBenchConfig) -> dict[str, Any]:
    """Returns train_samples_per_s, decode_actions_per_s_{cache,no_cache} and cache_speedup."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    tok = ActionTokenizer.fit(rng.uniform(-1, 1, size=(4096, cfg.act_dim)), quantizer="uniform",
                              n_bins=cfg.bins)
    torch.manual_seed(cfg.seed)
    module = build_policy("ar-transformer", cfg.model, cfg.obs_dim, cfg.act_dim, tok).to(dev)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(cfg.seed)
    K = cfg.model.obs_history

    def batch(n):
        return {"obs": torch.randn(n, K, cfg.obs_dim, generator=g).to(dev),
                "tokens": torch.randint(cfg.bins, (n, tok.n_tokens), generator=g).to(dev)}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    module.train()
    batches = [batch(cfg.train_batch) for _ in range(cfg.train_steps + 5)]
    for i, b in enumerate(batches):
        if i == 5:
            sync()
            t0 = time.perf_counter()
        loss = module.loss(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    train_rate = cfg.train_batch * cfg.train_steps / (time.perf_counter() - t0)

    module.eval()
    obs = batch(cfg.decode_batch)["obs"]
    times: dict[bool, list[float]] = {True: [], False: []}
    for use_cache in (True, False):  # warm-up
        module.decode(obs, use_cache=use_cache)
    for _ in range(cfg.decode_repeats):
        for use_cache in (True, False):
            sync()
            t = time.perf_counter()
            module.decode(obs, use_cache=use_cache)
            sync()
            times[use_cache].append(time.perf_counter() - t)
    cached = cfg.decode_batch / float(np.median(times[True]))
    uncached = cfg.decode_batch / float(np.median(times[False]))
    return {"device": str(dev), "threads": torch.get_num_threads(), "act_dim": cfg.act_dim,
            "bins": cfg.bins, "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers,
            "train_batch": cfg.train_batch, "train_samples_per_s": train_rate,
            "decode_batch": cfg.decode_batch, "decode_actions_per_s_cache": cached,
            "decode_actions_per_s_no_cache": uncached, "cache_speedup": cached / uncached}


def format_bench(r: dict[str, Any]) -> str:
    return "\n".join([
        f"AR transformer, D={r['act_dim']}, vocab {r['bins']}, d_model {r['d_model']}, "
        f"{r['n_layers']} layers, {r['device']} ({r['threads']} threads)",
        f"  training:  {r['train_samples_per_s']:,.0f} samples/s (batch {r['train_batch']})",
        f"  decoding:  {r['decode_actions_per_s_cache']:,.0f} actions/s with KV cache, "
        f"{r['decode_actions_per_s_no_cache']:,.0f} without (batch {r['decode_batch']}): "
        f"cache speed-up {r['cache_speedup']:.2f}x"])
