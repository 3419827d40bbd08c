"""Quantizers for N(0,1), exact moments, and the debiased estimator of qbc.compressive."""

from __future__ import annotations

import numpy as np
import pytest

from qbc.compressive import (
    GaussianProjection,
    InnerProductEstimator,
    bivariate_step_moment,
    normalize_rows,
    one_bit_variance,
    projection_quantizer,
    quantizer_cells,
)
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.quantizers.gaussian import gaussian_distortion

# Reference values for a N(0,1) source (docs/theory.md §4), b = 1..4.
LLOYD_MAX_D = [0.36338, 0.11748, 0.03455, 0.00950]
UNIFORM_STEP = [1.5958, 0.9957, 0.5860, 0.3352]
UNIFORM_D = [0.36338, 0.11885, 0.03744, 0.01154]


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_lloyd_max_distortion_matches_reference(bits):
    q = projection_quantizer("lloyd_max", bits)
    codebook, thresholds = quantizer_cells(q)
    assert len(codebook) == 2**bits
    d = gaussian_distortion(thresholds, codebook)
    assert d == pytest.approx(LLOYD_MAX_D[bits - 1], rel=0.01)
    # Centroid condition: E[Q(u)^2] = 1 - D, and α(1) = E[Q(u)^2] from the moment formula.
    assert InnerProductEstimator(q).alpha(1.0) == pytest.approx(1 - d, abs=1e-9)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_uniform_step_and_distortion_match_reference(bits):
    q = projection_quantizer("uniform", bits)
    assert q.n_levels == 2**bits
    assert q.bin_width == pytest.approx(UNIFORM_STEP[bits - 1], rel=0.01)
    codebook, thresholds = quantizer_cells(q)
    assert gaussian_distortion(thresholds, codebook) == pytest.approx(UNIFORM_D[bits - 1],
                                                                      rel=0.01)


@pytest.mark.parametrize("spec", [("lloyd_max", 3), ("uniform", 2),
                                  ({"name": "kmeans", "n_init": 1}, 2), ("sign", 1)])
def test_cells_agree_with_encode(spec):
    q = projection_quantizer(*spec)
    codebook, thresholds = quantizer_cells(q)
    below, above = q.encode(thresholds - 1e-7), q.encode(thresholds + 1e-7)
    np.testing.assert_array_equal(above - below, 1)
    np.testing.assert_allclose(np.sort(q.codebook), codebook)


def test_projection_quantizer_rejects_bad_requests():
    with pytest.raises(UnknownNameError):
        projection_quantizer("lloyd_maxx", 2)
    with pytest.raises(InvalidValueError):
        projection_quantizer("sign", 2)
    with pytest.raises(InvalidValueError):
        projection_quantizer("lloyd_max", 0)
    with pytest.raises(InvalidValueError):
        projection_quantizer("vq", 2)


def test_projection_is_seeded_and_standard_normal():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 20)) * np.array([[1.0], [5.0], [0.01]])
    z = GaussianProjection(k=20_000, seed=3).fit(x).transform(x)
    assert z.shape == (3, 20_000) and z.dtype == np.float32
    # Unit-norm rows: every coordinate N(0,1) whatever the row's scale.
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=4 / np.sqrt(20_000))
    np.testing.assert_allclose(z.var(axis=1), 1.0, atol=5 * np.sqrt(2 / 20_000))
    again = GaussianProjection(k=20_000, seed=3).fit(20).transform(x)
    np.testing.assert_array_equal(z, again)
    other = GaussianProjection(k=20_000, seed=4).fit(20).transform(x)
    assert not np.allclose(z, other)
    # Inner products of the projections estimate cosines: (1/k) z_x·z_y ≈ cos(x, y).
    xn = normalize_rows(x)
    np.testing.assert_allclose(z @ z.T / 20_000, xn @ xn.T, atol=0.05)


def test_projection_errors():
    with pytest.raises(InvalidValueError, match="all zero"):
        normalize_rows(np.zeros((2, 3)))
    proj = GaussianProjection(k=4).fit(3)
    with pytest.raises(InvalidValueError, match="features"):
        proj.transform(np.ones((2, 5)))
    with pytest.raises(InvalidValueError):
        GaussianProjection(k=0).fit(3)


def test_alpha_of_sign_is_sheppard_and_alpha_prime_is_its_derivative():
    rho = np.linspace(-0.99, 0.99, 23)
    sign = np.array([-1.0, 1.0])
    np.testing.assert_allclose(bivariate_step_moment(sign, sign, [0.0], rho),
                               2 / np.pi * np.arcsin(rho), atol=1e-12)
    est = InnerProductEstimator(projection_quantizer("lloyd_max", 3))
    h = 1e-5
    numeric = (est.alpha(rho + h * 0.5) - est.alpha(rho - h * 0.5)) / h
    np.testing.assert_allclose(est.alpha_prime(rho), numeric, rtol=1e-5)
    assert np.all(np.diff(est.alpha(rho)) > 0)


@pytest.mark.parametrize("name,bits", [("lloyd_max", 2), ("uniform", 3)])
def test_alpha_and_second_moment_match_monte_carlo(name, bits):
    q = projection_quantizer(name, bits)
    est = InnerProductEstimator(q)
    rng = np.random.default_rng(11)
    n, rho = 400_000, 0.7
    u = rng.standard_normal(n)
    v = rho * u + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    prod = q.quantize(u).astype(np.float64) * q.quantize(v)
    se = prod.std() / np.sqrt(n)
    assert abs(prod.mean() - est.alpha(rho)) < 4 * se
    assert prod.var() == pytest.approx(est.product_variance(rho), rel=0.02)


def test_debias_inverts_alpha():
    est = InnerProductEstimator(projection_quantizer("uniform", 2))
    rho = np.linspace(-1, 1, 41)
    np.testing.assert_allclose(est.debias(est.alpha(rho)), rho, atol=1e-6)
    # Raw values beyond the attainable range clip to ±1.
    assert est.debias(5.0) == 1.0 and est.debias(-5.0) == -1.0


def test_one_bit_variance_matches_closed_form():
    rho = np.linspace(-0.95, 0.95, 39)
    for q in (projection_quantizer("lloyd_max", 1), projection_quantizer("sign", 1)):
        np.testing.assert_allclose(InnerProductEstimator(q).variance(rho, k=64),
                                   one_bit_variance(rho, k=64), rtol=1e-8)


def test_full_precision_estimator():
    est = InnerProductEstimator(None)
    assert est.alpha(0.3) == pytest.approx(0.3)
    assert est.variance(0.5, k=10) == pytest.approx(1.25 / 10)


# Monte Carlo of the debiased estimator: REPS independent estimates from K projections each.
K, REPS = 1000, 4000


@pytest.fixture(scope="module", params=[0.0, 0.5, 0.9])
def projected_pair(request):
    """Projections (2, REPS, K) of two unit vectors with cosine ρ, through GaussianProjection."""
    rho = request.param
    x = np.array([[1.0, 0.0], [rho, np.sqrt(1 - rho**2)]])
    seed = int(100 * rho) + 7
    z = GaussianProjection(k=K * REPS, seed=seed).fit(x).transform(x)
    return rho, z.reshape(2, REPS, K)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lloyd_max", "uniform"])
@pytest.mark.parametrize("bits", [1, 2, 3])
def test_debiased_estimator_is_unbiased_and_has_delta_method_variance(projected_pair, name,
                                                                       bits):
    rho, z = projected_pair
    q = projection_quantizer(name, bits)
    est = InnerProductEstimator(q)
    zq = q.quantize(z)
    raw = est.raw(zq[0], zq[1])
    debiased = est.debias(raw)
    var = est.variance(rho, K)
    se = np.sqrt(var / REPS)
    # Unbiased up to the O(1/K) second-order term (< 1e-3 here), within 4 standard errors.
    assert abs(debiased.mean() - rho - est.bias(rho, K)) < 4 * se
    assert abs(debiased.mean() - rho) < 4 * se + 1.5e-3
    if rho != 0:  # the raw estimator is visibly biased: this test can tell them apart
        assert abs(raw.mean() - rho) > 20 * se
    # Delta-method variance within 10% (sampling error of the variance is ~2.2% at 4000 reps).
    assert debiased.var(ddof=1) == pytest.approx(var, rel=0.10)
    if bits == 1:
        assert debiased.var(ddof=1) == pytest.approx(one_bit_variance(rho, K), rel=0.10)


def test_variance_table_orders_quantizers_by_similarity():
    from qbc.compressive.estimators import variance_table

    rows = variance_table(["lloyd_max", "uniform"], [2, 3], [0.0, 0.9], k=1)
    v = {(r["quantizer"], r["bits"], r["rho"]): r["variance"] for r in rows}
    for b in (2, 3):
        # Lloyd-Max is better at low similarity, the MSE-optimal uniform quantizer at high.
        assert v[("lloyd_max", b, 0.0)] < v[("uniform", b, 0.0)]
        assert v[("uniform", b, 0.9)] < v[("lloyd_max", b, 0.9)]
    assert v[("none", "full", 0.9)] == pytest.approx(1.81)
