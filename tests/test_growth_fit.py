"""Growth fits of regret against the horizon, and the confidence interval helper."""

import numpy as np
import pytest

from qbc.rollout import fit_growth, mean_ci95


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
