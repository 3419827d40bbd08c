"""Log-loss behavior cloning: fit a tokenizer, train a policy, keep the best checkpoint.

>>> from qbc.train import TrainConfig, train
>>> result = train(TrainConfig(dataset="qbc/linear-unstable-lqr-v0", out=Path("runs/ar")), demos)

A run directory holds::

    train_config.json   the resolved configuration
    metrics.jsonl       one JSON record per evaluation (train/val loss, lr, samples/s, ...)
    best/               policy checkpoint with the lowest validation loss (qbc.policy.load_policy)
    last/               the latest checkpoint + optimizer.safetensors, trainer.safetensors and
                        trainer_state.json: everything ``--resume`` needs (no pickle)
    summary.json        final numbers

Model construction (:func:`qbc.policy.build_policy`), data preparation (:func:`prepare_data`), one
optimisation step (:func:`train_step`) and the loop (:func:`train`) are separate functions.

Data-parallel training: ``torchrun --nproc-per-node N -m qbc.train --dataset ... [flags]`` (the
flags of ``qbc train``) runs N processes (gloo on CPU, NCCL with one GPU per process). Every
process draws the same global batch of ``--batch-size`` rows and trains on its 1/N slice under
DistributedDataParallel, so the run follows the single-process run up to float rounding; rank 0
alone writes the run directory, shows progress and runs the evaluation rollouts. The run
directory must be visible to every rank (``--resume`` reads it on all of them).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from qbc.augment import HEADS as TRANSITION_HEADS
from qbc.distributed import DistContext, local_device, session
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, QbcWarning
from qbc.io import (
    atomic_write_dir,
    atomic_write_json,
    atomic_write_text,
    exclusive,
    lock_path_for,
    output_dir,
    read_json,
    recover_dir,
)
from qbc.policy import ModelConfig, Normalizer, Policy, build_policy, needs_tokenizer
from qbc.policy.loading import load_parts, load_tensors, save_checkpoint, save_tensors
from qbc.policy.registry import check_model_config, check_policy_kind
from qbc.progress import progress_bar
from qbc.run_log import RunLog, check_run_log, record_scalars
from qbc.tokenizer import ActionTokenizer
from qbc.validate import (
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


@dataclass
class TrainConfig:
    """Train a behavior-cloning policy on a Minari dataset of demonstrations (log-loss)."""

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
    token_target: str = "soft"
    """stochastic (smooth) tokenizers: 'soft' (two-hot expected log-loss) or 'sampled' tokens."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings."""
    steps: int | None = None
    """optimisation steps; default: a budget from the data, --epochs passes over the training
    split (see :func:`default_steps`), with early stopping (--patience)."""
    epochs: float = 30.0
    """without --steps: passes over the training split that set the step budget."""
    patience: int | None = None
    """stop after this many evaluations without a lower validation loss (0 = never); default:
    10 when the budget comes from --epochs, 0 with an explicit --steps."""
    select_by: str = "val-loss"
    """which evaluated checkpoint becomes best/: 'val-loss' (lowest validation log-loss) or
    'rollout' (highest mean return of a short rollout on fixed seeds, disjoint from the data's
    and the closing rollout's; ties go to the lower validation loss)."""
    select_episodes: int = 10
    """with --select-by rollout: episodes of each selection rollout (horizon: --rollout-horizon
    or the dataset's episode length)."""
    batch_size: int = 256
    """samples per step (under torchrun: the global batch, split across the processes)."""
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
    """continue from out/last/ (same settings; steps may be raised)."""
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
    obs_encoder: str | None = None
    """a fixed encoder of the standardised observation in front of the policy:
    'qrp:k=16,bits=2[,quantizer=lloyd_max|uniform][,seed=0]' = k Gaussian random projections,
    each quantized to `bits` bits (qbc.compressive's quantizers for N(0,1))."""
    augment: str = "none"
    """'model': also learn a transition model (x_t, token of u_t) -> x_{t+1} on the training
    demonstrations and save it in out/transition/, for `qbc rollout --augment model`."""
    transition_steps: int = 3000
    """optimiser steps of the transition model (with --augment model)."""
    transition_head: str = "gaussian"
    """the transition model's output (with --augment model): 'gaussian' (mean and std of the
    state increment) or 'tokens' (next-state tokens: a distribution over transition_bins
    smooth-binning codewords per state dimension)."""
    transition_bins: int = 64
    """tokens per state dimension of --transition-head tokens."""


#: Checkpoint selection rules of ``--select-by``.
SELECT_BY = ("val-loss", "rollout")
#: The budget from --epochs is kept within these steps: short enough data still gets the old
#: fixed default, and a huge dataset does not run for days (early stopping ends it sooner).
MIN_AUTO_STEPS, MAX_AUTO_STEPS = 2000, 200_000
#: Evaluations without improvement before stopping, when the budget comes from --epochs.
AUTO_PATIENCE = 10

#: Settings that may differ between a run and its ``--resume`` ('out': a run is found by its
#: folder, however its path is spelled, and a moved folder still resumes; 'run_id' is checked
#: by :func:`run_identity`).
_RESUMABLE_CHANGES = {"out", "run_id", "steps", "epochs", "patience", "resume", "overwrite",
                      "progress", "device", "tensorboard", "wandb",
                      "rollout_episodes", "augment", "transition_steps", "transition_head",
                      "transition_bins", "rollout_horizon", "rollout_seed", "eval_interval"}


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


# -- data ------------------------------------------------------------------------------------------
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


def history_index(episode_ids: np.ndarray, k: int) -> np.ndarray:
    """Row indices (N, k) of the last k observations of each step, oldest first, repeating the
    episode's first row before its start. Rows must be grouped by episode in time order."""
    n = len(episode_ids)
    t = np.arange(n)
    start = np.zeros(n, dtype=np.int64)
    new = np.r_[True, episode_ids[1:] != episode_ids[:-1]]
    start[new] = t[new]
    start = np.maximum.accumulate(start)
    lags = np.arange(k - 1, -1, -1)
    return np.maximum(t[:, None] - lags[None, :], start[:, None])


def _split_tensors(demos: Any, normalizer: Normalizer, tokenizer: ActionTokenizer | None,
                   k: int, device: torch.device) -> SplitTensors:
    obs = normalizer.obs(np.asarray(demos.observations, dtype=np.float32))
    obs = obs[history_index(np.asarray(demos.episode_ids), k)]
    raw = np.asarray(demos.actions, dtype=np.float32)
    acts = (raw - normalizer.act_mean) / normalizer.act_std
    tokens = None if tokenizer is None else torch.from_numpy(tokenizer.encode(raw)).to(device)
    return SplitTensors(torch.from_numpy(obs).to(device),
                        torch.from_numpy(acts.astype(np.float32)).to(device), raw, tokens)


def fit_tokenizer(cfg: TrainConfig, actions: np.ndarray) -> ActionTokenizer:
    """The ActionTokenizer of ``cfg`` fitted on (training) actions (N, D)."""
    params = {"quantile": cfg.quantile} if cfg.quantizer in ("uniform", "smooth") else {}
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
    train_t = _split_tensors(train_demos, normalizer, tokenizer, k, device)
    val_t = None
    if val_demos is not None and len(val_demos) > 0:
        val_t = _split_tensors(val_demos, normalizer, tokenizer, k, device)
    return tokenizer, normalizer, train_t, val_t


def make_batch(data: SplitTensors, idx: torch.Tensor, tokenizer: ActionTokenizer | None,
               token_target: str, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
    """The rows ``idx`` as a loss batch: obs, actions and (token policies) tokens / soft targets.

    With a stochastic tokenizer the tokens are drawn by stochastic rounding from ``rng``; with
    ``token_target='soft'`` the two-hot targets are added too, so position i is scored on its
    expected log-loss given a sampled prefix (an unbiased estimate of the expected log-loss of
    the stochastically rounded sequence)."""
    batch = {"obs": data.obs[idx], "actions": data.actions[idx]}
    if tokenizer is None:
        return batch
    if tokenizer.stochastic and rng is not None:
        raw = data.raw_actions[idx.cpu().numpy()]
        dev = data.obs.device
        batch["tokens"] = torch.from_numpy(tokenizer.encode(raw, rng=rng)).to(dev)
        if token_target == "soft":
            batch["soft"] = torch.from_numpy(tokenizer.soft_targets(raw)).to(dev)
    else:
        batch["tokens"] = data.tokens[idx]
    return batch


# -- budget ---------------------------------------------------------------------------------------
def default_steps(n_train_rows: int, batch_size: int, epochs: float) -> int:
    """Steps for ``epochs`` passes over ``n_train_rows`` training rows at ``batch_size`` rows a
    step, kept within [MIN_AUTO_STEPS, MAX_AUTO_STEPS]. E.g. 100 episodes x 200 steps (18,000
    training rows), batch 256, 30 epochs: 2110 steps; 100 x 1000 (90,000 rows): 10,547."""
    steps = math.ceil(epochs * n_train_rows / batch_size)
    return int(min(MAX_AUTO_STEPS, max(MIN_AUTO_STEPS, steps)))


def resolve_budget(cfg: TrainConfig, n_train_rows: int) -> TrainConfig:
    """``cfg`` with ``steps`` and ``patience`` filled in: an explicit --steps is kept exactly
    (no early stopping unless --patience is given); without one the budget comes from the data
    (:func:`default_steps`) and early stopping is on (AUTO_PATIENCE evaluations)."""
    if cfg.steps is not None:
        return dataclasses.replace(cfg, patience=cfg.patience or 0)
    patience = AUTO_PATIENCE if cfg.patience is None else cfg.patience
    return dataclasses.replace(cfg, steps=default_steps(n_train_rows, cfg.batch_size, cfg.epochs),
                               patience=patience)


# -- optimisation ----------------------------------------------------------------------------------
def make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and embedding tables, none on biases and norms."""
    decay = [p for p in module.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in module.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine down to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, batch: dict[str, torch.Tensor],
               grad_clip: float) -> float:
    """One optimisation step on ``batch``; returns the loss before the update."""
    module.train()
    loss = module.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_split(module: torch.nn.Module, data: SplitTensors, tokenizer: ActionTokenizer | None,
                   normalizer: Normalizer, seed: int, chunk: int = 8192) -> dict[str, float]:
    """Validation log-loss (the training objective; soft targets for smooth binning) and the mean
    squared action error of deterministic decoding, in action units."""
    module.eval()
    rng = np.random.default_rng(seed)  # fixed prefixes: the same numbers at every evaluation
    policy = Policy(module, normalizer, tokenizer, device=data.obs.device)
    loss_sum, sq_sum, n = 0.0, 0.0, len(data)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=data.obs.device)
        batch = make_batch(data, idx, tokenizer, "soft", rng)
        loss_sum += float(module.loss(batch)) * len(idx)
        pred = policy.act(policy_obs(data, idx, normalizer), deterministic=True)
        sq_sum += float(((pred - data.raw_actions[idx.cpu().numpy()]) ** 2).mean(1).sum())
    return {"val_loss": loss_sum / n, "val_action_mse": sq_sum / n}


def policy_obs(data: SplitTensors, idx: torch.Tensor, normalizer: Normalizer) -> np.ndarray:
    """Observation histories (B, K, obs_dim) of rows idx in observation units (un-normalised)."""
    x = data.obs[idx].cpu().numpy()
    return (x * normalizer.obs_std + normalizer.obs_mean).astype(np.float32)


# -- checkpoints -----------------------------------------------------------------------------------
def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = optimizer.state_dict()
    tensors = {f"optim.{pid}.{name}": torch.as_tensor(v)
               for pid, st in sd["state"].items() for name, v in st.items()}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, groups


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                          groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _device_of(cfg: TrainConfig) -> torch.device:
    return local_device(check_device(cfg.device))


def save_last(out: Path, module, normalizer, tokenizer, optimizer, scheduler, step: int,
              batch_gen: torch.Generator, np_rng: np.random.Generator | None,
              best: dict[str, Any], config: dict[str, Any], env_id: str | None = None) -> None:
    """Everything needed to continue: the checkpoint, optimizer, schedule, step and RNG states.
    ``out/last`` is replaced as a whole (:func:`qbc.io.atomic_write_dir`), so a kill at any
    moment leaves the weights and the optimizer state of one and the same step."""
    tensors, groups = _optimizer_state(optimizer)
    tensors["rng.batch"] = batch_gen.get_state()
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
    state = {"step": step, "optimizer_param_groups": groups, "scheduler": scheduler.state_dict(),
             "np_rng": None if np_rng is None else np_rng.bit_generator.state, "best": best}

    def fill(last: Path) -> None:
        save_checkpoint(last, module, normalizer, tokenizer, config, env_id)
        save_tensors(last / "trainer.safetensors", tensors)
        atomic_write_json(last / "trainer_state.json", state)

    atomic_write_dir(out / "last", fill)


def _check_resume_config(stored: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with other settings or other data (a run is found by its folder, so
    'out' itself may differ: a run reached by another spelling of its path, or moved, resumes;
    runs saved before data hashes were recorded are not checked for the data). A setting the
    stored run predates (absent from its config) counts as unchanged while it keeps its
    default."""
    if "dataset_sha256" in stored and stored["dataset_sha256"] != current.get("dataset_sha256"):
        raise InvalidValueError(
            f"--resume: the demonstrations of {current.get('dataset')!r} differ from those the "
            "run in progress was trained on (content hash); resume with the same data, or "
            "start a new run in another --out")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}

    def changed(k: str) -> bool:
        if k not in stored and k in defaults:
            return current.get(k) != json.loads(json.dumps(defaults[k], default=str))
        return stored.get(k) != current.get(k)

    diff = sorted(k for k in set(stored) | set(current)
                  if k not in _RESUMABLE_CHANGES and k != "dataset_sha256" and changed(k))
    if diff:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise InvalidValueError(
            f"--resume with settings that differ from the run in progress ({detail}); use the "
            "same settings, or start a new run in another --out")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


@contextmanager
def run_dir(cfg: TrainConfig) -> Iterator[tuple[Path, bool]]:
    """The folder to write the run into, locked, and whether to resume from it.

    ``--resume`` continues ``out/last`` in place. Otherwise :func:`qbc.io.output_dir`: a new
    run is written straight into a missing or empty ``out`` (a crash leaves it resumable);
    with ``--overwrite`` an existing run stays untouched until the new one has finished in a
    staging folder beside it, and is then replaced."""
    out = cfg.out
    no_run = OutputExistsError(
        f"--resume: {out} holds no resumable run (no last/trainer_state.json); give the "
        "--out of the run to continue, or start a new run in another --out")
    if cfg.resume and _resumable(out):
        with exclusive(lock_path_for(out), f"qbc train is writing {str(out)!r}"):
            recover_dir(out / "last")  # a crash between the renames of the last save
            if not (out / "last" / "trainer_state.json").is_file():
                raise no_run  # replaced before the lock was ours
            run_identity(out)  # the parts of the folder belong to one run
            yield out, True
        return
    if cfg.resume and out.is_dir() and any(out.iterdir()):
        raise no_run
    refusal = (f"run directory {out} is not empty; pass --overwrite to replace its run, "
               "--resume to continue it, or choose another --out")
    with output_dir(out, cfg.overwrite, "train", refusal,
                    keep=lambda d: (d / "last" / "trainer_state.json").is_file(),
                    owned=RUN_OUTPUTS) as work:
        yield work, False


#: Everything a run writes into its folder: an --overwrite run replaces all of it, also the
#: entries it does not write itself (curves of a --tensorboard run, a --augment model).
RUN_OUTPUTS = ("train_config.json", "metrics.jsonl", "summary.json", "best", "last",
               "transition", "tensorboard", "wandb")


def _resumable(out: Path) -> bool:
    return (out / "last" / "trainer_state.json").is_file() or (out / ".last.old").is_dir()


#: The files of a run folder that record its run id (``run_id``, drawn when the run starts).
_RUN_ID_FILES = ("train_config.json", "last/config.json", "best/config.json")


def run_identity(out: Path) -> str | None:
    """The run id of the run in ``out`` (None for a run made before run ids were recorded).
    A folder whose parts were written by different runs (a ``last/`` copied from another
    run, an interrupted swap) is refused: resuming it would mix two runs."""
    ids = {}
    for rel in _RUN_ID_FILES:
        if (out / rel).is_file():
            stored = read_json(out / rel, what="run config")
            stored = stored.get("train", stored) if rel != _RUN_ID_FILES[0] else stored
            if isinstance(stored, dict) and isinstance(stored.get("run_id"), str):
                ids[rel] = stored["run_id"]
    if len(set(ids.values())) > 1:
        detail = ", ".join(f"{rel}: {rid[:8]}" for rel, rid in ids.items())
        raise CorruptFileError(
            f"--resume: the files of {out} belong to different runs (run ids {detail}); "
            "resume the run each came from in its own folder, or start a new run in another "
            "--out")
    return next(iter(ids.values()), None)


# -- the loop --------------------------------------------------------------------------------------
#: Ranges of the numeric flags (floats are also checked finite, seeds in [0, 2^32); the
#: --model.* settings by :func:`qbc.policy.registry.check_model_config`).
RULES = {"bins": Rule(lo=2, integer=True), "quantile": Rule(lo=0, hi=0.5, hi_open=True),
         "steps": Rule(lo=1, integer=True, optional=True), "epochs": POSITIVE,
         "patience": Rule(lo=0, integer=True, optional=True), "select_episodes": AT_LEAST_ONE,
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
    check_all([(cfg.select_by in SELECT_BY,
                f"--select-by must be one of {', '.join(SELECT_BY)}, got {cfg.select_by!r}"),
               (cfg.token_target in ("soft", "sampled"),
                f"--token-target must be 'soft' or 'sampled', got {cfg.token_target!r}"),
               (cfg.weight_quantizer is None or _known_ste(cfg.weight_quantizer),
                f"unknown --weight-quantizer {cfg.weight_quantizer!r}"),
               (cfg.augment in ("none", "model"),
                f"--augment must be 'none' or 'model', got {cfg.augment!r}"),
               (cfg.augment == "none" or needs_tokenizer(cfg.policy),
                f"--augment model needs a token policy, not {cfg.policy!r}"),
               (cfg.obs_encoder is None or _valid_obs_encoder(cfg.obs_encoder),
                f"bad --obs-encoder {cfg.obs_encoder!r}"),
               (cfg.transition_head in TRANSITION_HEADS,
                f"--transition-head must be 'gaussian' or 'tokens', got {cfg.transition_head!r}"),
               ])
    return _device_of(cfg)


def _validate(cfg: TrainConfig, demos: Any) -> torch.device:
    """:func:`validate_config`, then the checks that need the data (memory included)."""
    device = validate_config(cfg)
    check_all([(len(demos) > 0, "the demonstrations are empty"),
               (cfg.select_by != "rollout" or _makeable_env(demos),
                "--select-by rollout needs the dataset's env, which cannot be made here "
                f"({getattr(demos, 'env_id', None)!r}); use --select-by val-loss")])
    check_train_memory(cfg, demos)
    return device


def check_train_memory(cfg: TrainConfig, demos: Any) -> None:
    """Refuse a model and data that would not fit in memory: the parameters (counted on a
    model built on torch's 'meta' device, which allocates nothing) with gradients and AdamW
    moments, the data tensors, the tokenizer's tables and one batch of logits."""
    obs_dim = int(np.asarray(demos.observations).shape[-1])
    act_dim = int(np.asarray(demos.actions).shape[-1])
    tokens = needs_tokenizer(cfg.policy)
    tok = SimpleNamespace(n_tokens=act_dim, vocab_size=cfg.bins) if tokens else None
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

    import qbc  # noqa: F401  (registers the qbc/ envs)

    env_id = getattr(demos, "env_id", None)
    return bool(env_id) and env_id in gym.registry


def _known_ste(name: str) -> bool:
    """True for a valid STE spec; an unknown one raises the registry's one-line error."""
    from qbc.ste import get_ste

    get_ste(name)
    return True


def _valid_obs_encoder(spec: str) -> bool:
    """True for a usable --obs-encoder; a bad one raises a one-line error saying why."""
    from qbc.policy.obs_encoder import QuantizedProjectionEncoder, parse_obs_encoder

    QuantizedProjectionEncoder(obs_dim=1, **parse_obs_encoder(spec))
    return True


def train(cfg: TrainConfig, demos: Any, stop_at: int | None = None,
          init: Policy | None = None, run_log: RunLog | None = None) -> TrainResult:
    """Train ``cfg.policy`` on ``demos`` (a :class:`qbc.data.Demonstrations` or any object with
    observations (N, obs_dim), actions (N, D), episode_ids (N,) and ``split(val_fraction, seed)``).

    ``stop_at`` ends the run after that step as if it were interrupted (``last/`` is saved, the
    schedule still aims at ``cfg.steps``); a later ``resume=True`` run continues it.

    ``init`` warm-starts a new run from a trained policy of the same kind: its weights, tokenizer
    and normaliser are kept (not refitted), the optimiser and schedule start afresh (DAgger's
    ``--init warm``). A resumed run ignores it.

    ``run_log`` receives the curves (TensorBoard / W&B); without one, the run opens and closes
    its own as ``cfg.tensorboard`` / ``cfg.wandb`` ask.

    Under torchrun every rank calls this with the same arguments (see the module docstring).
    """
    device = _validate(cfg, demos)
    check_run_log(cfg.wandb)  # before the run folder is claimed: a refused run writes nothing
    with session(device) as ctx, claim_run(cfg, ctx) as (work, resuming):
        with _own_run_log(cfg, ctx, work, run_log) as log:
            return _train(cfg, demos, stop_at, device, ctx, work, resuming, init, log)


@contextmanager
def claim_run(cfg: TrainConfig, ctx: DistContext) -> Iterator[tuple[Path, bool]]:
    """:func:`run_dir` on rank 0, its (folder, resuming) shared with every rank."""
    with ExitStack() as stack:
        yield ctx.main_first(lambda: stack.enter_context(run_dir(cfg)))


@contextmanager
def _own_run_log(cfg: TrainConfig, ctx: DistContext, work: Path,
                 given: RunLog | None) -> Iterator[RunLog | None]:
    """``given``, else (rank 0 only) a RunLog writing into the run folder ``work``."""
    if given is not None or not ctx.is_main:
        yield given
        return
    with RunLog(work, config_dict(cfg), cfg.tensorboard, cfg.wandb) as own:
        yield own


def _train(cfg: TrainConfig, demos: Any, stop_at: int | None, device: torch.device,
           ctx: DistContext, work: Path, resuming: bool, init: Policy | None = None,
           run_log: RunLog | None = None) -> TrainResult:
    ctx.shard_bounds(cfg.batch_size)  # refuse a global batch the ranks cannot share equally
    env_id = getattr(demos, "env_id", None)
    if cfg.val_fraction > 0 and len(np.unique(demos.episode_ids)) >= 2:
        train_demos, val_demos = demos.split(cfg.val_fraction, cfg.seed)
    else:
        train_demos, val_demos = demos, None
    budget = {"from": "--steps" if cfg.steps is not None else "--epochs", "epochs": cfg.epochs}
    cfg = resolve_budget(cfg, len(train_demos))
    from qbc.data import demos_fingerprint

    conf = {**config_dict(cfg), "dataset_sha256": demos_fingerprint(demos)}
    final_out, cfg = cfg.out, dataclasses.replace(cfg, out=work)  # outputs go to work
    # A run keeps the id drawn when it started; --resume checks that the folder's parts agree.
    conf["run_id"] = (run_identity(work) if resuming else None) or uuid.uuid4().hex
    selection = _selection_plan(cfg, demos) if cfg.select_by == "rollout" else None

    torch.manual_seed(cfg.seed)
    tokenizer = normalizer = None
    state: dict[str, Any] = {}
    if resuming:
        last = cfg.out / "last"
        stored = read_json(last / "config.json", what="checkpoint config")
        stored = (stored.get("train") if isinstance(stored, dict) else None) or {}
        if not isinstance(stored, dict):
            raise CorruptFileError(f"{last / 'config.json'}: 'train' is not an object")
        _check_resume_config(stored, conf)
        module, _, normalizer, tokenizer = load_parts(last)
        state = read_json(last / "trainer_state.json", what="trainer state")
    elif init is not None:
        tokenizer, normalizer = init.tokenizer, init.normalizer
    tokenizer, normalizer, train_t, val_t = prepare_data(cfg, train_demos, val_demos, device,
                                                         tokenizer, normalizer)
    if not resuming and init is not None:
        module = copy.deepcopy(init.module)
    elif not resuming:
        module = build_policy(cfg.policy, cfg.model, int(train_t.obs.shape[-1]),
                              int(train_t.actions.shape[1]), tokenizer, cfg.obs_encoder)
        if cfg.weight_quantizer:
            from qbc.ste import quantize_linear_layers

            quantize_linear_layers(module, cfg.weight_quantizer)
    module.to(device)
    optimizer = make_optimizer(module, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    np_rng = (np.random.default_rng(cfg.seed)
              if tokenizer is not None and tokenizer.stochastic else None)
    best: dict[str, Any] = {"val_loss": None, "step": 0}
    metrics: list[dict[str, Any]] = []
    start = 0
    if resuming:
        try:
            tensors = load_tensors(cfg.out / "last" / "trainer.safetensors", "trainer state")
            _load_optimizer_state(optimizer, tensors, state["optimizer_param_groups"])
            scheduler.load_state_dict(state["scheduler"])
            batch_gen.set_state(tensors["rng.batch"])
            torch.set_rng_state(tensors["rng.torch_cpu"])
            if "rng.torch_cuda" in tensors and torch.cuda.is_available():
                torch.cuda.set_rng_state(tensors["rng.torch_cuda"])
            if np_rng is not None:
                np_rng.bit_generator.state = state["np_rng"]
            start, best = int(state["step"]), state["best"]
            if start < 0 or not isinstance(best, dict) or int(best["step"]) < 0:
                raise ValueError(f"step {start} or its best step is negative")
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CorruptFileError(f"{cfg.out / 'last'} cannot be resumed from ({exc}); "
                                   "start again with --overwrite") from None
        metrics = _read_metrics(cfg.out / "metrics.jsonl", upto=start)
    ctx.decorrelate_rng(cfg.seed, start)
    trained = ctx.wrap(module, device)  # after every rank has read out/last: rank 0 rewrites it
    if ctx.is_main:
        atomic_write_json(cfg.out / "train_config.json",
                          {**conf, "resolved_device": str(device), "world_size": ctx.world_size})

    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    bar = progress_bar(total=cfg.steps, initial=start, desc=f"train {cfg.policy}", unit="step",
                       disable=not (cfg.progress and ctx.is_main), dynamic_ncols=True)
    losses: list[float] = []
    # Wall time outside optimisation (validation, checkpoints) is kept apart, so samples/s
    # measures training alone.
    clock = {"t0": time.perf_counter(), "eval_s": 0.0, "checkpoint_s": 0.0}
    step, rate, stopped_early = start, 0.0, False
    for step in range(start + 1, end + 1):
        idx = torch.randint(len(train_t), (cfg.batch_size,), generator=batch_gen)
        # Every rank builds the same global batch (same generators), then keeps its own rows.
        batch = ctx.shard(make_batch(train_t, idx.to(device), tokenizer, cfg.token_target,
                                     np_rng))
        loss = train_step(trained, optimizer, scheduler, batch, cfg.grad_clip)
        if cfg.weight_quantizer:
            from qbc.ste import anneal_step

            anneal_step(module)
        losses.append(ctx.mean(loss, device))
        if step % 10 == 0 or step == end:
            rate = cfg.batch_size * (step - start) / _train_seconds(clock)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", samples_s=f"{rate:.0f}")
            if run_log is not None:
                run_log.scalars({"train/loss": losses[-1], "train/samples_per_s": rate,
                                 "train/lr": scheduler.get_last_lr()[0]}, step)
        bar.update(1)
        if step % cfg.eval_interval == 0 or step == end:
            record = {"step": step, "train_loss": float(np.mean(losses)),
                      "lr": scheduler.get_last_lr()[0], "samples_per_s": rate,
                      "elapsed_s": time.perf_counter() - clock["t0"]}
            losses = []
            if val_t is not None and ctx.is_main:
                record.update(_timed(clock, "eval_s", evaluate_split, module, val_t, tokenizer,
                                     normalizer, cfg.seed + 1))
                if selection is not None:
                    record["select_return"] = _timed(clock, "eval_s", selection_return, module,
                                                     normalizer, tokenizer, device, selection)
                best, improved = update_best(best, record, step, cfg.select_by)
                if improved:
                    _timed(clock, "checkpoint_s", save_checkpoint, cfg.out / "best", module,
                           normalizer, tokenizer, conf, env_id)
            # rank 0's evaluation, on every rank (the others wait here while it evaluates)
            record, best = _timed(clock, "eval_s", ctx.share, (record, best))
            metrics.append(record)
            if run_log is not None:
                run_log.scalars(record_scalars(record, "eval"), step)
            if ctx.is_main:
                _timed(clock, "checkpoint_s", _write_progress, cfg.out, metrics, module,
                       normalizer, tokenizer, optimizer, scheduler, step, batch_gen, np_rng,
                       best, conf, env_id)
            if val_t is not None and should_stop(best, step, cfg):
                stopped_early = True
                break
    bar.close()
    if val_t is None:  # no validation: the last checkpoint is the best we know
        if ctx.is_main:
            _timed(clock, "checkpoint_s", save_checkpoint, cfg.out / "best", module, normalizer,
                   tokenizer, conf, env_id)
        best = {"val_loss": None, "step": step}
    ctx.barrier()  # every rank loads the best checkpoint rank 0 has written
    from qbc.policy import load_policy

    final = metrics[-1] if metrics else {}
    return TrainResult(out=final_out, step=step, best_step=int(best["step"]),
                       best_val_loss=best["val_loss"],
                       final_train_loss=float(final.get("train_loss", float("nan"))),
                       samples_per_s=float(final.get("samples_per_s", 0.0)), metrics=metrics,
                       policy=load_policy(cfg.out / "best", device=device),
                       seconds={"train": _train_seconds(clock), "validation": clock["eval_s"],
                                "checkpoints": clock["checkpoint_s"]},
                       budget={**budget, "steps": cfg.steps, "patience": cfg.patience,
                               "stopped_early": stopped_early, "select_by": cfg.select_by})


# -- checkpoint selection and early stopping -----------------------------------------------------
def update_best(best: dict[str, Any], record: dict[str, Any], step: int,
                select_by: str) -> tuple[dict[str, Any], bool]:
    """The selection state after the evaluation ``record`` at ``step``, and whether this step's
    checkpoint becomes best/.

    ``best`` holds the selected checkpoint ('step', its 'val_loss', 'score' = its selection
    return) and the lowest validation loss so far ('min_val_loss' at 'min_val_step', which early
    stopping watches). 'val-loss' selects the lowest validation loss; 'rollout' the highest
    ``record["select_return"]``, ties to the lower validation loss."""
    new = dict(best)
    lowest = best.get("min_val_loss", best["val_loss"])
    if lowest is None or record["val_loss"] < lowest:
        new.update(min_val_loss=record["val_loss"], min_val_step=step)
    if select_by == "rollout":
        key = (record["select_return"], -record["val_loss"])
        improved = best.get("score") is None or key > (best["score"], -best["val_loss"])
    else:
        improved = new.get("min_val_step") == step
    if improved:
        new.update(val_loss=record["val_loss"], step=step, score=record.get("select_return"))
    return new, improved


def should_stop(best: dict[str, Any], step: int, cfg: TrainConfig) -> bool:
    """Early stopping: True once ``cfg.patience`` evaluations (patience x eval_interval steps)
    have passed without a lower validation loss; never with patience 0."""
    if not cfg.patience:
        return False
    last = best.get("min_val_step", best["step"])
    return step - last >= cfg.patience * cfg.eval_interval


def _selection_plan(cfg: TrainConfig, demos: Any) -> dict[str, Any]:
    """Env, seeds and horizon of the --select-by rollout evaluations: fixed seeds 5000 below the
    closing rollout's (disjoint from it and, by the same margin, from the data's)."""
    import gymnasium as gym

    from qbc.rollout import cap_horizons

    env_id = demos.env_id
    horizon = cfg.rollout_horizon or int(_provenance(demos).get("max_episode_steps")
                                         or gym.spec(env_id).max_episode_steps or 500)
    (horizon,), _ = cap_horizons(env_id, [horizon])
    first = default_rollout_seed(demos) - 5000
    return {"env_id": env_id, "seeds": range(first, first + cfg.select_episodes),
            "horizon": horizon}


def selection_return(module: torch.nn.Module, normalizer: Normalizer,
                     tokenizer: ActionTokenizer | None, device: torch.device,
                     plan: dict[str, Any]) -> float:
    """Mean return of the current weights (argmax decoding) over the selection rollout of
    :func:`_selection_plan`; the same seeds at every evaluation, so the comparison between
    checkpoints is coupled."""
    from qbc.rollout import coupled_rollout

    policy = Policy(module, normalizer, tokenizer, device=device)
    res = coupled_rollout(plan["env_id"], {"policy": policy}, plan["seeds"], plan["horizon"])
    return float(res.rewards["policy"].sum(0).mean())


def _timed(clock: dict[str, float], key: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``, adding its wall time in seconds to ``clock[key]``."""
    t = time.perf_counter()
    try:
        return fn(*args)
    finally:
        clock[key] += time.perf_counter() - t


def _train_seconds(clock: dict[str, float]) -> float:
    """Wall seconds since the loop started, less validation and checkpoint time."""
    return time.perf_counter() - clock["t0"] - clock["eval_s"] - clock["checkpoint_s"]


def _write_progress(out: Path, metrics: list[dict[str, Any]], *last_args: Any) -> None:
    """metrics.jsonl and out/last (:func:`save_last` with ``last_args``)."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in metrics))
    save_last(out, *last_args)


def _read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    """Records of an earlier run up to step ``upto`` (later ones were not checkpointed)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a crash
        if rec.get("step", 0) <= upto:
            out.append(rec)
    return out


# -- evaluation rollouts ---------------------------------------------------------------------------
def _provenance(demos: Any) -> dict[str, Any]:
    from qbc.expert_choice import provenance

    return provenance(getattr(demos, "metadata", None))


def default_rollout_seed(demos: Any) -> int:
    """A first seed past every episode seed the dataset was collected with."""
    prov = _provenance(demos)
    try:
        return int(prov["seed"]) + int(prov.get("n_episodes", demos.n_episodes)) + 10_000
    except (KeyError, TypeError, ValueError):
        return 1_000_000


def rollout_evaluation(policy: Any, demos: Any, episodes: int, horizon: int | None = None,
                       seed: int | None = None, progress: bool = False) -> dict[str, Any] | None:
    """Roll ``policy`` out on the demonstrations' env against the dataset's expert, coupled
    (the same episode seeds, disjoint from the data's), ``episodes`` x ``horizon`` steps.

    Returns and reward per step are taken over the full horizon (an episode that terminated or
    diverged earns nothing after it ends) and the fraction of failed episodes is given, as in
    :func:`qbc.rollout.horizon_metrics`. The expert is rebuilt from the dataset's provenance;
    without one (e.g. an external Minari dataset) ``expert`` is None and ``no_expert`` says why.
    None when the env id is unknown here. A horizon past a third-party env's time limit is
    capped (``horizon_capped`` holds the warning).
    """
    import gymnasium as gym

    import qbc  # noqa: F401  (registers the qbc/ envs)
    from qbc.rollout import cap_horizons, coupled_rollout, horizon_metrics

    env_id = getattr(demos, "env_id", None)
    if not env_id or env_id not in gym.registry:
        return None
    prov = _provenance(demos)
    if horizon is None:
        horizon = int(prov.get("max_episode_steps") or gym.spec(env_id).max_episode_steps or 500)
    (horizon,), capped = cap_horizons(env_id, [horizon])
    seed = default_rollout_seed(demos) if seed is None else seed
    expert, no_expert = _dataset_expert(prov, env_id)
    actors = {"policy": policy} if expert is None else {"expert": expert, "policy": policy}
    res = coupled_rollout(env_id, actors, range(seed, seed + episodes), horizon,
                          progress=progress)
    out = {"env_id": env_id, "episodes": episodes, "horizon": horizon, "first_seed": seed,
           "horizon_capped": capped, "expert": None if expert is None else expert.name,
           "no_expert": no_expert}
    ref = "policy" if expert is None else "expert"
    per = horizon_metrics(res, [horizon], reference=ref)["policies"]
    for name, m in per.items():
        m = m[str(horizon)]
        out[f"{name}_mean_return"] = m["return"]
        out[f"{name}_reward_per_step"] = m["return"] / horizon
        out[f"{name}_failed_fraction"] = m["diverged_fraction"]
    if expert is not None:
        m = per["policy"][str(horizon)]
        out.update(regret=m["regret"], regret_ci95=m["regret_ci95"])
    return out


def _dataset_expert(prov: dict[str, Any], env_id: str) -> tuple[Any, str | None]:
    """The expert named in a qbc dataset's provenance, or (None, why there is none)."""
    from qbc.errors import QbcError

    spec = prov.get("expert")
    if not isinstance(spec, dict) or "name" not in spec:
        return None, "the dataset does not name a qbc expert (not collected by qbc collect)"
    try:
        from qbc.agents import make_expert

        return make_expert(spec, env_id), None
    except (QbcError, ImportError) as exc:
        return None, f"its expert {spec['name']!r} cannot be rebuilt here ({exc})"


# -- the `qbc train` command -----------------------------------------------------------------------
def run_train(cfg: TrainConfig) -> dict[str, Any]:
    """Load the dataset, train, roll the best policy out, write summary.json and print it.

    Every setting is checked before the dataset is read, and the data before the run folder
    is touched. Under torchrun every rank trains; rank 0 alone does the rest (the other ranks
    return the training numbers without writing or printing anything)."""
    from qbc.data import load_demonstrations

    validate_config(cfg)
    demos = load_demonstrations(cfg.dataset, drop_nonfinite=cfg.drop_nonfinite)
    device = _validate(cfg, demos)
    check_run_log(cfg.wandb)  # before the run folder is claimed: a refused run writes nothing
    with session(device) as ctx, claim_run(cfg, ctx) as (work, resuming):
        with _own_run_log(cfg, ctx, work, None) as run_log:
            result = _train(cfg, demos, None, device, ctx, work, resuming, None, run_log)
            summary = _finish(cfg, demos, result, ctx, work, run_log)
    if ctx.is_main:
        print(format_summary(summary))
    return summary


def _finish(cfg: TrainConfig, demos: Any, result: TrainResult, ctx: DistContext,
            work: Path, run_log: RunLog | None) -> dict[str, Any]:
    """The summary of a trained run (rank 0: with the transition model and the closing
    rollout, written to ``work / "summary.json"``, the rollout also to the run log)."""
    summary: dict[str, Any] = {
        "policy": cfg.policy, "dataset": cfg.dataset, "steps": result.step,
        "final_train_loss": result.final_train_loss, "best_val_loss": result.best_val_loss,
        "best_step": result.best_step, "train_samples_per_s": result.samples_per_s,
        "seconds": result.seconds, "budget": result.budget,
        "checkpoint": str(cfg.out / "best"),
    }
    if not ctx.is_main:
        return summary
    if result.policy.tokenizer is not None:
        summary["tokenizer"] = {"quantizer": cfg.quantizer, "vocab": result.policy.tokenizer
                                .vocab_size, "n_tokens": result.policy.tokenizer.n_tokens}
    if cfg.augment == "model":
        train_transition_model(dataclasses.replace(cfg, out=work), demos, result.policy)
        summary["transition_model"] = str(cfg.out / "transition")
    if cfg.rollout_episodes > 0:
        summary["rollout"] = rollout_evaluation(result.policy, demos, cfg.rollout_episodes,
                                                cfg.rollout_horizon, cfg.rollout_seed,
                                                progress=cfg.progress)
        if summary["rollout"] and summary["rollout"]["horizon_capped"]:
            warnings.warn(summary["rollout"]["horizon_capped"], QbcWarning, stacklevel=2)
        if summary["rollout"] and run_log is not None:
            run_log.scalars(record_scalars(summary["rollout"], "rollout"), result.step)
    summary["run_logs"] = run_log.writing if run_log is not None else []
    atomic_write_json(work / "summary.json", summary)
    return summary


def train_transition_model(cfg: TrainConfig, demos: Any, policy: Policy) -> Path:
    """Fit the transition model of model-based deployment on the training episodes (the same
    split as the policy's) with the policy's tokenizer; save it in ``cfg.out / "transition"``."""
    from qbc.augment import TransitionModelConfig, fit_transition_model, save_transition_model

    if policy.tokenizer is None:
        raise InvalidValueError(f"--augment model needs a token policy, not {cfg.policy!r}")
    train_demos = (demos.split(cfg.val_fraction, cfg.seed)[0]
                   if cfg.val_fraction > 0 and len(np.unique(demos.episode_ids)) >= 2 else demos)
    model = fit_transition_model(train_demos.observations, train_demos.actions,
                                 train_demos.next_observations, policy.tokenizer,
                                 TransitionModelConfig(steps=cfg.transition_steps, seed=cfg.seed,
                                                       head=cfg.transition_head,
                                                       state_bins=cfg.transition_bins),
                                 progress=cfg.progress)
    return save_transition_model(model, cfg.out / "transition")


def format_summary(s: dict[str, Any]) -> str:
    val = "-" if s["best_val_loss"] is None else f"{s['best_val_loss']:.4g}"
    sec = s.get("seconds") or {}
    lines = [f"trained {s['policy']} on {s['dataset']}: {s['steps']} steps, "
             f"{s['train_samples_per_s']:.0f} samples/s (training alone: "
             f"{sec.get('train', 0):.1f} s; validation {sec.get('validation', 0):.1f} s and "
             f"checkpoints {sec.get('checkpoints', 0):.1f} s not counted)",
             f"  final train loss {s['final_train_loss']:.4g}, best val loss {val} "
             f"(step {s['best_step']})",
             budget_line(s.get("budget") or {}),
             f"  checkpoint: {s['checkpoint']}"]
    r = s.get("rollout")
    if r:
        lines.append(rollout_line(r))
    elif "rollout" in s:
        lines.append("  rollouts skipped: the dataset's env id cannot be made here")
    return "\n".join(lines)


def budget_line(b: dict[str, Any]) -> str:
    """Where the step budget came from and whether early stopping ended the run."""
    if not b:
        return "  budget: -"
    origin = ("--steps" if b["from"] == "--steps"
              else f"{b['epochs']:g} epochs of the training split")
    stop = (f"stopped early: no lower validation loss in {b['patience']} evaluations"
            if b["stopped_early"] else
            f"early stopping after {b['patience']} evaluations without improvement"
            if b["patience"] else "no early stopping")
    return (f"  budget: {b['steps']} steps ({origin}); {stop}; best checkpoint by "
            f"{b['select_by']}")


def rollout_line(r: dict[str, Any]) -> str:
    """The closing rollout in words: learner vs expert on the same seeds, returns over the
    full horizon, failed (terminated or diverged) episodes as a fraction."""
    head = (f"  coupled rollouts, {r['episodes']} episodes x {r['horizon']} steps on "
            f"{r['env_id']} (seeds {r['first_seed']}..{r['first_seed'] + r['episodes'] - 1}): ")
    policy = (f"policy return {r['policy_mean_return']:.4g} "
              f"({r['policy_reward_per_step']:.4g}/step over all {r['horizon']} steps), "
              f"{r['policy_failed_fraction']:.0%} of episodes "
              "failed (terminated or diverged)")
    if r.get("expert") is None:
        return head + policy + f"; not compared with an expert: {r['no_expert']}"
    lo, hi = r["regret_ci95"]
    return (head + policy + f"; expert {r['expert']} on the same seeds "
            f"{r['expert_mean_return']:.4g} ({r['expert_reward_per_step']:.4g}/step), "
            f"{r['expert_failed_fraction']:.0%} failed; regret {r['regret']:.4g} "
            f"[95% CI {lo:.3g}, {hi:.3g}]")


def _train_command():
    from qbc.cli import Command

    return Command(TrainConfig, run_train, "train a BC policy (AR transformer or a baseline)")


TRAIN_COMMAND = _train_command()


if __name__ == "__main__":  # python -m qbc.train / torchrun -m qbc.train: the flags of `qbc train`
    import sys

    from qbc.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
