"""stable-baselines3 experts: train one (SAC, TD3 or PPO), save it, load it as a batched expert.

SB3 saves models as zip files that may contain pickled Python objects: load only files you
trust (ours are written by :func:`train_sb3_expert`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents.base import Expert
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, UnknownNameError
from qbc.infra.child_processes import stopped_on_exit
from qbc.infra.files import atomic_write
from qbc.infra.progress import progress_bar


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


def _progress_callback(bar: Any, total: int, start: int = 0):
    """An SB3 callback moving ``bar`` to the env steps done so far in this call (the model's
    counter minus ``start``, at most ``total``: PPO finishes its last rollout past it)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(min(self.num_timesteps - start, total) - bar.n)
            return True

    return Progress()


def replay_buffer_path(model_path: str | Path) -> Path:
    """Where the replay buffer of the off-policy model at ``model_path`` is kept for
    ``resume``: ``<zip stem>.replay.pkl`` beside it (a pickle: load only files you trust)."""
    return sb3_zip_path(model_path).with_suffix(".replay.pkl")


def train_sb3_expert(
    env_id: str,
    algo: str = "sac",
    timesteps: int = 20_000,
    seed: int = 0,
    path: str | Path | None = None,
    learning_rate: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    resume: bool = False,
    **env_kwargs: Any,
) -> Path:
    """Train an SB3 ``algo`` on ``gymnasium.make(env_id, **env_kwargs)`` for ``timesteps`` env
    steps with ``seed``; save it atomically to ``path`` (".zip" added if it has no suffix;
    default :func:`default_expert_path`) and return that path. ``learning_rate`` None keeps
    SB3's default for the algorithm. ``progress``: qbc's progress (a bar on a terminal, a plain
    line every ~10 s in a log).

    An off-policy model (SAC, TD3) also saves its replay buffer (:func:`replay_buffer_path`).
    ``resume=True`` continues the model saved at ``path`` for ``timesteps`` more steps (its
    step counter, learning-rate schedule and, when saved beside it, replay buffer carry on) and
    saves it back in place, so a long training can run in parts. A training stopped by Ctrl-C
    or SIGTERM saves what it has learnt before it ends, so ``resume`` continues it."""
    import gymnasium as gym

    cls = algo_class(algo)
    if timesteps < 1:
        raise InvalidValueError(f"timesteps must be >= 1, got {timesteps}")
    out = _checked_output(sb3_zip_path(default_expert_path(env_id, algo) if path is None
                                       else path), overwrite, resume)
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    replay = replay_buffer_path(out)
    env = gym.make(env_id, **env_kwargs)
    try:
        check_continuous_actions(env, env_id)
        if resume:
            model = _resumed_model(out, algo, env, env_id, replay)
        else:
            model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
        _learn(model, int(timesteps), resume, progress, f"expert {algo} {env_id}", out, replay)
    finally:
        env.close()
    return _save(model, out, replay)


def check_continuous_actions(env: Any, env_id: str) -> None:
    """Refuse an env whose actions are not a Box: qbc's experts act continuously (SB3 would
    fail on SAC / TD3 with an assertion, and an exported PPO actor of discrete actions could
    not be read back)."""
    import gymnasium as gym

    if not isinstance(env.action_space, gym.spaces.Box):
        raise InvalidValueError(f"{env_id} has {type(env.action_space).__name__} actions; "
                                "qbc's experts act in continuous (Box) action spaces: train "
                                "one on an env with continuous actions")


def _checked_output(out: Path, overwrite: bool, resume: bool) -> Path:
    """``out``, the model file to write, refused where it cannot be: missing to resume, or
    there already without ``overwrite`` or ``resume``."""
    if resume and not out.is_file():
        raise InvalidValueError(f"--resume: there is no model at {str(out)!r} to continue; "
                                "train one first (without --resume) or name it with --out")
    if out.exists() and not overwrite and not resume:
        raise OutputExistsError(f"{str(out)!r} exists; pass overwrite=True (--overwrite), or "
                                "resume=True (--resume) to continue its training")
    return out


def _resumed_model(out: Path, algo: str, env: Any, env_id: str, replay: Path) -> Any:
    """The model saved at ``out``, set on ``env`` (refused when its spaces differ), with its
    replay buffer from ``replay`` where one was saved and the algorithm keeps one."""
    model = load_sb3_model(out, algo)
    try:
        model.set_env(env)
    except ValueError as exc:  # SB3: the spaces differ
        raise InvalidValueError(
            f"--resume: the model {str(out)!r} does not fit {env_id} ({exc}); resume it "
            "on the env it was trained on") from None
    if replay.is_file() and hasattr(model, "load_replay_buffer"):
        try:
            model.load_replay_buffer(replay)
        except Exception as exc:  # a pickle: any kind of error when it is damaged
            raise CorruptFileError(
                f"replay buffer {str(replay)!r} cannot be read ({type(exc).__name__}: "
                f"{exc}); it is damaged: delete it to resume without it") from None
    return model


def _learn(model: Any, timesteps: int, resume: bool, progress: bool, desc: str, out: Path,
           replay: Path) -> None:
    """``model.learn`` for ``timesteps`` more env steps (its step counter carries on with
    ``resume``) under a progress bar titled ``desc``; stopped by Ctrl-C or SIGTERM, what it
    learnt so far is saved to ``out`` (and ``replay``) before the stop goes on."""
    done = model.num_timesteps
    try:
        with stopped_on_exit(), progress_bar(total=timesteps, desc=desc, unit="step",
                                             disable=not progress) as bar:
            model.learn(total_timesteps=timesteps, reset_num_timesteps=not resume,
                        callback=_progress_callback(bar, timesteps, done))
    except (KeyboardInterrupt, SystemExit):
        if model.num_timesteps > done:  # keep what was learnt: --resume continues it
            _save(model, out, replay)
        raise


def _save(model: Any, out: Path, replay: Path) -> Path:
    """The model to ``out`` and, for an off-policy one, its replay buffer to ``replay``, each
    written atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            model.save(f)

    def write_replay(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            model.save_replay_buffer(f)

    if getattr(model, "replay_buffer", None) is not None:
        atomic_write(replay, write_replay)
    return atomic_write(out, write)
