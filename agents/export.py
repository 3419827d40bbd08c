"""Exporting an SB3 model's actor as an actor folder (safetensors + JSON,
:mod:`qbc.agents.actor`), checked against the env and evaluated as read back from disk (``qbc
expert export``, and ``qbc expert train`` beside its zip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents.actor import save_sb3_actor
from qbc.agents.evaluate import evaluate_expert
from qbc.agents.experts import make_expert
from qbc.envs.make import make_env
from qbc.errors import InvalidValueError
from qbc.infra.files import read_json


def actor_folder_for(zip_path: str | Path) -> Path:
    """``<zip stem>-actor`` beside the zip."""
    zip_path = Path(zip_path)
    return zip_path.with_name(zip_path.stem + "-actor")


def export_actor(model: Any, algo: str, env_id: str, out: Path, eval_episodes: int,
                 info: dict[str, Any]) -> dict[str, Any]:
    """Save ``model``'s actor to ``out``, measure the loaded actor's return on ``env_id``
    over ``eval_episodes`` episodes and record it in actor.json; returns the evaluation."""
    meta = {"env_id": env_id, **info}
    # The return is measured with the actor as read back from disk, so it vouches for the files.
    save_sb3_actor(model, algo, out, meta)
    expert = make_expert("actor", env_id, path=str(out))
    evaluation = evaluate_expert(expert, env_id, episodes=eval_episodes, seed=10_000)
    save_sb3_actor(model, algo, out, {**meta, "evaluation": evaluation})
    return evaluation


def check_model_fits_env(model: Any, env_id: str, source: str) -> None:
    """Raise InvalidValueError unless an SB3 ``model``'s observation and action spaces are
    those of ``env_id`` (shapes and action bounds): checked before anything is exported."""
    env = make_env(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    model_obs, model_act = model.observation_space, model.action_space
    same = (getattr(model_obs, "shape", None) == obs_space.shape
            and getattr(model_act, "shape", None) == act_space.shape)
    if same and hasattr(act_space, "low") and hasattr(model_act, "low"):
        same = bool(np.allclose(model_act.low, act_space.low)
                    and np.allclose(model_act.high, act_space.high))
    if not same:
        raise InvalidValueError(
            f"{source} was trained on observations {getattr(model_obs, 'shape', '?')} and "
            f"actions {getattr(model_act, 'shape', '?')} {_bounds(model_act)}, but {env_id} has "
            f"{obs_space.shape} and {act_space.shape} {_bounds(act_space)}; pass the --env it "
            "was trained on")


def _bounds(space: Any) -> str:
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    return "" if low is None else f"in [{np.min(low):g}, {np.max(high):g}]"


def training_info(zip_path: Path) -> dict[str, Any]:
    """timesteps, seed and the training command from the ``.json`` qbc expert train wrote
    beside the zip (empty when there is none)."""
    side = zip_path.with_suffix(".json")
    if not side.is_file():
        return {}
    report = read_json(side, what="expert report")
    cfg = report.get("config") if isinstance(report, dict) else None
    if not isinstance(cfg, dict) or not {"algo", "timesteps", "seed", "learning_rate"} <= set(cfg) \
            or not ({"env", "env_id"} & set(cfg)):
        return {}
    return {"timesteps": cfg.get("timesteps"), "seed": cfg.get("seed"),
            "learning_rate": cfg.get("learning_rate"),
            "training_command": training_command(cfg)}


def training_command(cfg: dict[str, Any]) -> str:
    """The ``qbc expert train`` line that reproduces a TrainExpertConfig dict (its env under
    ``env``, or ``env_id`` in reports written before the flag was renamed)."""
    env = cfg["env"] if "env" in cfg else cfg["env_id"]
    return (f"qbc expert train --env {env} --algo {cfg['algo']} "
            f"--timesteps {cfg['timesteps']} --seed {cfg['seed']} "
            f"--learning-rate {cfg['learning_rate']}")
