"""The optimiser of both trainers: AdamW, a linear warm-up then cosine learning-rate schedule,
and one optimisation step with gradient clipping (settings: :class:`~qbc.training.OptimConfig`),
also as one step of data-parallel training on a rank's share of the global batch
(:func:`sharded_step`)."""

from __future__ import annotations

import math
from typing import Any

import torch

from qbc.errors import InvalidValueError
from qbc.training.config import OptimConfig
from qbc.training.distributed import DistContext


def make_optimizer(module: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embedding tables, none on biases and norms."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def lr_factor(step: int, cfg: Any) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine down to min_lr_ratio.
    ``cfg``: an :class:`OptimConfig` with the run's total ``steps`` (an int)."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer,
                   cfg: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of :func:`lr_factor` on ``optimizer`` (``cfg`` as there)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, batch: dict[str, torch.Tensor],
               grad_clip: float) -> float:
    """One optimisation step on ``batch``; returns the loss before the update. A loss that is
    NaN or infinite (the weights or the targets diverged) raises InvalidValueError before the
    update, so a diverged run ends in one line instead of saving NaN weights."""
    module.train()
    loss = module.loss(batch)
    value = float(loss.detach())
    if not math.isfinite(value):
        lr = scheduler.get_last_lr()[0]
        raise InvalidValueError(
            f"the training loss became {value} (the weights diverged, at learning rate "
            f"{lr:.3g}); train again with a smaller --lr, a longer --warmup-steps or "
            "--grad-clip > 0")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return value


def sharded_step(ctx: DistContext, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler,
                 batch: dict[str, torch.Tensor], grad_clip: float,
                 device: torch.device | None = None) -> float:
    """:func:`train_step` on this rank's rows of the global ``batch`` (every rank draws the
    same one) with ``module`` wrapped by :meth:`DistContext.wrap`; returns the global batch's
    loss (the mean over the ranks' equal shares, on every rank). Single process: exactly
    :func:`train_step`."""
    loss = train_step(module, optimizer, scheduler, ctx.shard(batch), grad_clip)
    return ctx.mean(loss, device)
