"""``qbc data``: summarise a local Minari dataset (episodes, steps, returns, provenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from qbc.cli import Command
from qbc.data import Demonstrations, load_demonstrations


@dataclass
class DataConfig:
    """Summarise a local Minari dataset: episodes, steps, returns, shapes and provenance."""

    dataset: str
    """Minari dataset id, e.g. qbc/linear-unstable-lqr-v0 (under $MINARI_DATASETS_PATH)."""
    drop_nonfinite: bool = False
    """drop episodes with NaN/inf observations or actions instead of refusing the dataset."""


def run_data(cfg: DataConfig) -> Demonstrations:
    demos = load_demonstrations(cfg.dataset, drop_nonfinite=cfg.drop_nonfinite)
    print(format_demonstrations(demos))
    return demos


def format_demonstrations(demos: Demonstrations) -> str:
    """A few lines describing demonstrations and where they came from."""
    returns, lengths = demos.episode_returns(), demos.episode_lengths()
    q = demos.metadata.get("qbc") or {}
    expert = q.get("expert") or {}
    lines = [
        f"dataset {demos.metadata.get('dataset_id', '?')}: env {demos.env_id}, "
        f"{demos.n_episodes} episodes, {len(demos)} steps, obs_dim {demos.obs_dim}, "
        f"act_dim {demos.act_dim}",
        f"episode length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), "
        f"{int(demos.terminations.sum())} terminated",
        f"return {returns.mean():.4g} +- {returns.std():.4g} (min {returns.min():.4g}, "
        f"max {returns.max():.4g})",
        f"actions min {np.round(demos.actions.min(axis=0), 4).tolist()} "
        f"max {np.round(demos.actions.max(axis=0), 4).tolist()}",
    ]
    if q:
        lines.append(f"expert {expert.get('name')} {json.dumps(expert.get('params', {}))}, "
                     f"noise {q.get('expert_noise')}, seed {q.get('seed')}, "
                     f"qbc {q.get('qbc_version')}")
    return "\n".join(lines)


COMMAND = Command(DataConfig, run_data, "summarise a Minari demonstrations dataset",
                  renamed_flags={"--dataset-id": "--dataset"})
