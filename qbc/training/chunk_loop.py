"""The loop of ``qbc train-chunked`` (:func:`qbc.training.chunked.train_chunked`): set-up (new,
or resumed from ``last/``), steps on batches of chunks, evaluations, checkpoints (``best/`` by
the decoded action error, ``last/``) and early stopping.

Under torchrun every rank runs it with ``qbc train``'s data-parallel pieces
(:mod:`qbc.training.distributed`): every rank draws the same global batch and steps on its share
of it (:func:`~qbc.training.optim.sharded_step`, the module wrapped by
:meth:`~qbc.training.distributed.DistContext.wrap`); rank 0 alone evaluates (its record and
selection shared with every rank, so that all stop at the same step) and writes the run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.errors import InvalidValueError
from qbc.infra.files import atomic_write_json, read_json
from qbc.infra.progress import progress_bar
from qbc.policy import Normalizer, load_policy
from qbc.policy.chunked import ChunkPolicy, build_chunk_policy
from qbc.policy.loading import save_checkpoint
from qbc.training.checkpoint import (
    check_resume_config,
    read_metrics,
    restore_progress,
    save_last,
    write_metrics,
)
from qbc.training.chunk_select import chunk_action_error, chunk_val_loss, select_by_action_error
from qbc.training.config import MIN_AUTO_STEPS
from qbc.training.distributed import DistContext
from qbc.training.evaluation import should_stop
from qbc.training.optim import make_optimizer, make_scheduler, sharded_step
from qbc.training.run_log import RunLog, record_scalars


@dataclass
class ChunkRun:
    """The parts one chunk run's loop works with (fixed once the loop starts)."""

    cfg: Any
    """the run's :class:`~qbc.training.chunked.ChunkTrainConfig`, budget resolved, ``out`` the
    folder being written."""
    ctx: DistContext
    device: torch.device
    conf: dict[str, Any]
    """the settings as stored in the checkpoints (with 'dataset_sha256')."""
    module: torch.nn.Module
    trained: torch.nn.Module
    """``module``, wrapped for data-parallel training under torchrun."""
    data: tuple
    """(tokenizer, normalizer, max_len, train split, val split or None) of
    :func:`~qbc.training.chunk_data.prepare_chunk_data`."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    """draws the rows of every batch (the same on every rank)."""
    policy: ChunkPolicy
    """``module`` as a policy: what validation decodes."""
    log: RunLog
    env_id: str | None


def fit_chunks(cfg: Any, demos: Any, device: torch.device, ctx: DistContext, data: tuple,
               conf: dict[str, Any], resuming: bool, log: RunLog, stop_at: int | None,
               budget: dict[str, Any]) -> dict[str, Any]:
    """Train into ``cfg.out`` (the claimed folder) on the chunks ``data``; the summary numbers
    of :func:`~qbc.training.chunked.train_chunked` (every rank returns the same)."""
    r, start, best, metrics = _set_up(cfg, demos, device, ctx, data, conf, resuming, log)
    train_d, val_d = data[3], data[4]
    earliest = MIN_AUTO_STEPS if budget["from"] == "--epochs" else 0
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    losses: list[float] = []
    stopped_early, t0, step = False, time.perf_counter(), start
    bar = progress_bar(total=cfg.steps, initial=start, desc=f"train {cfg.policy}", unit="step",
                       disable=not (cfg.progress and ctx.is_main))
    for step in range(start + 1, end + 1):
        idx = torch.randint(len(train_d), (cfg.batch_size,), generator=r.gen).to(device)
        losses.append(sharded_step(ctx, r.trained, r.optimizer, r.scheduler,
                                   train_d.batch(idx), cfg.grad_clip, device))
        bar.update(1)
        if step % 10 == 0:
            log.scalars({"train/loss": losses[-1], "train/lr": r.scheduler.get_last_lr()[0]},
                        step)
        if step % cfg.eval_interval and step != end:
            continue
        best = _evaluate(r, step, losses, best, metrics)
        losses = []
        if val_d is not None and should_stop(best, step, cfg, earliest):
            stopped_early = True
            break
    bar.close()
    return _summary(cfg, step, step - start, time.perf_counter() - t0, best, metrics,
                    len(train_d), budget, stopped_early)


def _set_up(cfg: Any, demos: Any, device: torch.device, ctx: DistContext, data: tuple,
            conf: dict[str, Any], resuming: bool, log: RunLog
            ) -> tuple[ChunkRun, int, dict[str, Any], list[dict[str, Any]]]:
    """The run's parts (the module new, or from ``last/`` with the optimiser, schedule and
    generators put back), the step it starts after, its selection state and earlier records;
    then the module is wrapped and rank 0 writes ``train_config.json``."""
    tokenizer, normalizer, max_len, train_d, _ = data
    stored = None
    if resuming:  # every rank reads out/last before rank 0 may rewrite it (wrap() syncs)
        module, stored = _resume_parts(cfg.out, conf, tokenizer, normalizer)
    else:
        module = build_chunk_policy(cfg.policy, cfg.model, int(train_d.obs.shape[-1]),
                                    len(normalizer.act_mean), cfg.chunk_k, tokenizer, max_len)
    module.to(device)
    optimizer = make_optimizer(module, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, best, metrics = 0, {"step": 0, "val_action_rmse": None, "val_loss": None}, []
    if stored is not None:
        start, best = restore_progress(cfg.out, stored, optimizer, scheduler, gen, None,
                                       steps=cfg.steps)
        metrics = read_metrics(cfg.out / "metrics.jsonl", upto=start)
    ctx.decorrelate_rng(cfg.seed, start)
    trained = ctx.wrap(module, device)
    if ctx.is_main:
        atomic_write_json(cfg.out / "train_config.json", {
            **conf, "resolved_device": str(device), "world_size": ctx.world_size})
    policy = ChunkPolicy(module, normalizer, tokenizer, device=device)
    return (ChunkRun(cfg, ctx, device, conf, module, trained, data, optimizer, scheduler, gen,
                     policy, log, getattr(demos, "env_id", None)), start, best, metrics)


def _resume_parts(out: Path, conf: dict[str, Any], tokenizer: Any, normalizer: Normalizer
                  ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The module and trainer state of ``out/last`` to continue with settings ``conf``: refused
    (one line) when the settings or the data differ, or when the tokenizer and normaliser
    refitted on the same data are not those the run was trained with."""
    last = out / "last"
    stored = read_json(last / "config.json", what="checkpoint config")
    check_resume_config((stored.get("train") if isinstance(stored, dict) else None) or {}, conf)
    policy = load_policy(last)
    same = policy.normalizer.to_dict() == normalizer.to_dict() and (
        (tokenizer is None and policy.chunk_tokenizer is None)
        or (tokenizer is not None and policy.chunk_tokenizer is not None
            and policy.chunk_tokenizer.state_dict() == tokenizer.state_dict()))
    if not same:
        raise InvalidValueError(f"--resume: the chunk tokenizer or normaliser in {last} differs "
                                "from the one fitted on this data; resume with the same data "
                                "and settings, or start a new run in another --out")
    return policy.module, read_json(last / "trainer_state.json", what="trainer state")


def _evaluate(r: ChunkRun, step: int, losses: list[float], best: dict[str, Any],
              metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation at ``step`` (rank 0 validates, saves a better ``best/`` and shares its
    record and selection; every rank appends the record); rank 0 writes metrics.jsonl and
    ``last/``. Returns the selection state after it."""
    tokenizer, normalizer, _, _, val_d = r.data
    lr = r.scheduler.get_last_lr()[0]

    def validate() -> tuple[dict[str, Any], dict[str, Any]]:
        record, selected, improved = _eval_record(step, losses, lr, r.module, r.policy, val_d,
                                                  best)
        if improved:
            save_checkpoint(r.cfg.out / "best", r.module, normalizer, tokenizer, r.conf,
                            r.env_id)
        return record, selected

    record, best = r.ctx.main_first(validate)
    metrics.append(record)
    r.log.scalars(record_scalars(record, "eval"), step)
    if r.ctx.is_main:
        write_metrics(r.cfg.out / "metrics.jsonl", metrics)
        save_last(r.cfg.out, r.module, normalizer, tokenizer, r.optimizer, r.scheduler, step,
                  r.gen, None, best, r.conf, r.env_id)
    return best


def _eval_record(step: int, losses: list[float], lr: float, module: torch.nn.Module,
                 policy: ChunkPolicy, val_d: Any, best: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """The evaluation at ``step``: its record (mean training ``losses`` since the last one,
    ``lr``; with ``val_d``, the validation loss and decoded action error), the selection state
    after it and whether this step's checkpoint becomes best/ (always, with no validation)."""
    record = {"step": step, "train_loss": float(np.mean(losses)), "lr": lr}
    if val_d is not None:
        record["val_loss"] = chunk_val_loss(module, val_d)
        record.update(chunk_action_error(policy, *val_d.raw))
        best, improved = select_by_action_error(best, record, step)
    else:
        best, improved = {"step": step, "val_action_rmse": None, "val_loss": None}, True
    return record, best, improved


def _summary(cfg: Any, step: int, done: int, seconds: float, best: dict[str, Any],
             metrics: list[dict[str, Any]], rows: int, budget: dict[str, Any],
             stopped_early: bool) -> dict[str, Any]:
    """The run's numbers: it ended at ``step`` after ``done`` steps of its own (a resumed run's
    earlier ones not counted) in ``seconds``, on ``rows`` training rows."""
    return {"steps": step, "best_step": best["step"], "best_val_loss": best.get("val_loss"),
            "best_val_action_rmse": best.get("val_action_rmse"),
            "final_train_loss": metrics[-1]["train_loss"] if metrics else float("nan"),
            "train_rows": rows,
            "train_samples_per_s": cfg.batch_size * done / seconds if done else 0.0,
            "budget": {**budget, "steps": cfg.steps, "patience": cfg.patience,
                       "stopped_early": stopped_early, "select_by": "val-action-error"}}
