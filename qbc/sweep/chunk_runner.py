"""What a chunk cell of a sweep does: train its one chunk policy once
(:func:`qbc.training.chunked.train_chunked`), then roll it out coupled with the expert once per
execution mode (:class:`qbc.chunking.execution.ChunkExecutor`), one row per (mode, H).

Every mode's executor wraps the same trained policy; the coupled rollout runs them one after
another from the same episode seeds and noise as the expert, so the modes differ only in how the
chunks are executed. ``decode_failures`` is a mode's repaired chunks over its whole rollout (to
the largest H); ``tokens_per_chunk`` the mean token count of the tokenizer's code of the cell's
demonstration chunks (None for the continuous ``chunk-mlp-l1``); ``decode_actions_per_s`` the
actions a mode's executor returned per second of its own time (batch ``num_envs``, this cell's
CPU: compare within one sweep run, not across machines). ``floor_regret`` and
``floor_diverged_fraction`` are the chunk floor's in the same mode (the expert's noise-free plans
through the cell's chunk tokenizer, :mod:`qbc.chunking.floor`), rolled out on the same seeds;
``floor_success`` its success rate where the env reports success.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from qbc.chunking.execution import ChunkExecutor
from qbc.chunking.floor import chunk_floor_actor
from qbc.policy import ModelConfig
from qbc.policy.decoding import parse_decoding
from qbc.policy.registry import model_for
from qbc.rollout.evaluate import evaluate_actors
from qbc.sweep.cells import Cell
from qbc.sweep.rows import budget_columns, capped_horizons, make_row, nominal_bin_width
from qbc.training.chunk_data import chunk_rows
from qbc.training.chunk_head import with_used_head_settings
from qbc.training.chunked import ChunkTrainConfig, train_chunked


def run_chunk_cell(cell: Cell, work: Path, demos: Any, expert: Any) -> list[dict[str, Any]]:
    """Train ``cell``'s chunk policy on ``demos`` (checkpoint under ``work``), roll it out per
    execution mode against ``expert``; the result-table rows (one per mode and H)."""
    import torch

    s = cell.settings
    ro, horizons = s["rollout"], capped_horizons(cell)
    (kind,) = cell.policies
    t1 = time.perf_counter()
    policy, trained = train_chunk_policy(cell, kind, demos, work / kind)
    train_seconds = time.perf_counter() - t1
    policy.generator = torch.Generator().manual_seed(cell.seed)  # sampled decoding only
    executors = {mode: ChunkExecutor(policy, mode) for mode in s["executions"]}
    names = {mode: f"{kind} {mode}" for mode in executors}
    env_kwargs = cell.env_kwargs_dict  # the env variant: the floor plans on the same dynamics
    floors = {mode: chunk_floor_actor(cell.env, expert, policy.chunk_len,
                                      policy.chunk_tokenizer, mode, env_kwargs)
              for mode in executors}
    floors = {m: f for m, f in floors.items() if f is not None}  # none: the robotics tasks
    report = evaluate_actors(cell.env, {"expert": expert,
                                        **{names[m]: e for m, e in executors.items()},
                                        **{f"floor {m}": f for m, f in floors.items()}},
                             ro["seed"], ro["episodes"], horizons, num_envs=ro["num_envs"],
                             divergence_threshold=ro["divergence_threshold"],
                             env_kwargs=env_kwargs)
    width = nominal_bin_width(demos.actions, cell.bins) if cell.bins else None
    tokens = tokens_per_chunk(policy, demos, cell.chunk_len)
    rows = []
    for mode, executor in executors.items():
        extra = {**trained, "train_seconds": train_seconds, "execution": mode,
                 "tokens_per_chunk": tokens, "decode_failures": executor.decode_failures,
                 "chunks_predicted": executor.n_chunks,
                 "decode_failure_rate": executor.decode_failures / max(executor.n_chunks, 1),
                 "decode_actions_per_s": executor.actions_per_second}
        floor = report.policies.get(f"floor {mode}")
        rows += [make_row(cell, kind, h, report.policies[names[mode]][str(h)],
                          report.policies["expert"][str(h)], width,
                          {**extra, **_floor_columns(floor[str(h)] if floor else None)})
                 for h in horizons]
    return rows


def _floor_columns(floor: dict[str, Any] | None) -> dict[str, Any]:
    """A row's chunk-floor columns from the floor's metrics at one H (None: no floor, empty)."""
    floor = floor or {}
    return {"floor_regret": floor.get("regret"),
            "floor_diverged_fraction": floor.get("diverged_fraction"),
            "floor_success": floor.get("success")}


def train_chunk_policy(cell: Cell, kind: str, demos: Any, out: Path
                       ) -> tuple[Any, dict[str, Any]]:
    """Train chunk policy ``kind`` for ``cell``: (the best checkpoint as a
    :class:`qbc.policy.chunked.ChunkPolicy`, its columns: validation loss and step budget).
    Without [train] steps the budget is train-chunked's own (data-scaled, early stopping)."""
    tr = cell.settings["train"]
    tok = json.loads(cell.chunk_tokenizer) if cell.chunk_tokenizer else {"name": "per-step",
                                                                       "params": {}}
    # Parameters travel as ChunkTrainConfig's 'name=value,...' text, each value as JSON.
    params = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(tok["params"].items()))
    cfg = ChunkTrainConfig(
        dataset=cell.dataset.dataset_id, out=out, policy=kind, chunk_k=cell.chunk_len,
        chunk_tokenizer=tok["name"], chunk_tokenizer_params=params, bins=cell.bins or 64,
        # the grid's model settings, less the ones this kind would ignore
        model=model_for(kind, ModelConfig(**tr["model"])),
        steps=tr["steps"], batch_size=tr["batch_size"],
        lr=tr["lr"], warmup_steps=tr["warmup_steps"], seed=cell.seed,
        val_fraction=tr["val_fraction"], eval_interval=tr["eval_interval"], device="cpu",
        rollout_episodes=0, progress=False, overwrite=True)
    result = train_chunked(with_used_head_settings(cfg), demos)
    policy = result["policy"]
    if policy.chunk_tokenizer is not None:
        policy.decode_mode, policy.temperature = parse_decoding(tr["decode"])
    return policy, {"val_loss": result["best_val_loss"],
                    **budget_columns(result["steps"], result["budget"], result["best_step"])}


def tokens_per_chunk(policy: Any, demos: Any, k: int) -> float | None:
    """Mean tokens per chunk of the policy's chunk tokenizer over every chunk of ``demos``
    (fixed-length codes: their length); None without a tokenizer."""
    import numpy as np

    tok = policy.chunk_tokenizer
    if tok is None:
        return None
    if tok.n_tokens is not None:
        return float(tok.n_tokens)
    _, chunks = chunk_rows(demos, k)
    return float(np.mean([len(t) for t in tok.encode(chunks)]))
