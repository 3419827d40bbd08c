"""Behavior cloning of action chunks (the next k actions from the current observation), by
log-loss over a chunk tokenizer's tokens or by L1 regression (``qbc train-chunked``).

>>> from qbc.training.chunked import ChunkTrainConfig, train_chunked
>>> result = train_chunked(ChunkTrainConfig(dataset="...", chunk_k=4, chunk_tokenizer="beast"),
...                        demos)

Training rows are the chunks cut from every episode with stride 1
(:func:`qbc.chunking.make_chunks`): the observation at a chunk's first step -> the chunk's k
actions (an episode of T steps gives T - k + 1 rows; the last k - 1 states only appear inside
chunks). The chunk tokenizer and the normaliser are fitted on the training episodes (the split
of :func:`qbc.training.data.split_demos`); the optimiser, learning-rate schedule and step are
those of ``qbc train`` (:mod:`qbc.training.optim`); the checkpoint is the usual directory
(safetensors + JSON).

A separate trainer rather than ``qbc train --chunk-k``: ``qbc train``'s data layer is one row per
step (observation histories, stochastic and soft tokens) and its loop carries rollout
selection, weight quantization and model-based augmentation, none of which is defined for chunks
yet; here every flag listed does something. What the two share is reused from ``qbc train``: the
data-scaled step budget with early stopping (:func:`qbc.training.config.resolve_budget`,
:func:`qbc.training.evaluation.should_stop`), the run folder with ``last/`` and ``--resume``
(:mod:`qbc.training.checkpoint`), the TensorBoard log (:class:`qbc.training.run_log.RunLog`)
and data-parallel training under torchrun (:mod:`qbc.training.distributed`; the loop is
:mod:`qbc.training.chunk_loop`): ``torchrun --nproc-per-node N -m qbc.cli train-chunked ...``
runs N processes, ``--batch-size`` is the global batch split across them, rank 0 alone writes
the run folder, rolls out and prints.

Checkpoint selection is by the **decoded action error on validation**
(:func:`~qbc.training.chunk_select.chunk_action_error`): the RMS error, in action units, of
the chunks the policy decodes for held-out episodes' observations against the demonstrated
chunks — what the executed actions will be, not the log-loss (on Reacher-v5, log-loss
selection picked step 200 of 10,000: the validation log-loss of a token policy rises while its
decoded actions still improve). Early stopping watches the same error. The run directory::

    train_config.json  metrics.jsonl  best/ (lowest validation action error)  last/ (--resume)
    tensorboard/  summary.json
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.chunking import get_chunk_tokenizer_class
from qbc.chunking.chunks import check_chunk_len
from qbc.chunking.execution import ChunkExecutor, parse_execute
from qbc.chunking.floor import chunk_floor_actor
from qbc.data import demos_sha256, load_demonstrations
from qbc.errors import InvalidValueError, QbcWarning, UnknownNameError
from qbc.infra.environ import scoped_torch_rng
from qbc.infra.files import atomic_write_json
from qbc.infra.validate import check_all, check_config
from qbc.policy import ModelConfig, load_policy
from qbc.policy.chunked import ChunkPolicy
from qbc.policy.registry import (
    POLICY_KINDS,
    check_model_config,
    chunk_policies,
    model_flag,
    unread_model_settings,
)
from qbc.training.checkpoint import claim_run
from qbc.training.chunk_data import check_vocab_memory, parse_params, prepare_chunk_data
from qbc.training.chunk_head import check_head_settings, recorded_head
from qbc.training.chunk_loop import fit_chunks
from qbc.training.closing_rollout import ChunkExecution, ClosingRollout
from qbc.training.config import RULES, OptimConfig, config_dict, device_of, resolve_budget
from qbc.training.distributed import session
from qbc.training.evaluation import check_rollout_sizes, rollout_evaluation
from qbc.training.run_log import RunLog


@dataclass
class _ChunkHead:
    """The fields of :class:`ChunkTrainConfig` before the optimiser's (base classes keep the
    order of ``qbc train-chunked --help``; see :mod:`qbc.training.config`)."""

    dataset: str
    """Minari dataset id (see qbc collect)."""
    out: Path = Path("runs/chunked")
    """run directory."""
    policy: str = "chunk-ar-transformer"
    """chunk-ar-transformer (log-loss over chunk tokens) or chunk-mlp-l1 (L1 regression)."""
    chunk_k: int = 4
    """actions per chunk k (>= 1, at most the shortest episode)."""
    chunk_tokenizer: str = "per-step"
    """chunk-ar-transformer: fast, beast, rvq or per-step (qbc.chunking)."""
    chunk_tokenizer_params: str = ""
    """extra tokenizer parameters, 'name=value,...' (e.g. 'scale=20,vocab_size=512'); defaults:
    per-step uniform with --bins bins; beast min(k, 10) control points, degree min(3, points-1),
    --bins bins; rvq 4 levels of --bins codes; fast scale 10, vocabulary 1024 (or, with its
    default character-level BPE, the number of integer symbols when they are more)."""
    bins: int = 64
    """bins per token position (per-step, beast) or codes per level (rvq)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings (obs_history must stay 1)."""
    steps: int | None = None
    """optimisation steps; default: a budget from the data, --epochs passes over the training
    chunks within 10,000-200,000 steps (qbc train's rule), with early stopping (--patience)."""
    epochs: float = 30.0
    """without --steps: passes over the training chunks that set the step budget."""
    patience: int | None = None
    """evaluations without a lower validation action error before training stops (0 = never);
    default 10 when the budget comes from --epochs, 0 with an explicit --steps."""
    batch_size: int = 256
    """chunks per step (under torchrun: the global batch, split across the processes)."""


@dataclass
class ChunkTrainConfig(OptimConfig, _ChunkHead):
    """Train a chunk policy (next k actions from the current observation) on a Minari dataset."""

    seed: int = 0
    """seed of the split, the tokenizer, the initial weights and the batches."""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation (0 = none; then best = last)."""
    eval_interval: int = 200
    """steps between validations and checkpoints."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', 'cuda:1', ... (under torchrun, CUDA runs use one GPU per process:
    the one of its LOCAL_RANK)."""
    execute: str = "open-loop"
    """execution of the closing rollout: open-loop, receding:M or ensemble:C."""
    rollout_episodes: int = 10
    """after training: coupled episodes against the dataset's expert (0 = skip)."""
    rollout_horizon: int | None = None
    """steps per closing-rollout episode; default: the dataset's episode length."""
    rollout_seed: int | None = None
    """first rollout seed; default: just past the dataset's episode seeds."""
    progress: bool = True
    """show a progress bar."""
    tensorboard: bool = True
    """write TensorBoard event files to out/tensorboard/ (loss, learning rate, validation) when
    tensorboardX is installed."""
    resume: bool = False
    """continue from out/last/ (same settings; steps may be raised); an out without a run to
    continue (missing, empty, no last/) is refused, nothing written."""
    overwrite: bool = False
    """replace the files of an earlier run in out."""


#: Ranges of the numeric flags of train-chunked (the --model.* ones: check_model_config): the
#: shared ones are `qbc train`'s.
CHUNK_RULES = {k: RULES[k] for k in (
    "steps", "epochs", "patience", "batch_size", "lr", "min_lr_ratio", "weight_decay",
    "warmup_steps", "grad_clip", "val_fraction", "eval_interval", "bins", "rollout_episodes",
    "rollout_horizon")}


def _validate(cfg: ChunkTrainConfig) -> None:
    """Every flag checked before anything is read or written (one-line InvalidValueError)."""
    k = check_chunk_len(cfg.chunk_k, "--chunk-k")
    if cfg.policy not in chunk_policies():
        raise UnknownNameError("chunk policy", cfg.policy, chunk_policies())
    tokens = POLICY_KINDS.meta(cfg.policy)["tokens"]
    if tokens:
        get_chunk_tokenizer_class(cfg.chunk_tokenizer)
        parse_params(cfg.chunk_tokenizer_params)
    spec = parse_execute(cfg.execute)
    check_config(cfg, CHUNK_RULES)  # also: every float finite, ints in 64 bits, seeds in range
    defaults = {f.name: f.default for f in dataclasses.fields(ChunkTrainConfig)}
    ignored = [flag for name, flag in (("chunk_tokenizer", "--chunk-tokenizer"),
                                       ("chunk_tokenizer_params", "--chunk-tokenizer-params"),
                                       ("bins", "--bins"))
               if not tokens and getattr(cfg, name) != defaults[name]]
    ignored += [model_flag(name) for name in unread_model_settings(cfg.policy, cfg.model)]
    if ignored:
        raise InvalidValueError(
            f"{', '.join(ignored)}: --policy {cfg.policy} would ignore "
            f"{'it' if len(ignored) == 1 else 'them'} (chunk-mlp-l1 regresses chunks without "
            "a tokenizer; it reads --model.hidden and --model.mlp-layers, chunk-ar-transformer "
            "the transformer's and its ordered head's --model.* settings): leave "
            f"{'it' if len(ignored) == 1 else 'them'} out")
    check_model_config(cfg.model)
    check_head_settings(cfg)
    check_vocab_memory(cfg)
    check_all([(not (cfg.resume and cfg.overwrite), "--resume and --overwrite exclude each other"),
               (spec.mode != "receding" or spec.value <= k,
                f"--execute {spec}: M is longer than --chunk-k {k}; use M <= {k}"),
               (cfg.model.obs_history == 1, "chunk policies see the current observation only; "
                                            "use --model.obs-history 1"),
               (cfg.val_fraction > 0 or not cfg.patience,
                "--patience stops on the held-out episodes' action error; --val-fraction 0 holds "
                "out none and would ignore it: give a --val-fraction > 0 or leave it out")])


def train_chunked(cfg: ChunkTrainConfig, demos: Any, stop_at: int | None = None
                  ) -> dict[str, Any]:
    """Train ``cfg.policy`` on the chunks of ``demos`` (a :class:`qbc.data.Demonstrations`);
    keep the checkpoint with the lowest validation action error in ``cfg.out / "best"`` and the
    latest in ``cfg.out / "last"``. Returns the summary numbers, ``policy`` (the best
    checkpoint as a :class:`ChunkPolicy`), ``rank`` and ``world_size``. The run folder is
    claimed as ``qbc train`` claims its own (:func:`qbc.training.checkpoint.claim_run`: locked;
    new, --overwrite staged, or --resume). ``stop_at`` ends the run after that step as if
    interrupted (a --resume run continues it).

    Under torchrun every rank calls this with the same arguments and trains on its share of
    each global batch of ``cfg.batch_size`` chunks (:mod:`qbc.training.chunk_loop`); rank 0
    alone writes the run folder, every rank returns the best checkpoint."""
    _validate(cfg)
    cfg = recorded_head(cfg)
    device = device_of(cfg)
    with scoped_torch_rng():  # the caller's torch random state is left as found
        torch.manual_seed(cfg.seed)
        data = prepare_chunk_data(cfg, demos, device)
        budget = {"from": "--steps" if cfg.steps is not None else "--epochs",
                  "epochs": cfg.epochs}
        cfg = resolve_budget(cfg, len(data[3]))
        conf = {**config_dict(cfg), "dataset_sha256": demos_sha256(demos)}
        with session(device) as ctx:
            ctx.shard_bounds(cfg.batch_size)  # a global batch the ranks cannot share is refused
            # after the data: a refused run writes nothing
            with claim_run(cfg, ctx) as (work, resuming):
                run = dataclasses.replace(cfg, out=work)
                with RunLog(work, conf, cfg.tensorboard and ctx.is_main) as log:
                    result = fit_chunks(run, demos, device, ctx, data, conf, resuming, log,
                                        stop_at, budget)
                ctx.barrier()  # every rank loads the best checkpoint rank 0 has written
                policy = load_policy(work / "best", device=device)
    return {"policy": policy, "rank": ctx.rank, "world_size": ctx.world_size, **result}


def closing_rollout(cfg: ChunkTrainConfig, policy: ChunkPolicy, demos: Any
                    ) -> ClosingRollout | None:
    """:func:`~qbc.training.evaluation.rollout_evaluation` of the policy executed by
    ``cfg.execute`` beside its chunk floor in the same mode (``chunk_floor_...`` entries, see
    :mod:`qbc.chunking.floor`), plus the execution mode, chunks predicted and decode failures
    (repaired chunks) as its ``execution``."""
    executor = ChunkExecutor(policy, cfg.execute)

    def floor(expert: Any, env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
        actor = chunk_floor_actor(env_id, expert, policy.chunk_len, policy.chunk_tokenizer,
                                  executor.spec, env_kwargs)
        return {} if actor is None else {"chunk_floor": actor}  # None: no floor on this env

    res = rollout_evaluation(executor, demos, cfg.rollout_episodes, cfg.rollout_horizon,
                             cfg.rollout_seed, progress=cfg.progress, companions=floor)
    if res is not None:
        res.execution = ChunkExecution(str(executor.spec), executor.n_chunks,
                                       executor.decode_failures)
    return res


# -- a whole run -------------------------------------------------------------------------------
def _check_chunks_fit(cfg: ChunkTrainConfig, demos: Any) -> None:
    """--chunk-k at most the dataset's shortest episode (in the flag's words, before any
    output)."""
    shortest = int(np.unique(demos.episode_ids, return_counts=True)[1].min())
    if cfg.chunk_k > shortest:
        raise InvalidValueError(f"--chunk-k {cfg.chunk_k} is longer than the shortest episode of "
                                f"{cfg.dataset} ({shortest} actions); use --chunk-k <= {shortest}")


def run_train_chunked(cfg: ChunkTrainConfig) -> dict[str, Any]:
    """Check the flags, load the dataset, train, roll the best policy out, write summary.json;
    returns the summary (the ``qbc train-chunked`` command prints it; its ``rollout`` a
    :class:`~qbc.training.closing_rollout.ClosingRollout`, JSON in the file). Under torchrun every
    rank trains; rank 0 alone rolls out and writes summary.json (the other ranks return the
    training numbers)."""
    _validate(cfg)
    demos = load_demonstrations(cfg.dataset)
    _check_chunks_fit(cfg, demos)
    check_rollout_sizes(demos, cfg.rollout_episodes, cfg.rollout_horizon, cfg.rollout_seed)
    result = train_chunked(cfg, demos)
    policy, rank = result.pop("policy"), result.pop("rank")
    summary = {"policy": cfg.policy, "dataset": cfg.dataset, "chunk_k": cfg.chunk_k, **result,
               "checkpoint": str(cfg.out / "best")}
    if rank != 0:  # under torchrun rank 0 alone rolls out and writes
        return summary
    if policy.chunk_tokenizer is not None:
        tok = policy.chunk_tokenizer
        summary["tokenizer"] = {"name": tok.name, "params": tok.get_params(),
                                "vocab": int(tok.vocab_size), "n_tokens": tok.n_tokens,
                                "positions": int(policy.module.cfg.n_tokens)}
    if cfg.rollout_episodes > 0:
        summary["rollout"] = rollout = closing_rollout(cfg, policy, demos)
        if rollout and rollout.horizon_capped:  # as qbc train warns
            warnings.warn(rollout.horizon_capped, QbcWarning, stacklevel=2)
    rollout = summary.get("rollout")
    atomic_write_json(cfg.out / "summary.json",
                      {**summary, "rollout": rollout.to_json()} if rollout else summary)
    return summary
