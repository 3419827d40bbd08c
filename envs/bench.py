"""Throughput of the native vector envs against Gymnasium's SyncVectorEnv, measured side by side.

Both step the same env with the same fixed batch of uniform random actions (so unstable envs
diverge and autoreset, which the measurement includes); steps/s counts env steps
(copies x vector steps) per wall-clock second.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from qbc.errors import InvalidValueError
from qbc.io import atomic_write_json
from qbc.progress import progress_bar


def _steps_per_second(env: Any, actions: np.ndarray, steps: int, seed: int) -> float:
    env.reset(seed=seed)
    env.step(actions)  # warm-up: first-call overheads are not throughput
    start = time.perf_counter()
    for _ in range(steps):
        env.step(actions)
    elapsed = time.perf_counter() - start
    return env.num_envs * steps / elapsed


def bench_vector_env(
    env_id: str, num_envs: int = 1024, native_steps: int = 500, sync_steps: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Env steps per second of ``make_vec(env_id, num_envs)`` with the native vector entry
    point and with ``SyncVectorEnv``; returns both and their ratio."""
    if min(num_envs, native_steps, sync_steps) < 1:
        raise InvalidValueError("num_envs, native_steps and sync_steps must be >= 1")
    kwargs = {"A": [[1.1]], "B": [[1.0]]} if env_id == "qbc/LinearSystem-v0" else {}
    native = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                          **kwargs)
    sync = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **kwargs)
    space = native.action_space
    actions = np.random.default_rng(seed).uniform(space.low, space.high).astype(np.float32)
    try:
        native_sps = _steps_per_second(native, actions, native_steps, seed)
        sync_sps = _steps_per_second(sync, actions, sync_steps, seed)
    finally:
        native.close()
        sync.close()
    return {"env_id": env_id, "num_envs": num_envs, "native_steps_per_s": native_sps,
            "sync_steps_per_s": sync_sps, "speedup": native_sps / sync_sps}


@dataclass
class BenchVectorConfig:
    """Measure native vector env throughput against SyncVectorEnv."""

    env_ids: list[str] = field(default_factory=lambda: [
        "qbc/ScalarUnstable-v0", "qbc/LinearStable-v0", "qbc/LinearUnstable-v0",
        "qbc/Arctan-v0", "qbc/InvertedPendulum-v0", "qbc/CartPoleContinuous-v0",
    ])
    """Env ids to measure."""
    num_envs: int = 1024
    """Copies per vector env."""
    native_steps: int = 500
    """Timed vector steps of the native env."""
    sync_steps: int = 20
    """Timed vector steps of SyncVectorEnv (slow: each is num_envs Python env steps)."""
    seed: int = 0
    """Seed of the resets and of the fixed random actions."""
    out_dir: Path = Path("runs/bench_vector_env")
    """Folder for config.json and results.json."""


def run_bench_vector(config: BenchVectorConfig) -> list[dict[str, Any]]:
    """Measure every env id; write config.json and results.json; print a table."""
    results = [
        bench_vector_env(env_id, config.num_envs, config.native_steps, config.sync_steps,
                         config.seed)
        for env_id in progress_bar(config.env_ids, desc="bench vector envs")
    ]
    atomic_write_json(config.out_dir / "config.json",
                      {**asdict(config), "out_dir": str(config.out_dir)})
    atomic_write_json(config.out_dir / "results.json", results)
    print(f"{'env':<28}{'native steps/s':>16}{'sync steps/s':>14}{'speedup':>9}"
          f"   ({config.num_envs} copies)")
    for r in results:
        print(f"{r['env_id']:<28}{r['native_steps_per_s']:>16,.0f}{r['sync_steps_per_s']:>14,.0f}"
              f"{r['speedup']:>8.0f}x")
    return results


def _command():
    from qbc.cli import Command

    return Command(BenchVectorConfig, run_bench_vector,
                   "native vector envs vs SyncVectorEnv, steps per second")


BENCH_VECTOR_COMMAND = _command()
