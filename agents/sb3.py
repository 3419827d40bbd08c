"""stable-baselines3 experts: train one (SAC, TD3 or PPO), save it, load it as a batched expert.

SB3 saves models as zip files that may contain pickled Python objects: load only files you
trust (ours are written by :func:`train_sb3_expert`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents.evaluate import evaluate_expert
from qbc.agents.experts import Expert
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, UnknownNameError
from qbc.io import atomic_write, atomic_write_json
from qbc.progress import progress_bar


def _algo_class(algo: str):
    import stable_baselines3 as sb3

    classes = {"sac": sb3.SAC, "td3": sb3.TD3, "ppo": sb3.PPO}
    if algo not in classes:
        raise UnknownNameError("sb3 algorithm", algo, classes)
    return classes[algo]


def _zip_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix else path.with_suffix(".zip")


class SB3Expert(Expert):
    """A saved SB3 model as an expert: ``mean_action`` is the model's deterministic action
    (already rescaled to the env's bounds); stochasticity comes from ``noise_std`` only."""

    name = "sb3"

    def __init__(self, info: dict[str, Any], path: str, algo: str = "sac",
                 noise_std: float = 0.0, seed: int = 0):
        super().__init__(info, {"path": str(path), "algo": algo}, noise_std=noise_std, seed=seed)
        cls = _algo_class(algo)
        zip_path = _zip_path(path)
        if not zip_path.is_file():
            raise CorruptFileError(
                f"SB3 model {str(zip_path)!r} does not exist; train one with "
                "qbc.agents.train_sb3_expert or scripts/train_sb3_expert.py"
            )
        try:
            self.model = cls.load(zip_path, device="cpu")
        except Exception as exc:  # SB3 raises many kinds on a bad zip
            raise CorruptFileError(
                f"cannot load SB3 {algo} model {str(zip_path)!r} ({type(exc).__name__}: {exc}); "
                "check --algo matches the algorithm it was trained with"
            ) from None
        shapes = (self.model.observation_space.shape, self.model.action_space.shape)
        if shapes != ((self.obs_dim,), (self.act_dim,)):
            raise InvalidValueError(
                f"SB3 model {str(zip_path)!r} has observation/action shapes {shapes}, but the env "
                f"has {((self.obs_dim,), (self.act_dim,))}"
            )

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(obs.astype(np.float32), deterministic=True)
        return np.asarray(action, dtype=np.float64).reshape(len(obs), self.act_dim)


def default_expert_path(env_id: str, algo: str) -> Path:
    """``experts/<env>-<algo>.zip``, the env id made a file name ("qbc/Arctan-v0" ->
    "qbc_Arctan-v0"): one default per env and algorithm, so models never overwrite each other."""
    return Path("experts") / f"{env_id.replace('/', '_').replace(':', '_')}-{algo}.zip"


def _progress_callback(bar: Any, total: int):
    """An SB3 callback moving ``bar`` to the env steps done so far (at most ``total``: PPO
    finishes its last rollout past it)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(min(self.num_timesteps, total) - bar.n)
            return True

    return Progress()


def train_sb3_expert(
    env_id: str,
    algo: str = "sac",
    timesteps: int = 20_000,
    seed: int = 0,
    path: str | Path | None = None,
    learning_rate: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **env_kwargs: Any,
) -> Path:
    """Train an SB3 ``algo`` on ``gymnasium.make(env_id, **env_kwargs)`` for ``timesteps`` env
    steps with ``seed``; save it atomically to ``path`` (".zip" added if it has no suffix;
    default :func:`default_expert_path`) and return that path. ``learning_rate`` None keeps
    SB3's default for the algorithm. ``progress``: qbc's progress (a bar on a terminal, a plain
    line every ~10 s in a log)."""
    import gymnasium as gym

    cls = _algo_class(algo)
    if timesteps < 1:
        raise InvalidValueError(f"timesteps must be >= 1, got {timesteps}")
    out = _zip_path(default_expert_path(env_id, algo) if path is None else path)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{str(out)!r} exists; pass overwrite=True (--overwrite)")
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    env = gym.make(env_id, **env_kwargs)
    try:
        model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
        with progress_bar(total=int(timesteps), desc=f"expert {algo} {env_id}", unit="step",
                          disable=not progress) as bar:
            model.learn(total_timesteps=int(timesteps),
                        callback=_progress_callback(bar, int(timesteps)))
    finally:
        env.close()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            model.save(f)

    return atomic_write(out, write)


@dataclass
class TrainExpertConfig:
    """Train a stable-baselines3 expert, save it, and report its evaluated return."""

    env_id: str = "Pendulum-v1"
    """Gymnasium env id to train on (the qbc/ ids work too)."""
    algo: str = "sac"
    """SB3 algorithm: sac, td3 or ppo."""
    timesteps: int = 20_000
    """Environment steps of training."""
    seed: int = 0
    """Seed of the algorithm and of its env."""
    learning_rate: float | None = 1e-3
    """Learning rate (None: SB3's default for the algorithm)."""
    path: str | None = None
    """Where to save the model; default experts/<env>-<algo>.zip (e.g. experts/Pendulum-v1-sac.zip).
    Its resolved config and evaluation go beside it as .json, its actor (safetensors + JSON, no
    pickle; ``--expert actor --expert-path FOLDER``) in the folder <zip stem>-actor."""
    eval_episodes: int = 20
    """Episodes for the final evaluation (seeds 10_000 + i, disjoint from training)."""
    overwrite: bool = False
    """Replace an existing model at path."""
    progress: bool = True
    """Show progress (a bar on a terminal, a plain line every ~10 s in a log)."""


def run_train_expert(config: TrainExpertConfig) -> dict[str, Any]:
    """Train, save, evaluate; write ``<path>.json`` (config + results) and the actor folder
    ``<zip stem>-actor`` (evaluated on its own); print a summary."""
    from qbc.agents.expert_zoo import actor_folder_for, export_actor, training_command
    from qbc.agents.experts import make_expert

    actor_dir = actor_folder_for(_zip_path(default_expert_path(config.env_id, config.algo)
                                           if config.path is None else config.path))
    if actor_dir.exists() and any(actor_dir.iterdir()) and not config.overwrite:
        raise OutputExistsError(f"{str(actor_dir)!r} exists; pass --overwrite to replace it")
    start = time.perf_counter()
    path = train_sb3_expert(
        config.env_id, algo=config.algo, timesteps=config.timesteps, seed=config.seed,
        path=config.path, learning_rate=config.learning_rate, overwrite=config.overwrite,
        progress=config.progress,
    )
    train_s = time.perf_counter() - start
    expert = make_expert("sb3", config.env_id, path=str(path), algo=config.algo)
    result = evaluate_expert(expert, config.env_id, episodes=config.eval_episodes, seed=10_000)
    info = {"source": path.name, "timesteps": config.timesteps, "seed": config.seed,
            "learning_rate": config.learning_rate,
            "training_command": training_command(asdict(config))}
    actor_eval = export_actor(expert.model, config.algo, config.env_id, actor_dir,
                              config.eval_episodes, info)
    report = {"config": asdict(config), "model": str(path), "actor": str(actor_dir),
              "actor_mean_return": actor_eval["mean_return"], "train_seconds": train_s,
              **result}
    atomic_write_json(path.with_suffix(".json"), report)
    print(
        f"trained {config.algo} on {config.env_id} for {config.timesteps} steps in "
        f"{train_s:.1f} s -> {path}\n"
        f"eval over {result['episodes']} episodes: mean return {result['mean_return']:.1f} "
        f"+- {result['std_return']:.1f} (min {result['min_return']:.1f})\n"
        f"actor (safetensors + JSON) -> {actor_dir}: mean return "
        f"{actor_eval['mean_return']:.1f}"
    )
    return report


def _command():
    from qbc.cli import Command

    return Command(TrainExpertConfig, run_train_expert, "train a stable-baselines3 expert")


TRAIN_EXPERT_COMMAND = _command()
