"""The tiny sizes the tests train at, the toy demonstrations they train on, and the copy of the
session's tiny run, declared once: test modules import them (``tests/`` is on the path through
pyproject's ``[tool.pytest.ini_options] pythonpath``) and conftest.py turns them into fixtures
(``tiny_model``, ``tiny_model_flags``)."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The smallest transformer the tests train: fields of ``qbc.policy.ModelConfig``.
TINY_MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2}

#: The same model as flags of ``qbc train`` (and of every command that trains one).
TINY_MODEL_FLAGS = ("--model.d-model", "16", "--model.n-layers", "1", "--model.n-heads", "2")

#: One small setting of each chunk tokenizer kind: ``make_chunk_tokenizer(kind, **settings)``.
TINY_CHUNK_TOKENIZERS = {"fast": {"vocab_size": 64}, "rvq": {"codes": 8, "levels": 2},
                         "beast": {"n_control_points": 3, "degree": 2, "bins": 16},
                         "per-step": {"n_bins": 16}}


@dataclass
class Demos:
    """A stand-in for qbc.data.Demonstrations: arrays plus split by episode."""

    observations: np.ndarray
    actions: np.ndarray
    episode_ids: np.ndarray
    env_id: str | None = None
    metadata: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.observations)

    def split(self, val_fraction, seed):
        ids = np.unique(self.episode_ids)
        perm = np.random.default_rng(seed).permutation(ids)
        n_val = max(1, round(val_fraction * len(ids)))
        pick = [np.isin(self.episode_ids, part) for part in (perm[n_val:], perm[:n_val])]
        return tuple(Demos(self.observations[m], self.actions[m], self.episode_ids[m])
                     for m in pick)


def smooth_demos(episodes=20, steps=40, seed=0) -> Demos:
    """Actions a smooth function of the observation."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(episodes * steps, 3)).astype(np.float32)
    act = np.stack([np.tanh(1.5 * obs[:, 0] + 0.5 * obs[:, 2]), np.sin(obs[:, 1])], 1)
    return Demos(obs, act.astype(np.float32), np.repeat(np.arange(episodes), steps))


def copy_tiny_lin_run(source: Path, root: Path) -> None:
    """``source`` (conftest's ``tiny_lin_run``) copied into ``root``: ``root/minari`` (merged
    into what is there) and ``root/run``."""
    shutil.copytree(source / "minari", root / "minari", dirs_exist_ok=True)
    shutil.copytree(source / "run", root / "run")
