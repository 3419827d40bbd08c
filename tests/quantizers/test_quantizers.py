"""The quantizer registry: exact bounds, statistical properties, round trips."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qbc.errors import InvalidValueError, NotFittedError, UnknownNameError
from qbc.quantizers import (
    Quantizer,
    available_quantizers,
    make_quantizer,
    register_quantizer,
)
from qbc.quantizers.binning import UniformQuantizer

# float32 decode: allow its rounding on top of the exact bound.
F32 = 4 * np.finfo(np.float32).eps

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def _sample(name):
    return np.random.default_rng(0).normal(size=(500, 2) if name == "vq" else 500)


def test_registry_lists_the_required_names():
    assert {"uniform", "kmeans", "smooth", "sign", "lloyd_max", "vq"} <= set(available_quantizers())


def test_unknown_name_lists_valid_ones_and_suggests():
    with pytest.raises(UnknownNameError) as info:
        make_quantizer("unifrom")
    msg = str(info.value)
    assert "'uniform'" in msg and "kmeans" in msg and "lloyd_max" in msg


def test_bad_parameters_are_clear_errors():
    with pytest.raises(InvalidValueError, match="n_bins"):
        make_quantizer("uniform", n_bins=1).fit(np.arange(10.0))
    with pytest.raises(InvalidValueError, match="takes"):
        make_quantizer("uniform", bins=8)
    with pytest.raises(InvalidValueError, match="non-finite"):
        make_quantizer("kmeans", n_bins=4).fit(np.array([0.0, np.nan, 1.0, 2.0, 3.0]))
    with pytest.raises(NotFittedError):
        make_quantizer("uniform", n_bins=4).encode(np.zeros(3))


@pytest.mark.parametrize("name", ["uniform", "kmeans", "smooth", "sign", "lloyd_max", "vq"])
def test_every_name_makes_fits_saves_and_restores(name):
    x = _sample(name)
    params = {} if name in ("sign", "lloyd_max") else {"n_bins": 8}
    q = make_quantizer(name, **params).fit(x)
    state = json.loads(json.dumps(q.state_dict()))  # through real JSON text
    r = Quantizer.from_state_dict(state)
    assert type(r) is type(q)
    assert r.state_dict() == q.state_dict()
    np.testing.assert_array_equal(r.codebook, q.codebook)
    np.testing.assert_array_equal(r.encode(x), q.encode(x))
    tokens = q.encode(x)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < q.n_levels
    assert q.decode(tokens).dtype == np.float32
    # Larq-style resolution: string, dict and instance.
    assert make_quantizer({"name": name, **params}).get_params() == q.get_params()
    assert make_quantizer(q) is q
    assert make_quantizer(state).state_dict() == q.state_dict()


def test_register_a_custom_quantizer():
    @register_quantizer("test_round_to_int")
    class RoundQuantizer(Quantizer):
        _fitted_attrs = ("k_",)

        def __init__(self, n_bins: int = 5):
            self.n_bins = n_bins

        def _fit(self, x):
            self.k_ = self.n_bins

        @property
        def codebook(self):
            return np.arange(self.k_, dtype=float)

        def encode(self, x, rng=None):
            return np.clip(np.rint(self._as_float(x)), 0, self.k_ - 1).astype(np.int64)

    assert "test_round_to_int" in available_quantizers()
    q = make_quantizer("test_round_to_int").fit()
    np.testing.assert_array_equal(q.decode(q.encode(np.array([0.2, 3.7, 9.0]))), [0, 4, 4])


# -- uniform -----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(low=st.floats(-100, 100), width=st.floats(1e-3, 100), n_bins=st.integers(2, 300),
       u=arrays(np.float64, 50, elements=st.floats(0, 1)))
def test_uniform_round_trip_within_bound_inside_the_range(low, width, n_bins, u):
    high = low + width
    q = make_quantizer("uniform", n_bins=n_bins, low=low, high=high).fit()
    x = low + u * width
    err = np.abs(q.quantize(x).astype(np.float64) - x)
    assert q.error_bound == pytest.approx(width / (2 * n_bins))
    assert np.all(err <= q.error_bound + F32 * max(abs(low), abs(high), 1.0))


@settings(max_examples=40, deadline=None)
@given(x=arrays(np.float64, 30, elements=finite))
def test_uniform_clips_outside_the_range_to_the_edge_cells(x):
    q = make_quantizer("uniform", n_bins=10, low=-1.0, high=1.0).fit()
    tokens = q.encode(x)
    assert np.all(tokens[x <= -1.0] == 0)
    assert np.all(tokens[x >= 1.0] == 9)
    assert np.all((tokens >= 0) & (tokens < 10))


def test_uniform_fits_min_max_or_a_quantile_range():
    x = np.concatenate([np.linspace(0, 1, 1000), [50.0]])
    assert make_quantizer("uniform", n_bins=4).fit(x).range == (0.0, 50.0)
    low, high = make_quantizer("uniform", n_bins=4, quantile=0.01).fit(x).range
    assert 0.0 < low < 0.02 and 0.97 < high < 1.0


@pytest.mark.parametrize("name", ["uniform", "smooth"])
def test_margin_widens_a_fitted_range_about_its_centre_and_survives_save_load(name):
    from qbc.quantizers import Quantizer, serialize_quantizer

    x = np.linspace(-1.0, 3.0, 101)
    q = make_quantizer(name, n_bins=8, margin=0.5).fit(x)
    assert q.range == pytest.approx((-2.0, 4.0))  # half-width 2 widened by 1 on each side
    assert q.encode(np.array([3.9]))[0] == 7 and q.encode(np.array([3.2]))[0] < 7
    assert make_quantizer(name, n_bins=8, margin=0.5, low=0.0, high=1.0).fit(x).range == (0, 1)
    state = serialize_quantizer(q)
    assert state["params"]["margin"] == 0.5
    assert Quantizer.from_state_dict(state).range == q.range
    with pytest.raises(InvalidValueError, match="margin must be >= 0"):
        make_quantizer(name, n_bins=8, margin=-0.1).fit(x)


def test_uniform_on_constant_data_still_works():
    q = make_quantizer("uniform", n_bins=4).fit(np.full(10, 3.0))
    assert np.allclose(q.quantize(np.full(3, 3.0)), 3.0, atol=1e-5)


# -- kmeans ------------------------------------------------------------------------------------
def test_kmeans_beats_uniform_on_a_bimodal_sample():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-5, 0.3, 2000), rng.normal(5, 0.3, 2000)])
    for k in (4, 8):
        mse = {n: np.mean((make_quantizer(n, n_bins=k).fit(x).quantize(x) - x) ** 2)
               for n in ("kmeans", "uniform")}
        assert mse["kmeans"] < 0.5 * mse["uniform"], mse
    assert make_quantizer("kmeans", n_bins=4).fit(x).error_bound is None


def test_kmeans_encodes_to_the_nearest_codeword():
    x = np.random.default_rng(2).normal(size=2000)
    q = make_quantizer("kmeans", n_bins=7).fit(x)
    nearest = np.argmin(np.abs(x[:, None] - q.codebook[None, :]), axis=1)
    np.testing.assert_array_equal(q.encode(x), nearest)


def test_kmeans_with_fewer_distinct_values_than_codewords():
    q = make_quantizer("kmeans", n_bins=8).fit(np.array([0.0, 1.0, 1.0, 2.0]))
    assert q.n_levels == 8
    np.testing.assert_array_equal(q.quantize(np.array([0.0, 1.0, 2.0])), [0.0, 1.0, 2.0])


# -- smooth ------------------------------------------------------------------------------------
@pytest.mark.parametrize("x", [-0.93, -0.31, 0.0, 0.123, 0.77, 1.0])
def test_smooth_is_unbiased(x):
    q = make_quantizer("smooth", n_bins=9, low=-1.0, high=1.0).fit()
    n = 40_000
    draws = q.decode(q.encode(np.full(n, x), rng=np.random.default_rng(3))).astype(np.float64)
    stderr = max(draws.std(ddof=1), 1e-12) / np.sqrt(n)
    assert abs(draws.mean() - x) <= 4 * stderr + 1e-9
    # only the two neighbouring centres ever appear
    assert np.all(np.abs(draws - x) < q.stochastic_error_bound + 1e-6)
    assert len(np.unique(draws)) <= 2


@settings(max_examples=60, deadline=None)
@given(x=st.floats(-2, 2), n_bins=st.integers(2, 40))
def test_smooth_soft_targets_are_two_hot_on_the_neighbours(x, n_bins):
    q = make_quantizer("smooth", n_bins=n_bins, low=-1.0, high=1.0).fit()
    p = q.soft_targets(np.array([x]))[0].astype(np.float64)
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    support = np.flatnonzero(p > 0)
    assert len(support) <= 2 and (len(support) < 2 or support[1] == support[0] + 1)
    xc = np.clip(x, -1.0, 1.0)
    assert p @ q.codebook == pytest.approx(xc, abs=1e-5)  # mean of the target is x
    assert np.all(np.abs(q.codebook[support] - xc) <= q.bin_width + 1e-9)


@settings(max_examples=80, deadline=None)
@given(x=st.floats(-1.5, 1.5), y=st.floats(-1.5, 1.5), n_bins=st.integers(2, 50))
def test_smooth_total_variation_is_bounded_by_distance_over_width(x, y, n_bins):
    q = make_quantizer("smooth", n_bins=n_bins, low=-1.0, high=1.0).fit()
    p = q.soft_targets(np.array([x, y])).astype(np.float64)
    tv = 0.5 * np.abs(p[0] - p[1]).sum()
    assert tv <= abs(x - y) / q.bin_width + 1e-5


def test_smooth_empirical_token_distribution_matches_soft_targets():
    q = make_quantizer("smooth", n_bins=5, low=0.0, high=1.0).fit()
    tokens = q.encode(np.full(20_000, 0.4), rng=np.random.default_rng(4))
    freq = np.bincount(tokens, minlength=5) / len(tokens)
    np.testing.assert_allclose(freq, q.soft_targets(np.array([0.4]))[0], atol=0.015)


def test_smooth_without_rng_rounds_to_nearest():
    q = make_quantizer("smooth", n_bins=11, low=0.0, high=1.0).fit()
    x = np.linspace(0, 1, 1001)
    assert np.all(np.abs(q.quantize(x) - x) <= q.error_bound + 1e-6)
    np.testing.assert_array_equal(q.encode(x), q.encode(x))


# -- sign, lloyd_max ---------------------------------------------------------------------------
def test_sign_quantizer():
    q = make_quantizer("sign").fit()
    np.testing.assert_array_equal(q.quantize(np.array([-2.0, -0.1, 0.0, 3.0])), [-1, -1, 1, 1])
    x = np.array([-2.0, 1.0, 3.0])
    assert make_quantizer("sign", fit_scale=True).fit(x).codebook[1] == pytest.approx(2.0)


@pytest.mark.parametrize("bits,distortion", [(1, 0.36338), (2, 0.11748), (3, 0.03455),
                                             (4, 0.00950)])
def test_lloyd_max_reproduces_gaussian_distortions(bits, distortion):
    q = make_quantizer("lloyd_max", bits=bits).fit()
    # Monte-Carlo check of the designed quantizer on real N(0,1) samples, plus the closed form.
    from qbc.quantizers.gaussian import gaussian_distortion

    assert gaussian_distortion(q.thresholds, q.codebook) == pytest.approx(distortion, rel=0.01)
    z = np.random.default_rng(bits).normal(size=400_000)
    assert np.mean((q.quantize(z) - z) ** 2) == pytest.approx(distortion, rel=0.02)


@pytest.mark.parametrize("bits,step,distortion", [(1, 1.5958, 0.36338), (2, 0.9957, 0.11885),
                                                  (3, 0.5860, 0.03744), (4, 0.3352, 0.01154)])
def test_uniform_gaussian_design_has_the_mse_optimal_step(bits, step, distortion):
    q = make_quantizer("uniform", n_bins=2**bits, design="gaussian").fit()
    assert q.bin_width == pytest.approx(step, rel=0.01)
    z = np.random.default_rng(bits).normal(size=400_000)
    assert np.mean((q.quantize(z) - z) ** 2) == pytest.approx(distortion, rel=0.02)


def test_lloyd_max_fitted_to_data_approaches_the_gaussian_design():
    z = np.random.default_rng(5).normal(size=100_000)
    fitted = make_quantizer("lloyd_max", bits=2, design="data").fit(z)
    designed = make_quantizer("lloyd_max", bits=2).fit()
    np.testing.assert_allclose(fitted.codebook, designed.codebook, atol=0.03)


# -- vq ----------------------------------------------------------------------------------------
def test_vq_gives_one_token_per_vector_and_nearest_codeword():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1000, 3)) * np.array([1.0, 10.0, 0.1])
    q = make_quantizer("vq", n_bins=16).fit(x)
    tokens = q.encode(x)
    assert tokens.shape == (1000,)
    assert q.decode(tokens).shape == (1000, 3)
    z, codes = x / q.scale_, q.codebook / q.scale_
    nearest = np.argmin(((z[:, None, :] - codes[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(tokens, nearest)


# -- fuzzing: bad inputs give documented errors only ---------------------------------------------
@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 40),
                elements=st.floats(allow_nan=True, allow_infinity=True, width=64)),
       name=st.sampled_from(["uniform", "kmeans", "smooth", "lloyd_max", "sign"]))
def test_fuzz_fit_and_encode_raise_only_documented_errors(x, name):
    params = {} if name in ("sign", "lloyd_max") else {"n_bins": 4}
    try:
        q = make_quantizer(name, **params).fit(x)
    except InvalidValueError:
        beyond_f32 = np.all(np.isfinite(x)) and np.abs(x).max() > np.finfo(np.float32).max
        assert not np.all(np.isfinite(x)) or beyond_f32 or name in ("uniform", "smooth")
        return
    with np.errstate(all="ignore"):
        try:
            tokens = q.encode(x)
        except InvalidValueError:
            assert np.isnan(x).any()
            return
    assert np.all((tokens >= 0) & (tokens < q.n_levels))


def test_uniform_is_exported_class():
    assert isinstance(make_quantizer("uniform"), UniformQuantizer)


def test_quantile_params_is_the_one_quantile_rule():
    from qbc.quantizers import QUANTILE_QUANTIZERS, quantile_params

    assert set(QUANTILE_QUANTIZERS) == {"uniform", "smooth"}
    assert quantile_params("uniform", 0.01) == {"quantile": 0.01}
    assert quantile_params("kmeans", 0.0) == {}  # levels not from a range
    with pytest.raises(InvalidValueError, match="'kmeans' would ignore it"):  # --quantile too
        quantile_params("kmeans", 0.01)
    with pytest.raises(InvalidValueError, match="--quantile must be in"):
        quantile_params("smooth", 0.5)
    assert quantile_params("uniform", 0.0, margin=0.5) == {"quantile": 0.0, "margin": 0.5}
    with pytest.raises(InvalidValueError, match="'kmeans' would ignore it"):  # issue 34
        quantile_params("kmeans", 0.0, margin=0.5)
    with pytest.raises(InvalidValueError, match="--range-margin must be >= 0"):
        quantile_params("uniform", 0.0, margin=float("nan"))
    for name in QUANTILE_QUANTIZERS:  # every name the rule passes it to accepts the parameter
        make_quantizer(name, n_bins=4, **quantile_params(name, 0.1)).fit(np.arange(10.0))
