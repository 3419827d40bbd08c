"""What per-step and chunk cells share when they make their rows (:mod:`qbc.sweep.runner`,
:mod:`qbc.sweep.chunk_runner`): the horizons a cell is rolled out to, the nominal bin width of
its data, one row of the result table."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from qbc.errors import QbcWarning
from qbc.stepping.limits import cap_horizons
from qbc.sweep.cells import Cell

#: Beside a smooth (stochastic) tokenizer's quantized expert the runner adds this row: the same
#: tokenizer with nearest rounding, the floor an argmax-decoded learner reproduces (not a policy
#: a sweep file lists).
QUANTIZED_EXPERT_NEAREST = "quantized-expert-nearest"


def nominal_bin_width(actions: np.ndarray, bins: int) -> float:
    """Action range / bins, averaged over action dimensions: the cell width of a uniform grid
    with ``bins`` cells spanning the demonstrations' actions (N, D), in action units."""
    actions = np.asarray(actions, dtype=np.float64).reshape(len(actions), -1)
    return float(np.mean((actions.max(0) - actions.min(0)) / bins))


def capped_horizons(cell: Cell) -> list[int]:
    """The cell's horizons, capped at a third-party env's time limit with the one-line warning
    of ``qbc rollout`` (:func:`qbc.stepping.limits.cap_horizons`); qbc's own envs take any
    horizon."""
    horizons, capped = cap_horizons(cell.env, cell.settings["horizons"])
    if capped:
        warnings.warn(capped, QbcWarning, stacklevel=2)
    return horizons


def budget_columns(steps: int, budget: dict[str, Any], best_step: int) -> dict[str, Any]:
    """The result-table columns of a trained policy's step budget: ``train_steps`` (taken),
    ``budget_steps`` (resolved: the given [train] steps, or the data-scaled default),
    ``best_step`` (the kept checkpoint) and ``stopped_early`` (1 when early stopping ended
    training, else 0)."""
    return {"train_steps": int(steps), "budget_steps": int(budget["steps"]),
            "best_step": int(best_step), "stopped_early": int(bool(budget["stopped_early"]))}


def make_row(cell: Cell, kind: str, h: int, m: dict[str, Any], expert_m: dict[str, Any],
             width: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    """One row of the result table: policy ``kind`` of ``cell`` at horizon ``h`` (its metrics
    ``m`` and the expert's ``expert_m`` from :func:`qbc.rollout.metrics.horizon_metrics`), plus
    ``extra`` columns (val_loss, train_seconds; chunk cells: execution, tokens, failures).
    Where the env reports success: the policy's and the expert's success rate at H with their
    95% Wilson intervals (:func:`success_columns`; None elsewhere)."""
    return {
        "cell": cell.key, "env": cell.env_label, "expert": cell.expert_label,
        "quantizer": cell.quantizer, "bins": cell.bins or None, "bin_width": width,
        "n_demos": cell.n_demos, "seed": cell.seed, "policy": kind, "H": h,
        "chunk_tokenizer": cell.chunk_tokenizer_label, "chunk_len": cell.chunk_len or None,
        "regret": m["regret"], "regret_ci_lo": m["regret_ci95"][0],
        "regret_ci_hi": m["regret_ci95"][1], "regret_per_step": m["regret_per_step"],
        "return": m["return"], "expert_return": expert_m["return"],
        "state_dev_mean": m["state_dev_mean"], "state_dev_max": m["state_dev_max"],
        "action_dev_mean": m["action_dev_mean"],
        "diverged_fraction": m["diverged_fraction"], **success_columns(m), **extra,
        **success_columns(expert_m, "expert_"),
    }


def success_columns(m: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``success``, ``success_ci_lo``, ``success_ci_hi`` (with ``prefix``) of metrics ``m``
    (:func:`qbc.rollout.metrics.horizon_metrics`): the success rate at H with its 95% Wilson
    interval where the env reports success, else None."""
    ci = m.get("success_ci95") or (None, None)
    return {f"{prefix}success": m.get("success"), f"{prefix}success_ci_lo": ci[0],
            f"{prefix}success_ci_hi": ci[1]}
