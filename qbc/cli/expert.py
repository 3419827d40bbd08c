"""``qbc expert train | export | list``: stable-baselines3 experts trained and exported as
actors (safetensors + JSON), and the expert zoo listed. The work is done by
:mod:`qbc.agents.sb3` and :mod:`qbc.agents.expert_zoo`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qbc.agents.actor import actor_size_bytes
from qbc.agents.expert_zoo import (
    actor_folder_for,
    export_actor,
    training_command,
    training_info,
    zoo_table,
)
from qbc.cli import Command
from qbc.errors import InvalidValueError, OutputExistsError
from qbc.gym_utils import check_env_id
from qbc.io import atomic_write_json
from qbc.validate import AT_LEAST_ONE, Rule, check_config

#: Old flag spellings of the expert commands, accepted with a deprecation warning: the env is
#: --env, an output --out and an SB3 zip to read --expert-path, as in every command.
RENAMED_FLAGS = {"--env-id": "--env"}
TRAIN_RENAMED_FLAGS = {**RENAMED_FLAGS, "--path": "--out"}
EXPORT_RENAMED_FLAGS = {**RENAMED_FLAGS, "--path": "--expert-path"}


# -- qbc expert train ------------------------------------------------------------------------------
def _previous_parts(zip_path: Path) -> dict[str, Any]:
    """Steps, training seconds and parts of the trainings so far of the model at ``zip_path``
    (its report ``<zip stem>.json``; a report from before --resume counts as one part)."""
    report = zip_path.with_suffix(".json")
    try:
        old = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    steps = old.get("total_timesteps", (old.get("config") or {}).get("timesteps", 0))
    return {"total_timesteps": int(steps or 0),
            "total_train_seconds": float(old.get("total_train_seconds",
                                                 old.get("train_seconds", 0.0)) or 0.0),
            "parts": int(old.get("parts", 1))}


@dataclass
class TrainExpertConfig:
    """Train a stable-baselines3 expert, save it, and report its evaluated return."""

    env: str = "Pendulum-v1"
    """Gymnasium env id to train on (the qbc/ ids work too)."""
    algo: str = "sac"
    """SB3 algorithm: sac, td3 or ppo."""
    timesteps: int = 20_000
    """Environment steps of training."""
    seed: int = 0
    """Seed of the algorithm and of its env."""
    learning_rate: float | None = 1e-3
    """Learning rate (None: SB3's default for the algorithm)."""
    out: str | None = None
    """Where to save the model; default experts/<env>-<algo>.zip (e.g. experts/Pendulum-v1-sac.zip).
    Its resolved config and evaluation go beside it as .json, its actor (safetensors + JSON, no
    pickle; ``--expert actor --expert-path FOLDER``) in the folder <zip stem>-actor."""
    eval_episodes: int = 20
    """Episodes for the final evaluation (seeds 10_000 + i, disjoint from training)."""
    overwrite: bool = False
    """Replace an existing model at out."""
    resume: bool = False
    """Continue the model at out (default path as above) for --timesteps more steps, with its
    replay buffer (<zip stem>.replay.pkl, saved by every SAC/TD3 training) when it is there,
    and save it back in place: a long training can run in parts, and one stopped by Ctrl-C or
    SIGTERM (which saves what it has learnt) continues. The summary gives the total steps and
    training time over all parts. The zip and buffer hold pickles: resume only your own."""
    progress: bool = True
    """Show progress (a bar on a terminal, a plain line every ~10 s in a log)."""


#: Ranges of the numeric flags of `qbc expert train`.
TRAIN_RULES = {"timesteps": AT_LEAST_ONE, "eval_episodes": AT_LEAST_ONE,
               "learning_rate": Rule(lo=0, lo_open=True, optional=True)}


def run_train_expert(config: TrainExpertConfig) -> dict[str, Any]:
    """Train, save, evaluate; write ``<out>.json`` (config + results) and the actor folder
    ``<zip stem>-actor`` (evaluated on its own); print a summary."""
    from qbc.agents.evaluate import evaluate_expert
    from qbc.agents.experts import make_expert
    from qbc.agents.sb3 import default_expert_path, sb3_zip_path, train_sb3_expert

    check_config(config, TRAIN_RULES)  # also: --seed in [0, 2^32), ints in 64 bits
    check_env_id(config.env)
    actor_dir = actor_folder_for(sb3_zip_path(default_expert_path(config.env, config.algo)
                                              if config.out is None else config.out))
    if (actor_dir.exists() and any(actor_dir.iterdir()) and not config.overwrite
            and not config.resume):
        raise OutputExistsError(f"{str(actor_dir)!r} exists; pass --overwrite to replace it, "
                                "or --resume to continue the training of the model beside it")
    zip_path = sb3_zip_path(default_expert_path(config.env, config.algo)
                            if config.out is None else config.out)
    before = _previous_parts(zip_path) if config.resume else {}
    start = time.perf_counter()
    path = train_sb3_expert(
        config.env, algo=config.algo, timesteps=config.timesteps, seed=config.seed,
        path=config.out, learning_rate=config.learning_rate, overwrite=config.overwrite,
        progress=config.progress, resume=config.resume,
    )
    train_s = time.perf_counter() - start
    total_steps = before.get("total_timesteps", 0) + config.timesteps
    total_s = before.get("total_train_seconds", 0.0) + train_s
    parts = before.get("parts", 0) + 1
    expert = make_expert("sb3", config.env, path=str(path), algo=config.algo)
    result = evaluate_expert(expert, config.env, episodes=config.eval_episodes, seed=10_000)
    info = {"source": path.name, "timesteps": total_steps, "seed": config.seed,
            "learning_rate": config.learning_rate,
            "training_command": training_command(asdict(config))}
    actor_eval = export_actor(expert.model, config.algo, config.env, actor_dir,
                              config.eval_episodes, info)
    report = {"config": asdict(config), "model": str(path), "actor": str(actor_dir),
              "actor_mean_return": actor_eval["mean_return"], "train_seconds": train_s,
              "total_timesteps": total_steps, "total_train_seconds": total_s, "parts": parts,
              **result}
    atomic_write_json(path.with_suffix(".json"), report)
    print(
        f"trained {config.algo} on {config.env} for {config.timesteps} steps in "
        f"{train_s:.1f} s -> {path}"
        + (f" (resumed: {total_steps} steps, {total_s:.1f} s over {parts} parts)"
           if config.resume else "") + "\n"
        f"eval over {result['episodes']} episodes: mean return {result['mean_return']:.1f} "
        f"+- {result['std_return']:.1f} (min {result['min_return']:.1f})\n"
        f"actor (safetensors + JSON) -> {actor_dir}: mean return "
        f"{actor_eval['mean_return']:.1f}"
    )
    return report


# -- qbc expert export -----------------------------------------------------------------------------
@dataclass
class ExportExpertConfig:
    """Export an SB3 zip's deterministic actor as safetensors + JSON and measure its return."""

    expert_path: str
    """The SB3 zip to export (it holds pickles: export only files you trust)."""
    env: str
    """Gymnasium env id the model was trained on (the qbc/ ids work too)."""
    algo: str = "sac"
    """SB3 algorithm of the model: sac, td3 or ppo."""
    out: str | None = None
    """Actor folder to write (default: beside the zip, <zip stem>-actor)."""
    eval_episodes: int = 20
    """Episodes for the measured return (seeds 10_000 + i), run with the exported actor."""
    overwrite: bool = False
    """Replace an existing actor folder at out."""


def run_export_expert(config: ExportExpertConfig) -> dict[str, Any]:
    """Check the flags, load the zip, export, evaluate, print a summary."""
    from qbc.agents.sb3 import algo_class, load_sb3_model, sb3_zip_path

    if config.eval_episodes < 1:
        raise InvalidValueError(f"eval_episodes must be >= 1, got {config.eval_episodes}")
    algo_class(config.algo)  # an unknown algorithm is refused before anything is read
    zip_path = sb3_zip_path(config.expert_path)
    out = actor_folder_for(zip_path) if config.out is None else Path(config.out)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise OutputExistsError(f"{str(out)!r} exists; pass --overwrite to replace it")
    model = load_sb3_model(zip_path, config.algo)
    info = {"source": zip_path.name, **training_info(zip_path)}
    evaluation = export_actor(model, config.algo, config.env, out, config.eval_episodes, info)
    print(f"exported {config.algo} actor of {zip_path} -> {out} "
          f"({actor_size_bytes(out) / 1024:.1f} KB)\n"
          f"actor eval over {evaluation['episodes']} episodes: mean return "
          f"{evaluation['mean_return']:.1f} +- {evaluation['std_return']:.1f} "
          f"(min {evaluation['min_return']:.1f})")
    return {"out": str(out), "evaluation": evaluation}


# -- qbc expert list -------------------------------------------------------------------------------
@dataclass
class ListExpertsConfig:
    """List the expert zoo: name, env, algorithm, measured return, size."""

    root: str | None = None
    """Zoo folder to list (default: the zoo shipped with qbc)."""


def run_list_experts(config: ListExpertsConfig) -> list[dict[str, Any]]:
    """Print the zoo table and return its rows."""
    rows = zoo_table(None if config.root is None else Path(config.root))
    name_w = max([len("name")] + [len(r["name"]) for r in rows])
    env_w = max([len("env")] + [len(r["env"]) for r in rows])
    print(f"{'name':<{name_w}}  {'env':<{env_w}}  {'algo':<5} {'return':>16} {'size':>10}")
    for r in rows:
        ret = "damaged" if "problem" in r else (
            "-" if r["mean_return"] is None else f"{r['mean_return']:.1f} ({r['episodes']} ep)")
        print(f"{r['name']:<{name_w}}  {r['env']:<{env_w}}  {r['algo']:<5} {ret:>16} "
              f"{r['size_bytes'] / 1024:>7.1f} KB")
    if not rows:
        print("(the zoo is empty)")
    return rows


TRAIN_COMMAND = Command(TrainExpertConfig, run_train_expert, "train a stable-baselines3 expert",
                        renamed_flags=TRAIN_RENAMED_FLAGS)
EXPORT_COMMAND = Command(ExportExpertConfig, run_export_expert,
                         "export an SB3 zip's actor as safetensors + JSON",
                         renamed_flags=EXPORT_RENAMED_FLAGS)
LIST_COMMAND = Command(ListExpertsConfig, run_list_experts, "list the expert zoo")
