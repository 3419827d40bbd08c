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
step (observation histories, stochastic and soft tokens) and its loop carries resume, DDP,
rollout selection, weight quantization and model-based augmentation, none of which is defined for
chunks yet; here every flag listed does something. The run directory::

    train_config.json  metrics.jsonl  best/ (lowest validation loss)  summary.json
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.chunking import get_chunk_tokenizer_class, make_chunk_tokenizer, make_chunks
from qbc.chunking.chunks import check_chunk_len
from qbc.chunking.execution import ChunkExecutor, parse_execute
from qbc.environ import scoped_torch_rng
from qbc.errors import InvalidValueError, QbcWarning
from qbc.io import atomic_write_json, output_dir
from qbc.policy import ModelConfig, Normalizer
from qbc.policy.chunked import (
    CHUNK_POLICIES,
    ChunkPolicy,
    build_chunk_policy,
    chunk_token_layout,
    pad_sequences,
)
from qbc.policy.loading import save_checkpoint
from qbc.policy.registry import check_model_config
from qbc.progress import progress_bar
from qbc.training.checkpoint import write_metrics
from qbc.training.config import RULES, OptimConfig, config_dict, device_of
from qbc.training.data import split_demos
from qbc.training.evaluation import check_rollout_sizes, rollout_evaluation
from qbc.training.optim import make_optimizer, make_scheduler, train_step
from qbc.validate import (
    AT_LEAST_ONE,
    check_all,
    check_config,
)


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
    --bins bins; rvq 4 levels of --bins codes; fast scale 10, vocabulary 1024."""
    bins: int = 64
    """bins per token position (per-step, beast) or codes per level (rvq)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings (obs_history must stay 1)."""
    steps: int = 2000
    """optimisation steps."""
    batch_size: int = 256
    """chunks per step."""


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
    """'auto', 'cpu', 'cuda', 'cuda:1', ..."""
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
    overwrite: bool = False
    """replace the files of an earlier run in out."""


# -- data ------------------------------------------------------------------------------------------
def chunk_rows(demos: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(observations (N, obs_dim) at each chunk's first step, chunks (N, k, D)) of every window
    of k steps inside an episode (stride 1). Episodes shorter than k are refused (one line)."""
    ids = np.asarray(demos.episode_ids)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(ids)], strict=True))
    actions = np.asarray(demos.actions, dtype=np.float32)
    chunks = make_chunks([actions[a:b] for a, b in bounds], k)
    obs = np.concatenate([np.asarray(demos.observations[a:b - k + 1], dtype=np.float32)
                          for a, b in bounds])
    return obs, chunks


def parse_params(text: str) -> dict[str, Any]:
    """'scale=20,quantizer=kmeans' -> {'scale': 20, 'quantizer': 'kmeans'} (JSON values where
    they parse, else strings)."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidValueError(
                f"bad --chunk-tokenizer-params item {item!r}; write name=value,name=value")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value.strip()
    return out


def tokenizer_params(cfg: ChunkTrainConfig) -> dict[str, Any]:
    """The chunk tokenizer's parameters: per-name defaults from k and --bins, then the user's."""
    k, bins = cfg.chunk_k, cfg.bins
    points = min(k, 10)
    defaults = {"per-step": {"quantizer": "uniform", "n_bins": bins},
                "beast": {"n_control_points": points, "degree": min(3, points - 1), "bins": bins},
                "rvq": {"levels": 4, "codes": bins, "seed": cfg.seed}, "fast": {}}
    return {**defaults.get(cfg.chunk_tokenizer, {}), **parse_params(cfg.chunk_tokenizer_params)}


@dataclass
class ChunkData:
    """One split as tensors: obs (N, 1, obs_dim) normalised; targets by policy kind."""

    obs: torch.Tensor
    actions: torch.Tensor | None = None
    """(N, k * D) normalised chunks (chunk-mlp-l1)."""
    tokens: torch.Tensor | None = None
    """(N, n) int64 (chunk-ar-transformer)."""
    mask: torch.Tensor | None = None
    """(N, n) float32, variable-length codes: 1 up to and including the end token."""

    def __len__(self) -> int:
        return len(self.obs)

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        fields = {"obs": self.obs, "actions": self.actions, "tokens": self.tokens,
                  "mask": self.mask}
        return {name: t[idx] for name, t in fields.items() if t is not None}


def chunk_tensors(obs: np.ndarray, chunks: np.ndarray, normalizer: Normalizer,
                  encoded: Any, layout: tuple[int, int, int | None] | None,
                  device: torch.device) -> ChunkData:
    """Tensors of one split: ``encoded`` are the chunks' tokens (None for the MLP) laid out by
    ``layout`` = (positions, vocabulary, end token or None)."""
    x = torch.from_numpy(normalizer.obs(obs)[:, None]).to(device)
    if encoded is None:
        z = (chunks - normalizer.act_mean) / normalizer.act_std
        return ChunkData(x, actions=torch.from_numpy(z.reshape(len(z), -1).astype(np.float32))
                         .to(device))
    n, _, end = layout
    if end is None:
        return ChunkData(x, tokens=torch.from_numpy(np.asarray(encoded, np.int64)).to(device))
    tokens, mask = pad_sequences(encoded, n, end)
    return ChunkData(x, tokens=torch.from_numpy(tokens).to(device),
                     mask=torch.from_numpy(mask).to(device))


def prepare_chunk_data(cfg: ChunkTrainConfig, demos: Any, device: torch.device):
    """Split by episodes, cut chunks, fit the normaliser (per step) and the chunk tokenizer on
    the training split. Returns (tokenizer or None, normalizer, longest token sequence or None,
    train ChunkData, val ChunkData or None)."""
    train_demos, val_demos = split_demos(demos, cfg.val_fraction, cfg.seed)
    parts = [chunk_rows(train_demos, cfg.chunk_k)]
    if val_demos is not None and len(val_demos) > 0:
        parts.append(chunk_rows(val_demos, cfg.chunk_k))
    normalizer = Normalizer.fit(train_demos.observations, train_demos.actions)
    tokenizer = layout = max_len = None
    encoded: list[Any] = [None] * len(parts)
    if cfg.policy == "chunk-ar-transformer":
        tokenizer = make_chunk_tokenizer(cfg.chunk_tokenizer, **tokenizer_params(cfg))
        tokenizer.fit(parts[0][1])
        encoded = [tokenizer.encode(chunks) for _, chunks in parts]
        max_len = max(len(s) for enc in encoded for s in enc)
        layout = chunk_token_layout(tokenizer, max_len)
    data = [chunk_tensors(o, c, normalizer, e, layout, device)
            for (o, c), e in zip(parts, encoded, strict=True)]
    return tokenizer, normalizer, max_len, data[0], (data[1] if len(data) > 1 else None)


#: Ranges of the numeric flags of train-chunked (the --model.* ones: check_model_config): the
#: shared ones are `qbc train`'s, except that --steps is required here.
CHUNK_RULES = {**{k: RULES[k] for k in (
    "batch_size", "lr", "min_lr_ratio", "weight_decay", "warmup_steps", "grad_clip",
    "val_fraction", "eval_interval", "bins", "rollout_episodes", "rollout_horizon")},
    "steps": AT_LEAST_ONE}


def _validate(cfg: ChunkTrainConfig) -> None:
    """Every flag checked before anything is read or written (one-line InvalidValueError)."""
    from qbc.errors import UnknownNameError

    k = check_chunk_len(cfg.chunk_k, "--chunk-k")
    if cfg.policy not in CHUNK_POLICIES:
        raise UnknownNameError("chunk policy", cfg.policy, CHUNK_POLICIES)
    if cfg.policy == "chunk-ar-transformer":
        get_chunk_tokenizer_class(cfg.chunk_tokenizer)
        parse_params(cfg.chunk_tokenizer_params)
    spec = parse_execute(cfg.execute)
    check_config(cfg, CHUNK_RULES)  # also: every float finite, ints in 64 bits, seeds in range
    check_model_config(cfg.model)
    check_all([(spec.mode != "receding" or spec.value <= k,
                f"--execute {spec}: M is longer than --chunk-k {k}; use M <= {k}"),
               (cfg.model.obs_history == 1, "chunk policies see the current observation only; "
                                            "use --model.obs-history 1")])


@torch.no_grad()
def chunk_val_loss(module: torch.nn.Module, data: ChunkData, rows: int = 8192) -> float:
    """Mean loss over a split (the training objective), in slices of ``rows``."""
    module.eval()
    total = 0.0
    for start in range(0, len(data), rows):
        idx = torch.arange(start, min(len(data), start + rows), device=data.obs.device)
        total += float(module.loss(data.batch(idx))) * len(idx)
    return total / len(data)


def train_chunked(cfg: ChunkTrainConfig, demos: Any) -> dict[str, Any]:
    """Train ``cfg.policy`` on the chunks of ``demos`` (a :class:`qbc.data.Demonstrations`);
    keep the checkpoint with the lowest validation loss in ``cfg.out / "best"``. Returns the
    summary numbers and ``policy`` (the best checkpoint as a :class:`ChunkPolicy`). The run is
    written through :func:`qbc.io.output_dir` (locked; staged under --overwrite)."""
    from qbc.policy import load_policy

    _validate(cfg)
    device = device_of(cfg)
    with scoped_torch_rng():  # the caller's torch random state is left as found
        torch.manual_seed(cfg.seed)
        data = prepare_chunk_data(cfg, demos, device)
        with output_dir(cfg.out, cfg.overwrite, "train-chunked") as out:  # after the data
            result = _fit(cfg, demos, device, data, out)
    return {"policy": load_policy(cfg.out / "best", device=device), **result}


def _fit(cfg: ChunkTrainConfig, demos: Any, device: torch.device, data: tuple, out: Path
         ) -> dict[str, Any]:
    """The training loop of :func:`train_chunked`, writing into ``out``."""
    tokenizer, normalizer, max_len, train_d, val_d = data
    obs_dim, act_dim = int(train_d.obs.shape[-1]), len(normalizer.act_mean)
    module = build_chunk_policy(cfg.policy, cfg.model, obs_dim, act_dim, cfg.chunk_k, tokenizer,
                                max_len).to(device)
    optimizer = make_optimizer(module, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    conf, env_id = config_dict(cfg), getattr(demos, "env_id", None)
    atomic_write_json(out / "train_config.json", conf)
    best, metrics, losses = {"val_loss": None, "step": 0}, [], []
    start = time.perf_counter()
    for step in progress_bar(range(1, cfg.steps + 1), desc=f"train {cfg.policy}", unit="step",
                             disable=not cfg.progress):
        idx = torch.randint(len(train_d), (cfg.batch_size,), generator=gen).to(device)
        losses.append(train_step(module, optimizer, scheduler, train_d.batch(idx), cfg.grad_clip))
        if step % cfg.eval_interval and step != cfg.steps:
            continue
        record = {"step": step, "train_loss": float(np.mean(losses)),
                  "lr": scheduler.get_last_lr()[0]}
        losses = []
        if val_d is not None:
            record["val_loss"] = chunk_val_loss(module, val_d)
        if val_d is None or best["val_loss"] is None or record["val_loss"] < best["val_loss"]:
            best = {"val_loss": record.get("val_loss"), "step": step}
            save_checkpoint(out / "best", module, normalizer, tokenizer, conf, env_id)
        metrics.append(record)
        write_metrics(out / "metrics.jsonl", metrics)
    seconds = time.perf_counter() - start
    return {"steps": cfg.steps, "best_step": best["step"], "best_val_loss": best["val_loss"],
            "final_train_loss": metrics[-1]["train_loss"], "train_rows": len(train_d),
            "train_samples_per_s": cfg.batch_size * cfg.steps / seconds}


def closing_rollout(cfg: ChunkTrainConfig, policy: ChunkPolicy, demos: Any
                    ) -> dict[str, Any] | None:
    """:func:`~qbc.training.evaluation.rollout_evaluation` of the policy executed by
    ``cfg.execute``, plus the execution mode, chunks predicted and decode failures (repaired
    chunks)."""
    executor = ChunkExecutor(policy, cfg.execute)
    res = rollout_evaluation(executor, demos, cfg.rollout_episodes, cfg.rollout_horizon,
                             cfg.rollout_seed, progress=cfg.progress)
    if res is not None:
        res.update(execute=str(executor.spec), chunks=executor.n_chunks,
                   decode_failures=executor.decode_failures)
    return res


# -- a whole run -------------------------------------------------------------------------------
def run_train_chunked(cfg: ChunkTrainConfig) -> dict[str, Any]:
    """Check the flags, load the dataset, train, roll the best policy out, write summary.json;
    returns the summary (the ``qbc train-chunked`` command prints it)."""
    from qbc.data import load_demonstrations

    _validate(cfg)
    demos = load_demonstrations(cfg.dataset)
    check_rollout_sizes(demos, cfg.rollout_episodes, cfg.rollout_horizon, cfg.rollout_seed)
    result = train_chunked(cfg, demos)
    policy = result.pop("policy")
    summary = {"policy": cfg.policy, "dataset": cfg.dataset, "chunk_k": cfg.chunk_k, **result,
               "checkpoint": str(cfg.out / "best")}
    if policy.chunk_tokenizer is not None:
        tok = policy.chunk_tokenizer
        summary["tokenizer"] = {"name": tok.name, "params": tok.get_params(),
                                "vocab": int(tok.vocab_size), "n_tokens": tok.n_tokens,
                                "positions": int(policy.module.cfg.n_tokens)}
    if cfg.rollout_episodes > 0:
        summary["rollout"] = closing_rollout(cfg, policy, demos)
        if summary["rollout"] and summary["rollout"]["horizon_capped"]:  # as qbc train warns
            warnings.warn(summary["rollout"]["horizon_capped"], QbcWarning, stacklevel=2)
    atomic_write_json(cfg.out / "summary.json", summary)
    return summary
