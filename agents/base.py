"""The base class of every expert: batched, clipped actions, optional Gaussian noise from a seeded
generator (:mod:`qbc.agents.experts` makes them by name)."""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.errors import InvalidValueError


class Expert:
    """Base class: subclasses implement ``mean_action(obs (B, n)) -> (B, m)`` float64.

    Attributes: ``name``; ``params`` (JSON-safe dict; ``make_expert(name, env, **params)`` on
    the same env rebuilds the expert); ``low``, ``high`` (act_dim,) action bounds;
    ``obs_dim``, ``act_dim``; ``K`` (act_dim, obs_dim) for linear experts, else None.
    """

    name = "expert"
    K: np.ndarray | None = None

    def __init__(self, env_info: dict[str, Any], params: dict[str, Any],
                 noise_std: float = 0.0, seed: int = 0):
        noise_std = float(noise_std)
        if not (np.isfinite(noise_std) and noise_std >= 0):
            raise InvalidValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
        self.obs_dim, self.act_dim = env_info["obs_dim"], env_info["act_dim"]
        self.low, self.high = env_info["low"], env_info["high"]
        self.noise_std = noise_std
        self.params = {**params, "noise_std": noise_std, "seed": int(seed)}
        self._rng = np.random.default_rng(seed)

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def act(
        self,
        obs: np.ndarray,
        *,
        deterministic: bool = True,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Actions (B, act_dim) float32 for observations (B, obs_dim) (the
        :class:`qbc.stepping.actor.Actor` protocol; the keywords are optional)."""
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise InvalidValueError(
                f"{self.name} expert expects observations of shape (B, {self.obs_dim}), got "
                f"{obs.shape}; add a batch axis with obs[None] for a single observation"
            )
        u = self.mean_action(obs)
        if not deterministic and self.noise_std > 0:
            gen = self._rng if rng is None else rng
            u = u + self.noise_std * gen.standard_normal(u.shape)
        return np.clip(u, self.low, self.high).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, JSON-safe; ``make_expert(d, env)`` rebuilds it."""
        return {"name": self.name, "params": dict(self.params)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"
