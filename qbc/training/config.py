"""The settings of a training run: :class:`TrainConfig` (``qbc train``'s flags), the optimiser
settings it shares with chunk training (:class:`OptimConfig`), the step budget, and every check
of the settings made before anything is read or written.

Field order is the order of ``qbc train --help`` and of ``train_config.json``: the fields of
``_TrainHead`` (what is trained on what, the budget, the batch), then :class:`OptimConfig`'s,
then :class:`TrainConfig`'s own (dataclass fields of base classes come first; the bases exist
to share the optimiser's fields while keeping that order).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args

import numpy as np
import torch

from qbc.infra.validate import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Rule,
    check_all,
    check_config,
    check_device,
    check_memory,
)
from qbc.policy import ModelConfig, build_policy, needs_tokenizer
from qbc.policy.obs_encoder import ObsEncoderConfig, QuantizedProjectionEncoder, obs_encoder_config
from qbc.policy.registry import (
    check_model_config,
    check_policy_kind,
    rough_parameter_count,
)
from qbc.quantizers import MARGIN_RANGE, QUANTILE_RANGE
from qbc.rollout.augment import HEADS as TRANSITION_HEADS
from qbc.rollout.augment import TransitionHead
from qbc.ste import get_ste
from qbc.training.distributed import local_device
from qbc.training.evaluation import check_rollout_sizes
from qbc.training.settings import check_head_settings, check_settings_apply

#: Checkpoint selection rules of ``--select-by``.
SelectBy = Literal["action-mse", "val-loss", "rollout"]
#: The targets of ``--token-target`` (see :func:`qbc.training.data.make_batch`); 'soft' and
#: 'sampled' are the names used before the two-hot default, kept so that saved settings
#: reproduce their runs.
TokenTarget = Literal["two-hot", "one-hot", "soft", "sampled"]
#: ``--augment``: nothing, or a transition model learnt beside the policy.
Augment = Literal["none", "model"]


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up and a cosine decay, and gradient clipping: the optimiser of
    ``qbc train`` and ``qbc train-chunked`` (:mod:`qbc.training.optim`)."""

    lr: float = 1e-3
    """peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """the cosine schedule ends at lr * min_lr_ratio."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices and embeddings only)."""
    warmup_steps: int = 100
    """linear warm-up steps before the cosine decay."""
    grad_clip: float = 1.0
    """clip the gradient norm to this (0 = no clipping)."""


@dataclass
class _TrainHead:
    """The fields of :class:`TrainConfig` before the optimiser's (see the module docstring)."""

    dataset: str
    """Minari dataset id (see qbc collect), e.g. qbc/linear-unstable-lqr-v0."""
    out: Path = Path("runs/bc")
    """run directory (checkpoints, metrics, config)."""
    policy: str = "ar-transformer"
    """ar-transformer, independent-categorical, mlp-mse or mlp-gaussian."""
    quantizer: str = "uniform"
    """token policies: quantizer registry name (uniform, smooth, kmeans, lloyd_max, vq, ...)."""
    bins: int = 64
    """token policies: tokens per position (vocabulary size)."""
    per_dim: bool = True
    """token policies: one quantizer per action dimension (else one shared)."""
    quantile: float = 0.0
    """uniform/smooth: fit the range to the [q, 1-q] quantiles of the actions instead of min/max."""
    range_margin: float = 0.0
    """uniform/smooth: widen the fitted range by this x its half-width on each side (0.5: 1.5x
    as wide), so states beyond the data that need larger actions are not clipped to the edge
    tokens (on unstable systems a clipped action can let the state run away)."""
    token_target: TokenTarget = "two-hot"
    """per-dimension tokenizers: 'two-hot' (each action value's probability split between the
    two codewords around it, so the target's mean codeword is the action: smooth binning's own
    targets; for a deterministic quantizer its argmax is the action's token) or 'one-hot' (the
    action's token alone; for smooth, the stochastically rounded one). The names before the
    two-hot default: 'soft' (two-hot for smooth, one-hot otherwise) and 'sampled' (one-hot).
    Joint (vq) tokens have no order: one-hot."""
    target_sigma: float = 0.0
    """deterministic per-dimension tokenizers: train on Gaussian histogram targets (HL-Gauss)
    of this std in codeword spacings instead (0 = the --token-target ones)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings."""
    steps: int | None = None
    """optimisation steps; default: a budget from the data, --epochs passes over the training
    split (see :func:`default_steps`), with early stopping (--patience) when episodes are held
    out."""
    epochs: float = 30.0
    """without --steps: passes over the training split that set the step budget."""
    patience: int | None = None
    """stop after this many evaluations without improvement of the watched number (the
    validation action error with --select-by action-mse, else the validation loss; 0 = never);
    default: 10 when the budget comes from --epochs, 0 with an explicit --steps or with
    --val-fraction 0."""
    select_by: SelectBy = "action-mse"
    """which evaluated checkpoint becomes best/: 'action-mse' (lowest mean squared action
    error of deterministic decoding on the validation episodes; early stopping watches it too),
    'val-loss' (lowest validation log-loss) or 'rollout' (highest mean return of a short
    rollout on fixed seeds, disjoint from the data's and the closing rollout's); ties go to the
    lower validation loss. The log-loss can rise while the decoded actions keep improving
    (over-confident logits): on Reacher-v5 it picked step 200 of 10,000."""
    select_episodes: int = 10
    """with --select-by rollout: episodes of each selection rollout (horizon: --rollout-horizon
    or the dataset's episode length)."""
    batch_size: int = 256
    """samples per step (under torchrun: the global batch, split across the processes)."""
    ema_decay: float = 0.0
    """evaluate, select and save an exponential moving average of the weights, this decay per
    step once warmed up (:mod:`qbc.training.averaging`; 0 = the last step's weights, e.g.
    0.999). Not with --weight-quantizer, whose annealed quantizers live in the trained weights."""


@dataclass
class TrainConfig(OptimConfig, _TrainHead):
    """Train a behavior-cloning policy on a Minari dataset of demonstrations (log-loss)."""

    seed: int = 0
    """seed of the split, the initial weights and the batches."""
    val_fraction: float = 0.1
    """fraction of episodes held out for validation (0 = none; then best = last)."""
    eval_interval: int = 200
    """steps between validation, metrics records and checkpoints."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1', ... (under torchrun,
    CUDA means the GPU of each process's LOCAL_RANK)."""
    resume: bool = False
    """continue from out/last/ (same settings; steps may be raised); an out without a run to
    continue (missing, empty, no last/) is refused, nothing written."""
    overwrite: bool = False
    """replace the outputs of an earlier run in out."""
    drop_nonfinite: bool = False
    """drop episodes with NaN/inf observations or actions instead of refusing the dataset."""
    rollout_episodes: int = 10
    """after training: roll the policy out this many episodes against the dataset's expert on the
    same seeds, if the env can be made (0 = skip)."""
    rollout_horizon: int | None = None
    """steps per evaluation rollout; default: the dataset's max_episode_steps (else 500)."""
    rollout_seed: int | None = None
    """first rollout seed; default: just past the dataset's episode seeds (disjoint from them)."""
    progress: bool = True
    """show progress (a bar on a terminal, a plain line every ~10 s in a log)."""
    tensorboard: bool = True
    """write TensorBoard event files to out/tensorboard/ (losses, learning rate, samples/s,
    validation, closing rollout regret) when tensorboardX is installed (pip install
    'qbc[tensorboard]'); skipped without it. metrics.jsonl is written either way."""
    wandb: bool = False
    """also log the same numbers to Weights & Biases, offline, in out/wandb/ (pip install
    'qbc[wandb]'; upload later with `wandb sync`)."""
    weight_quantizer: str | None = None
    """quantize the weights of every linear layer with this STE forward/backward pair (bc, pc,
    bnn, bnn+, bnn++, or a registry quantizer such as uniform); β/μ anneal once per step."""
    obs_encoder: ObsEncoderConfig | None = None
    """a fixed encoder of the standardised observation in front of the policy: k Gaussian
    random projections, each quantized to `bits` bits (qbc.compressive's quantizers for N(0,1)):
    `k=16 bits=2 [quantizer=lloyd_max|uniform] [seed=0]`, or the spec qrp:k=16,bits=2; none = no
    encoder. (A spec string or a dict given in Python is read into ObsEncoderConfig.)"""
    augment: Augment = "none"
    """'model': also learn a transition model (x_t, token of u_t) -> x_{t+1} on the training
    demonstrations and save it in out/transition/, for `qbc rollout --augment model`."""
    transition_steps: int = 3000
    """optimiser steps of the transition model (with --augment model)."""
    transition_head: TransitionHead = "gaussian"
    """the transition model's output (with --augment model): 'gaussian' (mean and std of the
    state increment) or 'tokens' (next-state tokens: a distribution over transition_bins
    smooth-binning codewords per state dimension)."""
    transition_bins: int = 64
    """tokens per state dimension of --transition-head tokens."""

    def __post_init__(self) -> None:
        self.obs_encoder = obs_encoder_config(self.obs_encoder)


def config_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as JSON values (paths as strings), in field order."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def device_of(cfg: Any) -> torch.device:
    """The torch device of ``cfg.device`` (checked; under torchrun, this process's GPU)."""
    return local_device(check_device(cfg.device))


# -- budget ---------------------------------------------------------------------------------------
#: The choices of ``--select-by`` and ``--token-target``, in order.
SELECT_BY, TOKEN_TARGETS = get_args(SelectBy), get_args(TokenTarget)
#: The budget from --epochs is kept within these steps. Small datasets need many more than 30
#: passes: their rare states (the tails of the initial-state distribution, where an unstable
#: system is decided) are fitted last. On qbc/ScalarUnstable-v0 (100 x 200-step LQR episodes)
#: 2110 steps left the token learner 20-25x above its quantization floor, 10,000 brought most
#: seeds to it. A huge dataset does not run for days (early stopping ends it sooner).
MIN_AUTO_STEPS, MAX_AUTO_STEPS = 10_000, 200_000
#: Evaluations without improvement before stopping, when the budget comes from --epochs.
AUTO_PATIENCE = 10


def default_steps(n_train_rows: int, batch_size: int, epochs: float) -> int:
    """Steps for ``epochs`` passes over ``n_train_rows`` training rows at ``batch_size`` rows a
    step, kept within [MIN_AUTO_STEPS, MAX_AUTO_STEPS]. E.g. 100 episodes x 200 steps (18,000
    training rows), batch 256, 30 epochs: 2110 passes' worth, raised to the 10,000 minimum;
    100 x 1000 (90,000 rows): 10,547."""
    steps = math.ceil(epochs * n_train_rows / batch_size)
    return int(min(MAX_AUTO_STEPS, max(MIN_AUTO_STEPS, steps)))


def resolve_budget(cfg: TrainConfig, n_train_rows: int) -> TrainConfig:
    """``cfg`` with ``steps`` and ``patience`` filled in: an explicit --steps is kept exactly
    (no early stopping unless --patience is given); without one the budget comes from the data
    (:func:`default_steps`) and early stopping is on (AUTO_PATIENCE evaluations)."""
    if cfg.steps is not None or cfg.val_fraction == 0:  # no validation: no early stopping
        steps = cfg.steps or default_steps(n_train_rows, cfg.batch_size, cfg.epochs)
        return dataclasses.replace(cfg, steps=steps, patience=cfg.patience or 0)
    patience = AUTO_PATIENCE if cfg.patience is None else cfg.patience
    return dataclasses.replace(cfg, steps=default_steps(n_train_rows, cfg.batch_size, cfg.epochs),
                               patience=patience)


# -- validation -----------------------------------------------------------------------------------
#: Ranges of the numeric flags (floats are also checked finite, seeds in [0, 2^32); the
#: --model.* settings by :func:`qbc.policy.registry.check_model_config`).
RULES = {"bins": Rule(lo=2, integer=True), "quantile": QUANTILE_RANGE, "target_sigma": NON_NEGATIVE,
         "range_margin": MARGIN_RANGE,
         "steps": Rule(lo=1, integer=True, optional=True), "epochs": POSITIVE,
         "patience": Rule(lo=0, integer=True, optional=True), "select_episodes": AT_LEAST_ONE,
         "ema_decay": Rule(lo=0, hi=1, hi_open=True),
         "batch_size": AT_LEAST_ONE, "lr": POSITIVE, "min_lr_ratio": Rule(lo=0, hi=1),
         "weight_decay": NON_NEGATIVE, "warmup_steps": Rule(lo=0, integer=True),
         "grad_clip": NON_NEGATIVE, "val_fraction": FRACTION, "eval_interval": AT_LEAST_ONE,
         "rollout_episodes": Rule(lo=0, integer=True),
         "rollout_horizon": Rule(lo=1, integer=True, optional=True),
         "transition_steps": AT_LEAST_ONE, "transition_bins": Rule(lo=2, integer=True)}


def validate_config(cfg: TrainConfig) -> torch.device:
    """Check every setting that needs no data (before anything is read or written); returns
    the device."""
    check_policy_kind(cfg.policy)
    check_config(cfg, RULES)
    check_model_config(cfg.model)
    check_all([(not (cfg.resume and cfg.overwrite),  # a resumed run ignored --overwrite
                "--resume and --overwrite exclude each other"),
               (cfg.select_by in SELECT_BY,
                f"--select-by must be one of {', '.join(SELECT_BY)}, got {cfg.select_by!r}"),
               (cfg.token_target in TOKEN_TARGETS,
                f"--token-target must be one of {', '.join(TOKEN_TARGETS)}, "
                f"got {cfg.token_target!r}"),
               (cfg.weight_quantizer is None or _known_ste(cfg.weight_quantizer),
                f"unknown --weight-quantizer {cfg.weight_quantizer!r}"),
               (cfg.augment in get_args(Augment),
                f"--augment must be 'none' or 'model', got {cfg.augment!r}"),
               (cfg.augment == "none" or needs_tokenizer(cfg.policy),
                f"--augment model needs a token policy, not {cfg.policy!r}"),
               (cfg.obs_encoder is None or _valid_obs_encoder(cfg.obs_encoder),
                f"bad --obs-encoder {cfg.obs_encoder!r}"),
               (cfg.transition_head in TRANSITION_HEADS,
                f"--transition-head must be 'gaussian' or 'tokens', got {cfg.transition_head!r}"),
               ])
    check_settings_apply(cfg)
    return device_of(cfg)


def validate_with_data(cfg: TrainConfig, demos: Any) -> torch.device:
    """:func:`validate_config`, then the checks that need the data (memory included)."""
    device = validate_config(cfg)
    check_head_settings(cfg, int(np.asarray(demos.actions).shape[-1]))
    check_all([(len(demos) > 0, "the demonstrations are empty"),
               (cfg.select_by != "rollout" or _makeable_env(demos),
                "--select-by rollout needs the dataset's env, which cannot be made here "
                f"({getattr(demos, 'env_id', None)!r}); use --select-by val-loss")])
    check_train_memory(cfg, demos)

    check_rollout_sizes(demos, cfg.rollout_episodes, cfg.rollout_horizon, cfg.rollout_seed)
    if cfg.select_by == "rollout":
        check_rollout_sizes(demos, cfg.select_episodes, cfg.rollout_horizon, 0,
                            "--select-episodes or a smaller --rollout-horizon")
    return device


def check_train_memory(cfg: TrainConfig, demos: Any) -> None:
    """Refuse a model and data that would not fit in memory: the parameters (counted on a
    model built on torch's 'meta' device, which allocates nothing) with gradients and AdamW
    moments, the data tensors, the tokenizer's tables and one batch of logits."""
    obs_dim = int(np.asarray(demos.observations).shape[-1])
    act_dim = int(np.asarray(demos.actions).shape[-1])
    tokens = needs_tokenizer(cfg.policy)
    tok = SimpleNamespace(n_tokens=act_dim, vocab_size=cfg.bins) if tokens else None
    rough = rough_parameter_count(cfg.policy, cfg.model, act_dim, cfg.bins if tokens else 0)
    check_memory(16.0 * rough, f"training {cfg.policy} (at least {rough:,} parameters)",
                 "use fewer --bins or a smaller --model")
    with torch.device("meta"):
        module = build_policy(cfg.policy, cfg.model, obs_dim, act_dim, tok, cfg.obs_encoder)
    n_params = sum(p.numel() for p in module.parameters())
    rows = len(demos)
    n_bytes = (16.0 * n_params + 4.0 * rows * (cfg.model.obs_history * obs_dim + 2 * act_dim)
               + (32.0 * cfg.bins * act_dim + 12.0 * cfg.batch_size * act_dim * cfg.bins
                  + 8.0 * rows * act_dim if tokens else 0.0))
    check_memory(n_bytes, f"training {cfg.policy} ({n_params:,} parameters) on {rows:,} steps",
                 "use fewer --bins or a smaller --model / --batch-size")


def _makeable_env(demos: Any) -> bool:
    import gymnasium as gym

    env_id = getattr(demos, "env_id", None)
    return bool(env_id) and env_id in gym.registry


def _known_ste(name: str) -> bool:
    """True for a valid STE spec; an unknown one raises the registry's one-line error."""
    get_ste(name)
    return True


def _valid_obs_encoder(enc: ObsEncoderConfig) -> bool:
    """True for a usable --obs-encoder; a bad one raises a one-line error saying why."""
    QuantizedProjectionEncoder(obs_dim=1, **dataclasses.asdict(enc))
    return True
