"""stable-baselines3 experts: train one (SAC, TD3 or PPO), save it, load it as a batched expert.

SB3 saves models as zip files that may contain pickled Python objects: load only files you
trust (ours are written by :func:`train_sb3_expert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents.experts import Expert
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, UnknownNameError
from qbc.io import atomic_write
from qbc.progress import progress_bar


def algo_class(algo: str) -> type:
    """The SB3 class of ``algo`` (sac, td3, ppo); UnknownNameError for any other name."""
    import stable_baselines3 as sb3

    classes = {"sac": sb3.SAC, "td3": sb3.TD3, "ppo": sb3.PPO}
    if algo not in classes:
        raise UnknownNameError("sb3 algorithm", algo, classes)
    return classes[algo]


def sb3_zip_path(path: str | Path) -> Path:
    """``path`` with ".zip" added when it has no suffix (as SB3's ``save`` does)."""
    path = Path(path)
    return path if path.suffix else path.with_suffix(".zip")


def load_sb3_model(path: str | Path, algo: str = "sac") -> Any:
    """The SB3 ``algo`` model saved at ``path`` (".zip" added without a suffix), on CPU. A
    missing or unreadable zip raises CorruptFileError; an unknown ``algo`` UnknownNameError.
    The zip may hold pickles: load only files you trust."""
    cls = algo_class(algo)
    zip_path = sb3_zip_path(path)
    if not zip_path.is_file():
        raise CorruptFileError(
            f"SB3 model {str(zip_path)!r} does not exist; train one with "
            "qbc.agents.train_sb3_expert or scripts/train_sb3_expert.py"
        )
    try:
        return cls.load(zip_path, device="cpu")
    except Exception as exc:  # SB3 raises many kinds on a bad zip
        raise CorruptFileError(
            f"cannot load SB3 {algo} model {str(zip_path)!r} ({type(exc).__name__}: {exc}); "
            "check --algo matches the algorithm it was trained with"
        ) from None


class SB3Expert(Expert):
    """A saved SB3 model as an expert: ``mean_action`` is the model's deterministic action
    (already rescaled to the env's bounds); stochasticity comes from ``noise_std`` only."""

    name = "sb3"

    def __init__(self, info: dict[str, Any], path: str, algo: str = "sac",
                 noise_std: float = 0.0, seed: int = 0):
        super().__init__(info, {"path": str(path), "algo": algo}, noise_std=noise_std, seed=seed)
        zip_path = sb3_zip_path(path)
        self.model = load_sb3_model(zip_path, algo)
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

    cls = algo_class(algo)
    if timesteps < 1:
        raise InvalidValueError(f"timesteps must be >= 1, got {timesteps}")
    out = sb3_zip_path(default_expert_path(env_id, algo) if path is None else path)
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
