"""``qbc data``: summarise a local Minari dataset (episodes, steps, returns, provenance);
``qbc data set-expert``: record the expert of a dataset made elsewhere."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qbc.cli import Command
from qbc.cli.flag_types import KeyValues, expert_params
from qbc.data import Demonstrations, load_demonstrations
from qbc.data.expert_choice import set_dataset_expert


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
    if q.get("expert_set_by"):
        lines.append(f"expert {expert.get('name')} {json.dumps(expert.get('params', {}))} "
                     f"(given by {q['expert_set_by']}; mean |action difference| on the "
                     f"dataset's states {q.get('expert_agreement', float('nan')):.4g})")
    elif q:
        lines.append(f"expert {expert.get('name')} {json.dumps(expert.get('params', {}))}, "
                     f"noise {q.get('expert_noise')}, seed {q.get('seed')}, "
                     f"qbc {q.get('qbc_version')}")
    return "\n".join(lines)


@dataclass
class SetExpertConfig:
    """Record the expert of a dataset made elsewhere (Minari's own API, another library), as
    `qbc collect` records its own: later commands (rollout of a policy trained on it, certify,
    the closing rollout of train) then need no --expert. The expert is checked first: it must
    label the dataset's states with actions of the dataset's shape; a model file's SHA-256 is
    recorded, and a later command loads it only while it is that same file."""

    dataset: str
    """Minari dataset id (under $MINARI_DATASETS_PATH)."""
    expert: str
    """expert: lqr, linear, arctan, detour (qbc's own envs), fetch-push, fetch-pick-and-place,
    maze-planner (the Gymnasium-Robotics tasks), sb3 (--expert-path ZIP), zoo:ENV (a trained
    actor shipped with qbc, e.g. zoo:Pendulum-v1; `qbc expert list`) or actor (--expert-path
    FOLDER, an actor folder from `qbc expert train` / `qbc expert export`)."""
    expert_path: Path | None = None
    """the expert's model: an SB3 zip (sb3) or an actor folder (actor)."""
    expert_params: KeyValues = ()
    """extra expert parameters as KEY=VALUE pairs (values read as JSON), e.g. algo=td3, or a
    JSON object."""


def run_set_expert(cfg: SetExpertConfig) -> dict:
    done = set_dataset_expert(cfg.dataset, cfg.expert,
                              expert_params(cfg.expert_params, cfg.expert_path))
    params = done["expert"]["params"]
    print(f"dataset {cfg.dataset} ({done['env_id']}): expert {cfg.expert}"
          + (f" {json.dumps(params)}" if params else "")
          + (f", file SHA-256 {done['expert_file_sha256'][:12]}..." if
             done["expert_file_sha256"] else "")
          + f" recorded; mean |action difference| on the dataset's states "
            f"{done['agreement']:.4g}; later commands need no --expert")
    return done


COMMAND = Command(DataConfig, run_data, "summarise a Minari demonstrations dataset",
                  renamed_flags={"--dataset-id": "--dataset"})
SET_EXPERT_COMMAND = Command(SetExpertConfig, run_set_expert,
                             "record the expert of a dataset made elsewhere (checked first)")
