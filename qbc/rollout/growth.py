"""How regret grows with the horizon (:func:`fit_growth`: a power law, or a plateau) and whether a
learner reaches its quantization floor (:func:`floor_verdict`, with the likely cause when not)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# -- growth fits ---------------------------------------------------------------------------------
#: Below this log-log slope over the upper half of the horizons, regret counts as plateaued
#: (2**0.1 = 1.07: less than 7% more regret when H doubles).
PLATEAU_SLOPE = 0.1


def fit_growth(horizons: Sequence[float], values: Sequence[float]) -> dict[str, Any]:
    """Fit ``values ≈ c·H^p`` (power law) and ``values ≈ c·exp(λH)`` (exponential), and say
    whether the values grow at all.

    Both are least-squares fits of log(value), so their residuals are comparable; the one with the
    smaller residual sum of squares is ``better``. Non-positive values are left out (a log cannot
    take them); fewer than 3 usable points give no fit.

    ``verdict`` is ``better`` only when growth is detected, else ``"no growth detected"``. The
    rule, all from the numbers: no growth when (a) the power-law slope's 95% interval reaches
    0 or below, or (b) regret has plateaued: the log-log slope over the upper half of the
    horizons (at least the two largest) is below :data:`PLATEAU_SLOPE`, or (c) the value at the
    largest horizon is non-positive (left out of the fit). ``growth_detected`` and
    ``no_growth_reason`` record which.

    Returns ``{"power": {"slope", "ci95", "r2", "rss"}, "exponential": {"rate", "ci95", "r2",
    "rss"}, "better", "verdict", "growth_detected", "no_growth_reason", "tail_slope",
    "n_points"}``.
    """
    h_all = np.asarray(horizons, dtype=np.float64)
    v_all = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v_all) & (v_all > 0)
    h, v = h_all[keep], v_all[keep]
    if len(h) < 3:
        return {"power": None, "exponential": None, "better": None,
                "verdict": "too few positive points to fit", "growth_detected": False,
                "no_growth_reason": "fewer than 3 positive values", "tail_slope": None,
                "n_points": int(len(h))}
    logv = np.log(v)
    from scipy import stats  # deferred: 0.3 s of every command's start otherwise

    fits = {}
    for kind, x, key in (("power", np.log(h), "slope"), ("exponential", h, "rate")):
        fit = stats.linregress(x, logv)
        half = float(stats.t.ppf(0.975, len(h) - 2) * fit.stderr)
        resid = logv - (fit.intercept + fit.slope * x)
        slope = float(fit.slope)
        fits[kind] = {key: slope, "ci95": [slope - half, slope + half],
                      "r2": float(fit.rvalue ** 2), "rss": float(resid @ resid)}
    better = "power" if fits["power"]["rss"] <= fits["exponential"]["rss"] else "exponential"
    tail = h >= np.median(h)  # the upper half: at least the two largest of >= 3 points
    tail_slope = float(np.polyfit(np.log(h[tail]), logv[tail], 1)[0])
    reason = _no_growth_reason(fits["power"]["ci95"][0], tail_slope, bool(keep[np.argmax(h_all)]))
    return {**fits, "better": better, "verdict": better if reason is None else "no growth detected",
            "growth_detected": reason is None, "no_growth_reason": reason,
            "tail_slope": tail_slope, "n_points": int(len(h))}


def _no_growth_reason(slope_lo: float, tail_slope: float, last_positive: bool) -> str | None:
    """Why the fit shows no growth (see :func:`fit_growth`), or None when it grows."""
    if not last_positive:
        return "the value at the largest horizon is not positive"
    if slope_lo <= 0:
        return "the power-law slope's 95% interval reaches 0"
    if tail_slope < PLATEAU_SLOPE:
        return (f"plateau: log-log slope {tail_slope:.2f} < {PLATEAU_SLOPE} over the largest "
                "horizons")
    return None


# -- the learner against its floor ---------------------------------------------------------------
#: A learner reaches its floor when its regret is at most FLOOR_FACTOR x the quantized expert's,
#: or at most the quantized expert's plus FLOOR_ALLOWANCE x |the expert's return| (for floors
#: near or below 0), and it fails (terminates or diverges) no more often than the floor.
FLOOR_FACTOR, FLOOR_ALLOWANCE = 2.0, 0.01


def floor_verdict(learner: Mapping[str, float], floor: Mapping[str, float],
                  expert_return: float, training: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Whether a learner reaches its quantization floor, and if not the likely cause.

    ``learner`` and ``floor`` (the quantized expert on the same coupled episodes) hold 'regret'
    and 'failed' (the fraction of episodes that terminated or diverged); ``expert_return`` is
    the expert's mean return over the same horizon. ``training`` (optional: 'best_step',
    'steps', 'stopped_early', 'select_by') lets the cause name the checkpoint selection or the
    budget.

    Returns 'ratio' (learner / floor regret, None when the floor's regret is <= 0), 'limit'
    (the largest regret that meets the target), 'met', 'cause' and 'fix' (None when met) and
    'text', one line for a terminal."""
    regret, failed = float(learner["regret"]), float(learner["failed"])
    floor_regret, floor_failed = float(floor["regret"]), float(floor["failed"])
    limit = max(FLOOR_FACTOR * floor_regret, floor_regret + FLOOR_ALLOWANCE * abs(expert_return))
    ratio = regret / floor_regret if floor_regret > 0 else None
    met = regret <= limit and failed <= floor_failed
    cause, fix = (None, None) if met else _likely_cause(failed, floor_failed, training)
    shown = f"{ratio:.2f}x the floor's" if ratio is not None else f"floor {floor_regret:.3g}"
    text = (f"learner vs floor: regret {regret:.3g} ({shown}; target <= {limit:.3g}), failed "
            f"{failed:.1%} vs the floor's {floor_failed:.1%}: "
            + ("target met" if met else f"target missed. Likely cause: {cause}; {fix}"))
    return {"regret": regret, "failed": failed, "floor_regret": floor_regret,
            "floor_failed": floor_failed, "ratio": ratio, "limit": limit, "met": met,
            "cause": cause, "fix": fix, "text": text}


def _likely_cause(failed: float, floor_failed: float,
                  training: Mapping[str, Any] | None) -> tuple[str, str]:
    """(cause, fix) of a missed target, most specific first. ``training['command'] ==
    'dagger'``: the run is DAgger's already, so its fix is more of DAgger's data."""
    t = training or {}
    interactive = ("more DAgger rounds (a larger --rounds, re-run to continue) or "
                   "--episodes-per-round" if t.get("command") == "dagger" else
                   "qbc collect --dart auto, or qbc dagger")
    if failed > floor_failed:
        return ("episodes reach states the demonstrations never visit (the learner fails where "
                "the quantized expert does not)", f"collect interactive data: {interactive}")
    steps, best = t.get("steps"), t.get("best_step")
    if steps and best is not None and best <= 0.2 * steps and t.get("select_by") != "rollout":
        return (f"checkpoint selection (best/ is step {best} of {steps})",
                "select by control: --select-by rollout")
    if steps and best is not None and best >= 0.9 * steps and not t.get("stopped_early"):
        return ("under-training (the best checkpoint is among the last and the budget ran out)",
                "a larger budget: --epochs or --steps")
    return ("states off the demonstrations or model capacity",
            f"collect interactive data ({interactive}) or a larger --model")
