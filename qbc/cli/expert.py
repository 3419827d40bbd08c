"""``qbc expert train | export | list``: stable-baselines3 experts trained and exported as
actors (safetensors + JSON), and the expert zoo listed. The work is done by
:mod:`qbc.agents.sb3` and :mod:`qbc.agents.expert_zoo`."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qbc.agents.actor import META_FILE, WEIGHTS_FILE, actor_size_bytes
from qbc.agents.evaluate import evaluate_expert
from qbc.agents.expert_zoo import zoo_table
from qbc.agents.experts import make_expert
from qbc.agents.export import (
    actor_folder_for,
    check_model_fits_env,
    export_actor,
    training_command,
    training_info,
)
from qbc.agents.sb3 import (
    algo_class,
    check_continuous_actions,
    default_expert_path,
    load_sb3_model,
    replay_buffer_path,
    sb3_zip_path,
    train_sb3_expert,
)
from qbc.cli import Command
from qbc.envs.make import check_env_id
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, QbcError
from qbc.infra.files import atomic_write_json, read_json_object
from qbc.infra.run_folder import check_out_dir, locked_output, output_dir
from qbc.infra.validate import AT_LEAST_ONE, Rule, check_config

#: The files of an actor folder: what an export replaces (other files in the folder stay).
ACTOR_FILES = (WEIGHTS_FILE, META_FILE)

#: Old flag spellings of the expert commands, accepted with a deprecation warning: the env is
#: --env, an output --out and an SB3 zip to read --expert-path, as in every command.
RENAMED_FLAGS = {"--env-id": "--env"}
TRAIN_RENAMED_FLAGS = {**RENAMED_FLAGS, "--path": "--out"}
EXPORT_RENAMED_FLAGS = {**RENAMED_FLAGS, "--path": "--expert-path"}


# -- qbc expert train ------------------------------------------------------------------------------
def _previous_parts(zip_path: Path, config: TrainExpertConfig | None = None) -> dict[str, Any]:
    """Steps, training seconds and parts of the trainings so far of the model at ``zip_path``
    (its report ``<zip stem>.json``; a report from before --resume counts as one part); {}
    without a report. A damaged report (not a JSON object, totals that are not finite numbers
    >= 0) raises CorruptFileError, and a report of another env or algorithm than ``config``'s
    InvalidValueError: --resume would continue the model on them."""
    report = zip_path.with_suffix(".json")
    if not report.is_file():
        return {}
    old = read_json_object(report, what="expert report")
    trained = old.get("config") if isinstance(old.get("config"), dict) else {}
    steps = old.get("total_timesteps", trained.get("timesteps", 0))
    seconds = old.get("total_train_seconds", old.get("train_seconds", 0.0))
    parts = old.get("parts", 1)
    for name, value in (("total_timesteps", steps), ("total_train_seconds", seconds),
                        ("parts", parts)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value >= 0):
            raise CorruptFileError(
                f"expert report {str(report)!r}: field {name!r} must be a number >= 0, got "
                f"{value!r}; it was damaged: restore it, or delete it to resume without the "
                "earlier totals")
    if config is not None:
        for key, flag in (("env", "--env"), ("algo", "--algo")):
            was = trained.get(key)
            if isinstance(was, str) and was != getattr(config, key):
                raise InvalidValueError(
                    f"--resume: {str(zip_path)!r} was trained with {flag} {was} (its report "
                    f"{str(report)!r}), not {getattr(config, key)}; resume it with {flag} "
                    f"{was}, or train a new model with another --out")
    return {"total_timesteps": int(steps or 0), "total_train_seconds": float(seconds or 0.0),
            "parts": int(parts)}


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
    ``<zip stem>-actor`` (evaluated on its own); print a summary.

    The zip is locked for the whole command (a second ``qbc expert train`` on the same --out
    is refused); the model is trained into a hidden file and the actor exported into a staging
    folder, and both replace the old ones only when everything has succeeded."""
    check_config(config, TRAIN_RULES)  # also: --seed in [0, 2^32), ints in 64 bits
    check_env_id(config.env)
    algo_class(config.algo)
    import gymnasium as gym

    env = gym.make(config.env)  # checked before the zip is locked or a folder staged
    try:
        check_continuous_actions(env, config.env)
    finally:
        env.close()
    zip_path = sb3_zip_path(default_expert_path(config.env, config.algo)
                            if config.out is None else config.out)
    actor_dir = actor_folder_for(zip_path)
    _check_train_outputs(zip_path, actor_dir, config)
    with locked_output(zip_path, "expert train"):
        _check_train_outputs(zip_path, actor_dir, config)  # again, under the lock
        with output_dir(actor_dir, config.overwrite or config.resume, "expert train",
                        owned=ACTOR_FILES,
                        refusal=f"{str(actor_dir)!r} exists; pass --overwrite to replace it"
                        ) as work:
            report = _train_and_export(config, zip_path, work)
            report["actor"] = str(actor_dir)
            atomic_write_json(zip_path.with_suffix(".json"), report)
    print(
        f"trained {config.algo} on {config.env} for {config.timesteps} steps in "
        f"{report['train_seconds']:.1f} s -> {zip_path}"
        + (f" (resumed: {report['total_timesteps']} steps, {report['total_train_seconds']:.1f} s "
           f"over {report['parts']} parts)" if config.resume else "") + "\n"
        f"eval over {report['episodes']} episodes: mean return {report['mean_return']:.1f} "
        f"+- {report['std_return']:.1f} (min {report['min_return']:.1f})\n"
        f"actor (safetensors + JSON) -> {actor_dir}: mean return "
        f"{report['actor_mean_return']:.1f}"
    )
    return report


def _check_train_outputs(zip_path: Path, actor_dir: Path, config: TrainExpertConfig) -> None:
    """Refuse an existing zip or non-empty actor folder without --overwrite or --resume, and
    --resume without a model to continue."""
    if config.resume and not zip_path.is_file():
        raise InvalidValueError(f"--resume: there is no model at {str(zip_path)!r} to continue; "
                                "train one first (without --resume) or name it with --out")
    if config.resume:
        _previous_parts(zip_path, config)  # a damaged report, another env or algorithm
    if config.overwrite or config.resume:
        return
    for path in (zip_path, actor_dir):
        if path.exists() and (path.is_file() or any(path.iterdir())):
            raise OutputExistsError(f"{str(path)!r} exists; pass --overwrite to replace it, or "
                                    "--resume to continue the training of the model")


def _train_and_export(config: TrainExpertConfig, zip_path: Path, work: Path) -> dict[str, Any]:
    """Train into a hidden zip beside ``zip_path`` (with --resume: a copy of the model and its
    replay buffer, continued), evaluate it, export its actor into ``work``, then move the zip
    (and buffer) into place; the report (without the actor path). An interrupted training
    still moves what it has learnt into place, so --resume continues it."""
    import os

    hidden = zip_path.with_name(f".{zip_path.stem}.{os.getpid()}.training.zip")
    before = _previous_parts(zip_path, config) if config.resume else {}
    try:
        if config.resume:
            _move_model(zip_path, hidden, copy=True)
        start = time.perf_counter()
        try:
            train_sb3_expert(config.env, algo=config.algo, timesteps=config.timesteps,
                             seed=config.seed, path=hidden, learning_rate=config.learning_rate,
                             overwrite=True, progress=config.progress, resume=config.resume)
        except QbcError as exc:  # about the staging copy: name the user's files
            text = str(exc).replace(str(replay_buffer_path(hidden)),
                                    str(replay_buffer_path(zip_path)))
            cls = type(exc) if type(exc) in (InvalidValueError, CorruptFileError) else \
                InvalidValueError
            raise cls(text.replace(str(hidden), str(zip_path))) from None
        except (KeyboardInterrupt, SystemExit):
            if hidden.is_file():
                _move_model(hidden, zip_path)
            raise
        train_s = time.perf_counter() - start
        expert = make_expert("sb3", config.env, path=str(hidden), algo=config.algo)
        result = evaluate_expert(expert, config.env, episodes=config.eval_episodes, seed=10_000)
        # the model's own count: a part stopped by Ctrl-C or SIGTERM leaves no report
        total_steps = int(expert.model.num_timesteps)
        info = {"source": zip_path.name, "timesteps": total_steps, "seed": config.seed,
                "learning_rate": config.learning_rate,
                "training_command": training_command(asdict(config))}
        actor_eval = export_actor(expert.model, config.algo, config.env, work,
                                  config.eval_episodes, info)
        _move_model(hidden, zip_path)
    finally:
        _remove_model(hidden)
    return {"config": asdict(config), "model": str(zip_path),
            "actor_mean_return": actor_eval["mean_return"], "train_seconds": train_s,
            "total_timesteps": total_steps,
            "total_train_seconds": before.get("total_train_seconds", 0.0) + train_s,
            "parts": before.get("parts", 0) + 1, **result}


def _move_model(src: Path, dst: Path, copy: bool = False) -> None:
    """An SB3 zip and its replay buffer (when there is one) from ``src`` to ``dst``, each
    replaced atomically (copied first with ``copy``)."""
    import os
    import shutil

    for a, b in ((src, dst), (replay_buffer_path(src), replay_buffer_path(dst))):
        if not a.is_file():
            continue
        if copy:
            shutil.copyfile(a, b)
        else:
            os.replace(a, b)


def _remove_model(path: Path) -> None:
    """The SB3 zip ``path`` and its replay buffer, where they exist."""
    path.unlink(missing_ok=True)
    replay_buffer_path(path).unlink(missing_ok=True)


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
    """Check the flags, load the zip and check it fits the env, export into a staging folder
    (evaluated there), then publish it over ``out``; print a summary. A refused or failed
    export leaves ``out`` as it was."""
    if config.eval_episodes < 1:
        raise InvalidValueError(f"eval_episodes must be >= 1, got {config.eval_episodes}")
    algo_class(config.algo)  # an unknown algorithm is refused before anything is read
    check_env_id(config.env)
    zip_path = sb3_zip_path(config.expert_path)
    out = actor_folder_for(zip_path) if config.out is None else Path(config.out)
    refusal = f"{str(out)!r} exists; pass --overwrite to replace it"
    check_out_dir(out, config.overwrite, refusal)
    info = {"source": zip_path.name, **training_info(zip_path)}
    _check_trained_env(zip_path, config.env)
    model = load_sb3_model(zip_path, config.algo)
    check_model_fits_env(model, config.env, str(zip_path))
    with output_dir(out, config.overwrite, "expert export", refusal=refusal,
                    owned=ACTOR_FILES) as work:
        evaluation = export_actor(model, config.algo, config.env, work, config.eval_episodes,
                                  info)
    print(f"exported {config.algo} actor of {zip_path} -> {out} "
          f"({actor_size_bytes(out) / 1024:.1f} KB)\n"
          f"actor eval over {evaluation['episodes']} episodes: mean return "
          f"{evaluation['mean_return']:.1f} +- {evaluation['std_return']:.1f} "
          f"(min {evaluation['min_return']:.1f})")
    return {"out": str(out), "evaluation": evaluation}


def _check_trained_env(zip_path: Path, env_id: str) -> None:
    """Refuse ``env_id`` when the report ``qbc expert train`` wrote beside the zip names
    another env (models of two envs with the same shapes are told apart only there), and a
    report that is not a JSON object (CorruptFileError: it was skipped, and with it the check)."""
    side = zip_path.with_suffix(".json")
    if not side.is_file():
        return
    report = read_json_object(side, what="expert report")  # damaged: refused, as --resume does
    cfg = report.get("config")
    trained = (cfg.get("env") or cfg.get("env_id")) if isinstance(cfg, dict) else None
    if isinstance(trained, str) and trained != env_id:
        raise InvalidValueError(f"{str(zip_path)!r} was trained on {trained} (says "
                                f"{str(side)!r}), not {env_id}; pass --env {trained}")


# -- qbc expert list -------------------------------------------------------------------------------
@dataclass
class ListExpertsConfig:
    """List the expert zoo: name, env, algorithm, measured return, size."""

    root: str | None = None
    """Zoo folder to list (default: the zoo shipped with qbc)."""


def run_list_experts(config: ListExpertsConfig) -> list[dict[str, Any]]:
    """Print the zoo table and return its rows."""
    if config.root is not None and not Path(config.root).is_dir():  # it listed an empty zoo
        raise InvalidValueError(f"--root {config.root!r} is not a folder; give the zoo folder "
                                "(one actor folder per env), or leave --root out")
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
