"""Coupled rollouts: the expert and other policies from the same initial states, same noise.

Every policy is rolled out on its own copy of the native vector env, reset with the same
per-episode seeds; qbc envs draw the initial state and the whole process-noise sequence from the
seed alone, so the only difference between two rollouts is the policies' actions. The gap between
a policy's trajectory and the expert's is then exactly the error that the policy introduces.

>>> result = coupled_rollout("qbc/ScalarStable-v0", {"expert": expert, "learner": policy},
...                          seeds=range(100), horizon=500)
>>> metrics = horizon_metrics(result, horizons=[10, 100, 500])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from qbc.errors import InvalidValueError
from qbc.gym_utils import make_vector_env


class Actor(Protocol):
    """Anything that acts on a batch: ``act(obs (B, obs_dim)) -> actions (B, act_dim)``.

    An actor with state across steps (e.g. model-based deployment, observation history) may
    define ``reset()``, called once before the first ``act`` of every batch of episodes.
    """

    def act(self, obs: np.ndarray) -> np.ndarray: ...


@dataclass
class RolloutResult:
    """Trajectories of several policies on the same episode seeds.

    observations[name]: (H+1, N, obs_dim) float64 — x_0 .. x_H (frozen after termination);
    actions[name]: (H, N, act_dim) float64 — the actions handed to the env;
    rewards[name]: (H, N) float64 — 0 once an episode has terminated;
    alive[name]: (H, N) bool — False for steps after the episode terminated (e.g. diverged).
    """

    env_id: str
    seeds: np.ndarray
    horizon: int
    observations: dict[str, np.ndarray]
    actions: dict[str, np.ndarray]
    rewards: dict[str, np.ndarray]
    alive: dict[str, np.ndarray]

    @property
    def names(self) -> list[str]:
        return list(self.rewards)


class QuantizedExpert:
    """The quantized expert q#π*: the expert's action passed through a tokenizer.

    With ``rng`` and a stochastic (smooth) tokenizer the tokens are drawn by stochastic rounding;
    otherwise the deterministic encoding is used.
    """

    def __init__(self, expert: Any, tokenizer: Any, rng: np.random.Generator | None = None):
        self.expert, self.tokenizer, self.rng = expert, tokenizer, rng
        self.n_clipped = 0  # action values outside the tokenizer's range (encode clips them)
        self.n_values = 0  # action values quantized so far

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = self.expert.act(obs)
        clipped = self.tokenizer.clipped_mask(actions)
        self.n_clipped += int(clipped.sum())
        self.n_values += int(clipped.size)
        rng = self.rng if self.tokenizer.stochastic else None
        return self.tokenizer.decode(self.tokenizer.encode(actions, rng=rng))


def coupled_rollout(env_id: str, policies: Mapping[str, Actor], seeds: Iterable[int],
                    horizon: int, num_envs: int | None = None,
                    env_kwargs: dict[str, Any] | None = None,
                    progress: bool = False) -> RolloutResult:
    """Roll every policy out for ``horizon`` steps from each seed; coupled across policies.

    Args:
        env_id: a registered Gymnasium id (qbc envs give exact coupling of the noise).
        policies: name -> actor; batched ``act(obs (B, obs_dim)) -> (B, act_dim)``.
        seeds: one seed per episode (N of them).
        horizon: steps per episode H (the env's time limit is set to H).
        num_envs: episodes stepped together (default: all N at once).
        env_kwargs: extra keyword arguments for the env.
    """
    seeds = np.asarray(list(seeds), dtype=np.int64)
    if len(seeds) == 0:
        raise InvalidValueError("need at least one episode seed")
    if horizon < 1:
        raise InvalidValueError(f"horizon must be >= 1, got {horizon}")
    if not policies:
        raise InvalidValueError("need at least one policy to roll out")
    batch = int(num_envs or len(seeds))
    if batch < 1:
        raise InvalidValueError(f"num_envs must be >= 1, got {num_envs}")
    kwargs = {"max_episode_steps": horizon, **(env_kwargs or {})}
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {name: [] for name in policies}
    chunks = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
    bar = tqdm(total=len(chunks) * len(policies) * horizon, desc="rollout", unit="step",
               disable=not progress, leave=False)
    for chunk in chunks:
        for name, policy in policies.items():
            parts[name].append(_rollout_one(env_id, policy, chunk, horizon, kwargs, bar))
    bar.close()
    cat = {name: [np.concatenate(x, axis=1) for x in zip(*p, strict=True)]
           for name, p in parts.items()}
    return RolloutResult(
        env_id=env_id, seeds=seeds, horizon=horizon,
        observations={n: c[0] for n, c in cat.items()}, actions={n: c[1] for n, c in cat.items()},
        rewards={n: c[2] for n, c in cat.items()}, alive={n: c[3] for n, c in cat.items()},
    )


def _rollout_one(env_id, policy, seeds, horizon, kwargs, bar):
    env = make_vector_env(env_id, len(seeds), **kwargs)
    try:
        obs, _ = env.reset(seed=[int(s) for s in seeds])
        n = len(seeds)
        observations = np.empty((horizon + 1, n) + obs.shape[1:], dtype=np.float64)
        act_shape = env.single_action_space.shape
        actions = np.zeros((horizon, n) + act_shape, dtype=np.float64)
        rewards = np.zeros((horizon, n), dtype=np.float64)
        alive = np.zeros((horizon, n), dtype=bool)
        observations[0] = obs
        running = np.ones(n, dtype=bool)
        if hasattr(policy, "reset"):
            policy.reset()
        for t in range(horizon):
            action = np.asarray(policy.act(obs), dtype=env.single_action_space.dtype)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            alive[t] = running
            actions[t] = np.where(_col(running, action), action, 0.0)
            rewards[t] = np.where(running, reward, 0.0)
            # After a termination the vector env autoresets on the next step: freeze that copy.
            observations[t + 1] = np.where(_col(running, next_obs), next_obs, observations[t])
            running &= ~np.asarray(terminated, dtype=bool)
            obs = next_obs
            bar.update(1)
    finally:
        env.close()
    return observations, actions, rewards, alive


def _col(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Broadcast an (N,) mask against an (N, ...) array."""
    return mask.reshape(mask.shape + (1,) * (np.ndim(like) - 1))


# -- metrics -------------------------------------------------------------------------------------
def mean_ci95(x: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``x`` (N,) with a 95% Student-t confidence interval (lo, hi)."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def horizon_metrics(result: RolloutResult, horizons: Sequence[int], reference: str = "expert",
                    divergence_threshold: float = 1e3) -> dict[str, Any]:
    """Horizon-error metrics of every policy against ``reference``, for each H in ``horizons``.

    For each policy and H: return J_H (mean), regret J_H(reference) − J_H(policy) (mean, 95% CI,
    per-step mean), state deviation ‖x_t − x*_t‖ over t ≤ H (mean and max), action deviation
    ‖u_t − u*_t‖ over t < H (mean and max), and the fraction of episodes that diverged by H
    (terminated, or state norm above ``divergence_threshold``).
    Returns ``{"horizons": [...], "policies": {name: {"H": {...}}}}``.
    """
    if reference not in result.rewards:
        raise InvalidValueError(f"reference policy {reference!r} was not rolled out")
    horizons = sorted(int(h) for h in horizons)
    if not horizons or horizons[0] < 1 or horizons[-1] > result.horizon:
        raise InvalidValueError(
            f"horizons must lie in [1, {result.horizon}] (the rollout length), got {horizons}"
        )
    ref_x, ref_u = result.observations[reference], result.actions[reference]
    ref_returns = np.cumsum(result.rewards[reference], axis=0)
    out: dict[str, Any] = {"horizons": horizons, "reference": reference, "policies": {}}
    for name in result.names:
        returns = np.cumsum(result.rewards[name], axis=0)
        x, u = result.observations[name], result.actions[name]
        state_dev = _norm(x - ref_x)                  # (H+1, N)
        action_dev = _norm(u - ref_u)                 # (H, N)
        blown = np.maximum.accumulate(_norm(x[1:]) > divergence_threshold, axis=0)
        diverged = blown | ~result.alive[name]        # (H, N)
        per_h = {}
        for h in horizons:
            regret = ref_returns[h - 1] - returns[h - 1]
            mean, lo, hi = mean_ci95(regret)
            per_h[str(h)] = {
                "return": float(returns[h - 1].mean()),
                "regret": mean, "regret_ci95": [lo, hi], "regret_per_step": mean / h,
                "state_dev_mean": float(state_dev[:h + 1].mean()),
                "state_dev_max": float(state_dev[:h + 1].max()),
                "action_dev_mean": float(action_dev[:h].mean()),
                "action_dev_max": float(action_dev[:h].max()),
                "diverged_fraction": float(diverged[h - 1].mean()),
            }
        out["policies"][name] = per_h
    return out


def _norm(x: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, for (..., D) or (...) arrays."""
    return np.abs(x) if x.ndim < 3 else np.linalg.norm(x, axis=-1)


def per_step_table(result: RolloutResult, reference: str = "expert") -> list[dict[str, Any]]:
    """Rows (policy, t): mean/max state deviation, mean action deviation, mean reward, alive."""
    rows = []
    ref_x, ref_u = result.observations[reference], result.actions[reference]
    for name in result.names:
        sdev = _norm(result.observations[name] - ref_x)
        adev = _norm(result.actions[name] - ref_u)
        for t in range(result.horizon):
            rows.append({
                "policy": name, "t": t,
                "state_dev_mean": float(sdev[t].mean()), "state_dev_max": float(sdev[t].max()),
                "action_dev_mean": float(adev[t].mean()),
                "reward_mean": float(result.rewards[name][t].mean()),
                "alive_fraction": float(result.alive[name][t].mean()),
            })
    return rows


# -- growth fits ---------------------------------------------------------------------------------
def fit_growth(horizons: Sequence[float], values: Sequence[float]) -> dict[str, Any]:
    """Fit ``values ≈ c·H^p`` (power law) and ``values ≈ c·exp(λH)`` (exponential).

    Both are least-squares fits of log(value), so their residuals are comparable; the one with the
    smaller residual sum of squares is reported as ``better``. Non-positive values are left out
    (a log cannot take them); fewer than 3 usable points give no fit.
    Returns ``{"power": {"slope", "ci95", "r2"}, "exponential": {"rate", "ci95", "r2"},
    "better", "n_points"}``.
    """
    h = np.asarray(horizons, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v) & (v > 0)
    h, v = h[keep], v[keep]
    if len(h) < 3:
        return {"power": None, "exponential": None, "better": None, "n_points": int(len(h))}
    logv = np.log(v)
    fits = {}
    for kind, x, key in (("power", np.log(h), "slope"), ("exponential", h, "rate")):
        fit = stats.linregress(x, logv)
        half = float(stats.t.ppf(0.975, len(h) - 2) * fit.stderr)
        resid = logv - (fit.intercept + fit.slope * x)
        fits[kind] = {key: float(fit.slope), "ci95": [fit.slope - half, fit.slope + half],
                      "r2": float(fit.rvalue ** 2), "rss": float(resid @ resid)}
    better = "power" if fits["power"]["rss"] <= fits["exponential"]["rss"] else "exponential"
    return {**fits, "better": better, "n_points": int(len(h))}
