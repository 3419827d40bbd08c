"""Growth fits of regret against the horizon, and the confidence interval helper."""

import numpy as np
import pytest

from qbc.rollout.growth import fit_growth
from qbc.rollout.metrics import mean_ci95


def test_power_law_slope_is_recovered():
    rng = np.random.default_rng(0)
    h = np.array([10, 20, 50, 100, 200, 500, 1000], dtype=float)
    for p in (0.5, 1.0, 2.0):
        v = 0.3 * h**p * np.exp(rng.normal(0, 0.02, len(h)))
        fit = fit_growth(h, v)
        assert fit["power"]["slope"] == pytest.approx(p, abs=0.03)
        assert fit["better"] == "power"


def test_power_law_interval_covers_the_slope_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    h = np.array([10, 20, 50, 100, 200, 500, 1000], dtype=float)
    covered = 0
    for _ in range(300):
        lo, hi = fit_growth(h, h**1.0 * np.exp(rng.normal(0, 0.1, len(h))))["power"]["ci95"]
        covered += lo <= 1.0 <= hi
    assert 0.91 <= covered / 300 <= 0.99


def test_exponential_rate_is_recovered():
    rng = np.random.default_rng(1)
    h = np.arange(10, 110, 10, dtype=float)
    v = 0.01 * np.exp(0.07 * h) * np.exp(rng.normal(0, 0.02, len(h)))
    fit = fit_growth(h, v)
    assert fit["exponential"]["rate"] == pytest.approx(0.07, abs=0.003)
    assert fit["better"] == "exponential"


def test_non_positive_values_are_left_out_and_too_few_points_give_no_fit():
    fit = fit_growth([1, 2, 3, 4], [-1.0, 0.0, 1.0, 2.0])
    assert fit["n_points"] == 2 and fit["power"] is None and fit["better"] is None


def test_mean_ci95_covers_the_mean_at_the_nominal_rate():
    rng = np.random.default_rng(2)
    covered = 0
    for _ in range(400):
        _, lo, hi = mean_ci95(rng.normal(1.0, 2.0, 20))
        covered += lo <= 1.0 <= hi
    assert 0.92 <= covered / 400 <= 0.98


H = np.array([10, 20, 50, 100, 200, 500], dtype=float)


def test_plateaued_regret_is_no_growth_not_a_better_fit():
    # Saturating regret: the power fit's slope is positive with an interval above 0, but regret
    # stops growing after H ~ 50; the fit used to call this "better fit: power".
    fit = fit_growth(H, 5.0 * (1 - np.exp(-H / 20)))
    assert fit["power"]["ci95"][0] > 0 and fit["better"] == "power"
    assert fit["verdict"] == "no growth detected" and not fit["growth_detected"]
    assert fit["no_growth_reason"].startswith("plateau")


def test_slope_interval_reaching_zero_or_shrinking_regret_is_no_growth():
    rng = np.random.default_rng(4)
    noisy = 1.0 + 0.3 * rng.standard_normal(len(H)) ** 2  # no trend, only noise
    shrinking = 10.0 / np.sqrt(H)
    for values in (noisy, shrinking):
        fit = fit_growth(H, values)
        assert fit["power"]["ci95"][0] <= 0, fit["power"]
        assert fit["verdict"] == "no growth detected"
    fit = fit_growth(H, np.r_[0.1 * H[:-1], -1.0])  # regret gone at the largest horizon
    assert fit["verdict"] == "no growth detected" and "largest horizon" in fit["no_growth_reason"]


def test_growing_regret_keeps_its_better_fit():
    for values, kind in ((0.3 * H, "power"), (0.01 * np.exp(0.02 * H), "exponential")):
        fit = fit_growth(H, values)
        assert fit["growth_detected"] and fit["verdict"] == fit["better"] == kind


def test_rollout_summary_says_no_growth_detected():
    from qbc.cli.rollout import format_summary

    per_h = {str(int(h)): {"return": 1.0, "regret": float(v), "regret_ci95": [v, v],
                           "state_dev_mean": 0.0, "diverged_fraction": 0.0}
             for h, v in zip(H, 5.0 * (1 - np.exp(-H / 20)), strict=True)}
    metrics = {"env_id": "x", "reference": "expert", "horizons": [int(h) for h in H],
               "policies": {"expert": per_h, "policy": per_h},
               "growth": {"policy": fit_growth(H, [per_h[str(int(h))]["regret"] for h in H])}}
    text = format_summary(metrics)
    assert "no growth detected (plateau" in text and "better fit" not in text
