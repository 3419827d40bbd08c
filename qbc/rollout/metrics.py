"""What a coupled rollout measured, per horizon H: regret (with a 95% interval), state and action
deviations, failures, the success rate (with a 95% Wilson interval) and mode fractions (no
interval) (:func:`horizon_metrics`), and the per-step table (:func:`per_step_table`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError
from qbc.rollout.coupled import RolloutResult
from qbc.stepping.loop import episode_modes


def mean_ci95(x: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``x`` (N,) with a 95% Student-t confidence interval (lo, hi)."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    from scipy import stats  # deferred: 0.3 s of every command's start otherwise

    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def proportion_ci95(successes: np.ndarray) -> tuple[float, float, float]:
    """Fraction of True in ``successes`` (N,) with a 95% Wilson score interval (lo, hi): unlike
    a t-interval it stays inside [0, 1] and is not empty at 0% or 100%."""
    x = np.asarray(successes, dtype=bool)
    k, n = int(x.sum()), len(x)
    from scipy import stats  # deferred: 0.3 s of every command's start otherwise

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def mode_fractions(modes: np.ndarray) -> dict[str, float]:
    """Fraction of episodes per mode, from (N,) final modes: keys "left" (+1), "right" (-1)
    and "none" (0: the obstacle was never passed)."""
    m = np.asarray(modes)
    return {"left": float((m > 0).mean()), "right": float((m < 0).mean()),
            "none": float((m == 0).mean())}


def horizon_metrics(result: RolloutResult, horizons: Sequence[int], reference: str = "expert",
                    divergence_threshold: float = 1e3) -> dict[str, Any]:
    """Horizon-error metrics of every policy against ``reference``, for each H in ``horizons``.

    For each policy and H: return J_H (mean), regret J_H(reference) − J_H(policy) (mean, 95% CI,
    per-step mean), state deviation ‖x_t − x*_t‖ over t ≤ H (mean and max), action deviation
    ‖u_t − u*_t‖ over t < H (mean and max), and the fraction of episodes that diverged by H
    (terminated, or state norm above ``divergence_threshold``). Where the env reports success
    (:attr:`RolloutResult.success`): the success rate at H (the flag at step H, or at the
    episode's end if it ended before) with its 95% Wilson interval (``success``,
    ``success_ci95``); where it reports modes: the fraction of episodes per mode by H (``modes``,
    :func:`mode_fractions`).
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
        modes = episode_modes(result.modes[name]) if name in result.modes else None
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
            if name in result.success:
                rate, lo, hi = proportion_ci95(result.success[name][h - 1])
                per_h[str(h)].update(success=rate, success_ci95=[lo, hi])
            if name in result.modes:
                per_h[str(h)]["modes"] = mode_fractions(modes[h - 1])
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
