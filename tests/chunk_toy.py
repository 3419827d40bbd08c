"""The toy chunk data and the tiny chunk run the chunk tests share
(tests/policy/test_chunk_policy.py, tests/training/test_chunk_ordered_head.py,
tests/chunking/test_chunk_integrity.py)."""

import numpy as np

from qbc.policy import ModelConfig
from qbc.policy.registry import model_for
from qbc.training.chunk_head import with_used_head_settings
from qbc.training.chunked import ChunkTrainConfig, train_chunked

TINY = ModelConfig(d_model=16, n_heads=2, n_layers=1, hidden=32, mlp_layers=1)


class Demos:
    """Toy data: observation (x_0, t / 10), action u_t = x_0 (t + 1) / 10 in each episode."""

    def __init__(self, episodes=8, steps=12, seed=0):
        rng = np.random.default_rng(seed)
        x0 = np.repeat(rng.uniform(-1, 1, episodes), steps)
        t = np.tile(np.arange(steps), episodes)
        self.observations = np.stack([x0, t / 10], axis=1).astype(np.float32)
        self.actions = (x0 * (t + 1) / 10)[:, None].astype(np.float32)
        self.episode_ids = np.repeat(np.arange(episodes), steps)
        self.env_id = None

    def __len__(self):
        return len(self.observations)

    def split(self, val_fraction, seed):
        ids = self.episode_ids
        return self._rows(ids >= 2), self._rows(ids < 2)

    def _rows(self, mask):
        d = object.__new__(Demos)
        d.observations, d.actions = self.observations[mask], self.actions[mask]
        d.episode_ids, d.env_id = self.episode_ids[mask], None
        return d


def _train(tmp_path, stop_at=None, **kw):
    kw = {"steps": 150, "lr": 3e-3, "eval_interval": 50, **kw}
    cfg = ChunkTrainConfig(dataset="toy", out=tmp_path / kw.pop("name", "run"), chunk_k=3,
                           model=model_for(kw.get("policy", "chunk-ar-transformer"), TINY),
                           batch_size=32, warmup_steps=10, progress=False,
                           device="cpu", **kw)
    cfg = with_used_head_settings(cfg)  # TINY's hidden is the MLP's; fast/beast have no loc MLP
    return train_chunked(cfg, Demos(), stop_at=stop_at), cfg
