"""The training loop of ``qbc train``: :func:`train` claims the run folder, sets up the model,
data and optimiser (new, warm-started or resumed from ``last/``), then steps, evaluates and
checkpoints every ``eval_interval`` steps until the budget or early stopping ends it.

Under torchrun every rank runs the loop on its slice of the same global batch (see
:mod:`qbc.training`); rank 0 alone evaluates, writes the run folder and logs the curves.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.data import demos_sha256
from qbc.infra.environ import scoped_torch_rng
from qbc.infra.files import atomic_write_json
from qbc.infra.progress import progress_bar
from qbc.policy import Normalizer, Policy, build_policy, load_policy, needs_tokenizer
from qbc.policy.loading import save_checkpoint
from qbc.quantizers import get_quantizer_class
from qbc.ste import anneal_step, quantize_linear_layers
from qbc.tokenizer import ActionTokenizer
from qbc.training import config as train_config
from qbc.training.averaging import WeightAverage
from qbc.training.checkpoint import (
    ClaimedRun,
    claimed_run,
    load_last,
    read_metrics,
    restore_progress,
    run_identity,
    save_last,
    write_metrics,
)
from qbc.training.config import TrainConfig, config_dict, resolve_budget
from qbc.training.data import SplitTensors, make_batch, prepare_data, split_demos
from qbc.training.distributed import DistContext
from qbc.training.evaluation import (
    evaluate_split,
    selection_plan,
    selection_return,
    should_stop,
    update_best,
)
from qbc.training.optim import make_optimizer, make_scheduler, sharded_step
from qbc.training.run_log import RunLog, record_scalars


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    out: Path
    step: int
    best_step: int
    best_val_loss: float | None
    final_train_loss: float
    samples_per_s: float
    metrics: list[dict[str, Any]]
    policy: Policy
    """the best checkpoint's policy (the last one when there is no validation split)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """wall seconds of this process's loop: 'train' (optimisation; samples_per_s counts only
    this), 'validation' and 'checkpoints'."""
    budget: dict[str, Any] = field(default_factory=dict)
    """the step budget: 'steps' (resolved), 'from' ('--steps' or '--epochs'), 'epochs',
    'patience', 'stopped_early', 'select_by'."""


def train(cfg: TrainConfig, demos: Any, stop_at: int | None = None,
          init: Policy | None = None, run_log: RunLog | None = None,
          into: Path | None = None, tokenizer: ActionTokenizer | None = None) -> TrainResult:
    """Train ``cfg.policy`` on ``demos`` (a :class:`qbc.data.Demonstrations` or any object with
    observations (N, obs_dim), actions (N, D), episode_ids (N,) and ``split(val_fraction, seed)``).

    ``stop_at`` ends the run after that step as if it were interrupted (``last/`` is saved, the
    schedule still aims at ``cfg.steps``); a later ``resume=True`` run continues it.

    ``init`` warm-starts a new run from a trained policy of the same kind: its weights, tokenizer
    and normaliser are kept (not refitted), the optimiser and schedule start afresh (DAgger's
    ``--init warm``). A resumed run ignores it.

    ``run_log`` receives the curves (TensorBoard / W&B); without one, the run opens and closes
    its own as ``cfg.tensorboard`` / ``cfg.wandb`` ask.

    ``into`` writes a new run into that folder (missing or empty) instead of ``cfg.out``; the
    stored configs still name ``cfg.out``, where the caller moves the folder afterwards.

    ``tokenizer`` (a fitted per-step tokenizer) is used as it is instead of fitting one on
    ``demos`` (DAgger keeps round 0's, fitted on the expert's own demonstrations, in every
    round); ``init``'s tokenizer takes precedence, a resumed run keeps its own.

    Under torchrun every rank calls this with the same arguments (see :mod:`qbc.training`).
    torch's global random state is the same afterwards as before (the run seeds its own).
    """
    with scoped_torch_rng(), claimed_run(cfg, demos, run_log, into) as claimed:
        return train_in(cfg, demos, claimed, stop_at, init, tokenizer)


# -- the state of a run ----------------------------------------------------------------------------
@dataclass
class Trainer:
    """The parts one run's loop works with (fixed once the loop starts)."""

    cfg: TrainConfig
    """the run's settings, the budget resolved and ``out`` the folder being written."""
    ctx: DistContext
    device: torch.device
    conf: dict[str, Any]
    """the settings as stored in the checkpoints (with 'dataset_sha256' and 'run_id')."""
    module: torch.nn.Module
    trained: torch.nn.Module
    """``module``, wrapped for data-parallel training under torchrun (once ``last/`` is read)."""
    tokenizer: ActionTokenizer | None
    normalizer: Normalizer
    train_t: SplitTensors
    val_t: SplitTensors | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch_gen: torch.Generator
    """draws the rows of every batch."""
    np_rng: np.random.Generator | None
    """stochastic tokenizers: draws the stochastically rounded tokens."""
    average: WeightAverage | None = None
    """with --ema-decay: the average of the weights, which is evaluated and saved as best/."""
    env_id: str | None = None
    selection: dict[str, Any] | None = None
    """with --select-by rollout: :func:`~qbc.training.evaluation.selection_plan`."""
    run_log: RunLog | None = None
    earliest_stop: int = 0
    """no early stopping before this step (a budget from --epochs always trains its minimum:
    the validation loss of a small dataset often plateaus for thousands of steps and then
    drops again as the cosine schedule lowers the learning rate)."""


class Clock:
    """Wall seconds of the loop, with the time spent in validation and checkpoints kept apart,
    so that samples/s measures training alone."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds = {"eval_s": 0.0, "checkpoint_s": 0.0}

    def timed(self, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, adding its wall time in seconds to ``self.seconds[key]``."""
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[key] += time.perf_counter() - t

    def elapsed(self) -> float:
        """Wall seconds since the loop started."""
        return time.perf_counter() - self.t0

    def train_seconds(self) -> float:
        """Wall seconds since the loop started, less validation and checkpoint time."""
        return self.elapsed() - self.seconds["eval_s"] - self.seconds["checkpoint_s"]


@dataclass
class LoopState:
    """What changes from step to step."""

    start: int
    """the step the loop started after (0, or the step of a resumed ``last/``)."""
    best: dict[str, Any]
    """the selection state (:func:`~qbc.training.evaluation.update_best`)."""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    losses: list[float] = field(default_factory=list)
    """training losses since the last evaluation."""
    rate: float = 0.0
    """samples/s of training alone, as last measured."""
    stopped_early: bool = False
    clock: Clock = field(default_factory=Clock)


# -- the run ---------------------------------------------------------------------------------------
def train_in(cfg: TrainConfig, demos: Any, claimed: ClaimedRun, stop_at: int | None = None,
             init: Policy | None = None, tokenizer: ActionTokenizer | None = None) -> TrainResult:
    """:func:`train` in the run folder of :func:`claimed_run` (resuming its ``last/`` or not)."""
    device, ctx, work, resuming = claimed.device, claimed.ctx, claimed.work, claimed.resuming
    ctx.shard_bounds(cfg.batch_size)  # refuse a global batch the ranks cannot share equally
    train_demos, val_demos = split_demos(demos, cfg.val_fraction, cfg.seed)
    budget = {"from": "--steps" if cfg.steps is not None else "--epochs", "epochs": cfg.epochs}
    cfg = _resolve_head(resolve_budget(cfg, len(train_demos)), demos)

    conf = {**config_dict(cfg), "dataset_sha256": demos_sha256(demos)}
    final_out, cfg = cfg.out, dataclasses.replace(cfg, out=work)  # outputs go to work
    # A run keeps the id drawn when it started; --resume checks that the folder's parts agree.
    conf["run_id"] = (run_identity(work) if resuming else None) or uuid.uuid4().hex
    selection = selection_plan(cfg, demos) if cfg.select_by == "rollout" else None

    torch.manual_seed(cfg.seed)
    t, stored = _set_up(cfg, (train_demos, val_demos), device, ctx, conf, resuming, init,
                        tokenizer)
    t.env_id, t.selection, t.run_log = getattr(demos, "env_id", None), selection, claimed.run_log
    t.earliest_stop = train_config.MIN_AUTO_STEPS if budget["from"] == "--epochs" else 0
    state = _first_state(t, stored)
    _loop(t, state, end=cfg.steps if stop_at is None else min(stop_at, cfg.steps))
    if t.val_t is None:  # no validation: the last checkpoint is the best we know
        if ctx.is_main:
            state.clock.timed("checkpoint_s", save_checkpoint, cfg.out / "best", evaluated(t),
                              t.normalizer, t.tokenizer, conf, t.env_id)
        state.best = {"val_loss": None, "step": state.step}
    ctx.barrier()  # every rank loads the best checkpoint rank 0 has written
    return _result(t, state, final_out, budget)


def _resolve_head(cfg: TrainConfig, demos: Any) -> TrainConfig:
    """``cfg`` with ``model.head`` 'plain' where the ordered head cannot be built, so that
    train_config.json and the checkpoints say what is trained: a joint quantizer (vq) of actions
    of more than one dimension gives one token per action vector, and its codes have no order
    (with one dimension they do: the head stays ordered)."""
    joint = needs_tokenizer(cfg.policy) and get_quantizer_class(cfg.quantizer).joint
    if cfg.model.head == "ordered" and joint and np.shape(demos.actions)[-1] > 1:
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head="plain"))
    return cfg


def _set_up(cfg: TrainConfig, splits: tuple[Any, Any | None], device: torch.device,
            ctx: DistContext, conf: dict[str, Any], resuming: bool, init: Policy | None,
            given_tokenizer: ActionTokenizer | None = None
            ) -> tuple[Trainer, dict[str, Any] | None]:
    """The model, data tensors, optimiser and generators of a run (the module from ``last/``
    when resuming, else a copy of ``init``'s, else new), and the trainer state stored in
    ``last/`` (None for a new run). Random state is drawn in this order: tokenizer, weights."""
    tokenizer = normalizer = module = None
    stored = None
    if given_tokenizer is not None and needs_tokenizer(cfg.policy):
        tokenizer = given_tokenizer
    if resuming:
        module, normalizer, tokenizer, stored = load_last(cfg.out, conf)
    elif init is not None:
        tokenizer, normalizer = init.tokenizer, init.normalizer
    tokenizer, normalizer, train_t, val_t = prepare_data(cfg, *splits, device, tokenizer,
                                                         normalizer)
    if not resuming:
        module = _new_module(cfg, train_t, tokenizer, init)
    module.to(device)
    optimizer = make_optimizer(module, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    np_rng = (np.random.default_rng(cfg.seed)
              if tokenizer is not None and tokenizer.stochastic else None)
    average = WeightAverage(module, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return Trainer(cfg, ctx, device, conf, module, module, tokenizer, normalizer, train_t, val_t,
                   optimizer, scheduler, batch_gen, np_rng, average), stored


def _first_state(t: Trainer, stored: dict[str, Any] | None) -> LoopState:
    """The loop's state at its start: step 0, or where ``last/`` left off (``stored``: its
    trainer state); then the module is wrapped for data-parallel training and rank 0 writes
    ``train_config.json``."""
    cfg = t.cfg
    start, best, metrics = 0, {"val_loss": None, "step": 0}, []
    if stored is not None:
        start, best = restore_progress(cfg.out, stored, t.optimizer, t.scheduler, t.batch_gen,
                                       t.np_rng, t.average, steps=cfg.steps)
        metrics = read_metrics(cfg.out / "metrics.jsonl", upto=start)
    t.ctx.decorrelate_rng(cfg.seed, start)
    # after every rank has read out/last: rank 0 rewrites it
    t.trained = t.ctx.wrap(t.module, t.device)
    if t.ctx.is_main:
        atomic_write_json(cfg.out / "train_config.json", {**t.conf, "resolved_device":
                          str(t.device), "world_size": t.ctx.world_size})
    return LoopState(start=start, best=best, metrics=metrics, step=start)


def _new_module(cfg: TrainConfig, train_t: SplitTensors, tokenizer: ActionTokenizer | None,
                init: Policy | None) -> torch.nn.Module:
    """A copy of ``init``'s module, else a new ``cfg.policy`` (weights quantized if asked)."""
    if init is not None:
        return copy.deepcopy(init.module)
    module = build_policy(cfg.policy, cfg.model, int(train_t.obs.shape[-1]),
                          int(train_t.actions.shape[1]), tokenizer, cfg.obs_encoder)
    if cfg.weight_quantizer:
        quantize_linear_layers(module, cfg.weight_quantizer)
    return module


# -- the loop --------------------------------------------------------------------------------------
def _loop(t: Trainer, s: LoopState, end: int) -> None:
    """Steps ``s.start + 1`` .. ``end``: an evaluation every ``eval_interval`` steps and at
    ``end``; early stopping may end it sooner."""
    cfg = t.cfg
    bar = progress_bar(total=cfg.steps, initial=s.start, desc=f"train {cfg.policy}", unit="step",
                       disable=not (cfg.progress and t.ctx.is_main), dynamic_ncols=True)
    for step in range(s.start + 1, end + 1):
        s.step = step
        _optimisation_step(t, s)
        if step % 10 == 0 or step == end:
            s.rate = cfg.batch_size * (step - s.start) / s.clock.train_seconds()
            bar.set_postfix(loss=f"{s.losses[-1]:.4f}", samples_s=f"{s.rate:.0f}")
            if t.run_log is not None:
                t.run_log.scalars({"train/loss": s.losses[-1], "train/samples_per_s": s.rate,
                                   "train/lr": t.scheduler.get_last_lr()[0]}, step)
        bar.update(1)
        if step % cfg.eval_interval == 0 or step == end:
            _evaluate(t, s)
            if t.val_t is not None and should_stop(s.best, step, cfg, t.earliest_stop):
                s.stopped_early = True
                break
    bar.close()


def _optimisation_step(t: Trainer, s: LoopState) -> None:
    """One step on a batch drawn from the training split; its loss (averaged over the ranks)
    goes to ``s.losses``."""
    cfg = t.cfg
    idx = torch.randint(len(t.train_t), (cfg.batch_size,), generator=t.batch_gen)
    # Every rank builds the same global batch (same generators), then keeps its own rows.
    batch = make_batch(t.train_t, idx.to(t.device), t.tokenizer, cfg.token_target, t.np_rng,
                       cfg.target_sigma)
    loss = sharded_step(t.ctx, t.trained, t.optimizer, t.scheduler, batch, cfg.grad_clip,
                        t.device)
    if cfg.weight_quantizer:
        anneal_step(t.module)
    if t.average is not None:
        t.average.update(t.module)
    s.losses.append(loss)


def _evaluate(t: Trainer, s: LoopState) -> None:
    """The record of step ``s.step`` (rank 0 validates and selects; every rank gets its
    numbers), appended to the metrics and the run log; rank 0 saves them and ``last/``."""
    record = {"step": s.step, "train_loss": float(np.mean(s.losses)),
              "lr": t.scheduler.get_last_lr()[0], "samples_per_s": s.rate,
              "elapsed_s": s.clock.elapsed()}
    s.losses = []
    if t.val_t is not None and t.ctx.is_main:
        _validate_and_select(t, s, record)
    # rank 0's evaluation, on every rank (the others wait here while it evaluates)
    record, s.best = s.clock.timed("eval_s", t.ctx.share, (record, s.best))
    s.metrics.append(record)
    if t.run_log is not None:
        t.run_log.scalars(record_scalars(record, "eval"), s.step)
    if t.ctx.is_main:
        s.clock.timed("checkpoint_s", _write_progress, t, s)


def _validate_and_select(t: Trainer, s: LoopState, record: dict[str, Any]) -> None:
    """Validation numbers (and the selection return) into ``record``; a better checkpoint is
    saved as ``best/``."""
    cfg, module = t.cfg, evaluated(t)
    record.update(s.clock.timed("eval_s", evaluate_split, module, t.val_t, t.tokenizer,
                                t.normalizer, cfg.seed + 1, token_target=cfg.token_target,
                                target_sigma=cfg.target_sigma))
    if t.selection is not None:
        record["select_return"] = s.clock.timed("eval_s", selection_return, module,
                                                t.normalizer, t.tokenizer, t.device, t.selection)
    s.best, improved = update_best(s.best, record, s.step, cfg.select_by)
    if improved:
        s.clock.timed("checkpoint_s", save_checkpoint, cfg.out / "best", module, t.normalizer,
                      t.tokenizer, t.conf, t.env_id)


def evaluated(t: Trainer) -> torch.nn.Module:
    """The weights a run validates, selects and saves as best/: the average, when it keeps one."""
    return t.average.module if t.average is not None else t.module


def _write_progress(t: Trainer, s: LoopState) -> None:
    """metrics.jsonl and out/last (:func:`~qbc.training.checkpoint.save_last`)."""
    write_metrics(t.cfg.out / "metrics.jsonl", s.metrics)
    save_last(t.cfg.out, t.module, t.normalizer, t.tokenizer, t.optimizer, t.scheduler, s.step,
              t.batch_gen, t.np_rng, s.best, t.conf, t.env_id, t.average)


def _result(t: Trainer, s: LoopState, final_out: Path, budget: dict[str, Any]) -> TrainResult:
    """The :class:`TrainResult` of a finished loop (the best checkpoint loaded on every rank)."""
    cfg, final = t.cfg, (s.metrics[-1] if s.metrics else {})
    return TrainResult(out=final_out, step=s.step, best_step=int(s.best["step"]),
                       best_val_loss=s.best["val_loss"],
                       final_train_loss=float(final.get("train_loss", float("nan"))),
                       samples_per_s=float(final.get("samples_per_s", 0.0)), metrics=s.metrics,
                       policy=load_policy(cfg.out / "best", device=t.device),
                       seconds={"train": s.clock.train_seconds(),
                                "validation": s.clock.seconds["eval_s"],
                                "checkpoints": s.clock.seconds["checkpoint_s"]},
                       budget={**budget, "steps": cfg.steps, "patience": cfg.patience,
                               "stopped_early": s.stopped_early, "select_by": cfg.select_by})
