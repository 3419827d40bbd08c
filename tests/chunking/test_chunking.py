"""Chunk tokenizers (qbc.chunking): round trips within each tokenizer's stated error, the DCT path,
FAST's repair rules on hand-made malformed sequences, fixed-length codes decoding any sequence,
save/load, and bad input as typed one-line errors."""

import functools
import json

import numpy as np
import pytest
import scipy.fft
from hypothesis import given
from hypothesis import strategies as st

from qbc.chunking import (
    REPAIR_RULES,
    ChunkTokenizer,
    available_chunk_tokenizers,
    make_chunk_tokenizer,
    make_chunks,
)
from qbc.chunking.fast import _BASE
from qbc.errors import (
    CorruptFileError,
    InvalidValueError,
    NotFittedError,
    OutputExistsError,
    UnknownNameError,
)

K, D = 16, 2
SMALL = {"fast": {}, "beast": {"n_control_points": 8, "degree": 3, "bins": 128},
         "rvq": {"levels": 3, "codes": 16}, "per-step": {"n_bins": 64}}


def smooth_chunks(n: int = 400, k: int = K, seed: int = 0) -> np.ndarray:
    """(n, k, D) sums of two sinusoids per dimension with random phases and amplitudes."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, k)[None, :, None]
    amp, phase = rng.uniform(0.5, 2.0, (n, 2, 1, D)), rng.uniform(0, 2 * np.pi, (n, 2, 1, D))
    return (amp[:, 0] * np.sin(2 * np.pi * 0.5 * t + phase[:, 0])
            + 0.3 * amp[:, 1] * np.cos(2 * np.pi * 1.5 * t + phase[:, 1]) + [0.0, 3.0])


@functools.cache
def fitted(name: str):
    return make_chunk_tokenizer(name, **SMALL[name]).fit(smooth_chunks())


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


# -- make_chunks ---------------------------------------------------------------------------------
def test_make_chunks_windows_and_stride():
    ep0 = np.arange(10, dtype=float).reshape(5, 2)
    ep1 = 100 + np.arange(8, dtype=float).reshape(4, 2)
    chunks = make_chunks([ep0, ep1], k=3, stride=2)
    assert chunks.shape == (2 + 1, 3, 2) and chunks.dtype == np.float32
    np.testing.assert_array_equal(chunks[0], ep0[0:3])
    np.testing.assert_array_equal(chunks[1], ep0[2:5])
    np.testing.assert_array_equal(chunks[2], ep1[0:3])  # no chunk spans two episodes
    assert make_chunks([ep0], k=5).shape == (1, 5, 2)
    assert make_chunks([np.arange(4.0)], k=2).shape == (3, 2, 1)


def test_make_chunks_refuses_short_episodes_and_bad_k():
    with pytest.raises(InvalidValueError) as err:
        make_chunks([np.zeros((20, 2)), np.zeros((10, 2))], k=16)
    assert "episode 1 has 10 actions" in one_line(err) and "k <= 10" in str(err.value)
    for bad in (0, -3, 2.0, True):
        with pytest.raises(InvalidValueError):
            make_chunks([np.zeros((20, 2))], k=bad)
    with pytest.raises(InvalidValueError):
        make_chunks([np.zeros((20, 2))], k=4, stride=0)
    with pytest.raises(InvalidValueError):
        make_chunks([np.zeros((20, 2)), np.zeros((20, 3))], k=4)
    with pytest.raises(InvalidValueError):
        make_chunks([], k=4)


# -- registry and reports ------------------------------------------------------------------------
def test_registry_names_and_resolution():
    assert available_chunk_tokenizers() == ["beast", "fast", "per-step", "rvq"]
    tok = make_chunk_tokenizer({"name": "beast", "bins": 32})
    assert tok.bins == 32 and make_chunk_tokenizer(tok) is tok
    with pytest.raises(UnknownNameError) as err:
        make_chunk_tokenizer("fats")
    assert "fast" in one_line(err)
    with pytest.raises(InvalidValueError):
        make_chunk_tokenizer("rvq", nonsense=1)


@pytest.mark.parametrize("name", ["fast", "beast", "rvq", "per-step"])
def test_report_fields(name):
    chunks = smooth_chunks()
    rep = fitted(name).report(chunks)
    assert rep["per_step_tokens"] == K * D and rep["n_chunks"] == len(chunks)
    assert rep["compression_ratio"] == pytest.approx(K * D / rep["mean_tokens_per_chunk"])
    assert len(rep["rmse_per_dim"]) == D
    assert rep["rmse"] <= rep["max_abs_error"] and rep["decode_failures"] == 0
    assert rep["decode_failure_rate"] == (0.0 if name == "fast" else None)
    json.dumps(rep, allow_nan=False)


def test_compression_on_smooth_chunks():
    assert fitted("per-step").report(smooth_chunks())["compression_ratio"] == 1.0
    assert fitted("beast").report(smooth_chunks())["compression_ratio"] == K / 8
    assert fitted("rvq").report(smooth_chunks())["mean_tokens_per_chunk"] == 3
    # smooth chunks have few non-zero DCT coefficients: BPE merges the zero runs
    assert fitted("fast").report(smooth_chunks())["compression_ratio"] > 2.0


# -- round trips within the stated error ---------------------------------------------------------
def test_per_step_round_trip_within_bin_bound():
    tok, chunks = fitted("per-step"), smooth_chunks()
    err = np.abs(tok.decode(tok.encode(chunks)) - chunks).max(axis=(0, 1))
    bound = [tok.tokenizer_._quantizer_for(d).error_bound for d in range(D)]
    assert np.all(err <= np.array(bound) * (1 + 1e-6))


def test_beast_round_trip_within_half_bin_of_the_spline():
    tok, chunks = fitted("beast"), smooth_chunks()
    recon = tok.decode(tok.encode(chunks)).astype(np.float64)
    spline = tok.spline(tok.control_points(chunks))
    excess = np.abs(recon - spline).max(axis=(0, 1)) - tok.quantization_error_bound
    assert np.all(excess <= 1e-5)
    assert np.sqrt(np.mean((recon - chunks) ** 2)) < 0.02 * chunks.std()  # smooth: fits well


def test_fast_round_trip_within_error_bound():
    tok, chunks = fitted("fast"), smooth_chunks()
    recon, failed = tok.decode_with_failures(tok.encode(chunks))
    recon = recon.astype(np.float64)
    assert np.all(np.abs(recon - chunks).max(axis=(0, 1)) <= tok.error_bound + 1e-5)
    z_err = (recon - chunks) / tok._normalizer().half_range
    assert np.sqrt(np.mean(z_err**2, axis=(1, 2))).max() <= 0.5 / tok.scale + 1e-6
    assert not failed.any()


def test_fast_error_bound_is_tight():
    """The bound is (0.5 / scale) x the largest row sum of |inverse DCT|: a chunk whose scaled
    coefficients sit just past half-integers, with the signs of that row, reaches 98% of it (the
    column-sum bound, 7% larger at k = 16, would not be reached), and random chunks stay below."""
    tok = fitted("fast")
    inverse = scipy.fft.idct(np.eye(K), type=2, axis=0, norm="ortho")  # [time, frequency]
    t_worst = np.abs(inverse).sum(axis=1).argmax()
    signs = np.sign(inverse[t_worst])  # (K,) rounding errors of these signs add up at t_worst
    scaled = np.where(signs > 0, 0.51, 0.49)  # round up (+0.49) where the row is positive
    coeffs = np.repeat((scaled / tok.scale)[None, :, None], D, axis=2)  # (1, K, D)
    chunk = tok._normalizer().inverse(scipy.fft.idct(coeffs, type=2, axis=1, norm="ortho"))
    recon, failed = tok.decode_with_failures(tok.encode(chunk))
    err = np.abs(recon.astype(np.float64) - chunk).max(axis=(0, 1))
    assert not failed.any()
    assert np.all(err >= 0.97 * tok.error_bound) and np.all(err <= tok.error_bound + 1e-5)
    rng = np.random.default_rng(0)
    noisy = smooth_chunks(200, seed=1) + rng.normal(0, 0.05, (200, K, D))
    recon = tok.decode(tok.encode(noisy)).astype(np.float64)
    assert np.all(np.abs(recon - noisy).max(axis=(0, 1)) <= tok.error_bound + 1e-5)


def test_fast_finer_scale_is_more_accurate_and_longer():
    chunks = smooth_chunks()
    coarse, fine = (make_chunk_tokenizer("fast", scale=s).fit(chunks).report(chunks)
                    for s in (5.0, 50.0))
    assert fine["rmse"] < coarse["rmse"]
    assert fine["mean_tokens_per_chunk"] > coarse["mean_tokens_per_chunk"]


def test_rvq_levels_reduce_error():
    chunks = smooth_chunks()
    errs = [make_chunk_tokenizer("rvq", levels=n, codes=16).fit(chunks).report(chunks)["rmse"]
            for n in (1, 3)]
    # 16 codes x 3 levels for an 8-parameter family of chunks: coarse, but each level helps
    assert errs[1] < 0.6 * errs[0] and errs[1] < 0.25 * chunks.std()


# -- the DCT path --------------------------------------------------------------------------------
def test_fast_dct_path_is_scipy_dct_and_its_exact_inverse():
    tok, chunks = fitted("fast"), smooth_chunks()
    z = tok._normalizer().transform(chunks)
    coeffs = tok.coefficients(chunks)
    np.testing.assert_array_equal(coeffs, scipy.fft.dct(z, axis=1, norm="ortho"))
    np.testing.assert_allclose(tok.chunks_from_coefficients(coeffs), chunks, atol=1e-12)
    # frequency-major: the first D symbols are the D dimensions' lowest-frequency coefficients
    ints = tok._rounded(coeffs)
    np.testing.assert_array_equal(ints[:, :D], np.rint(coeffs[:, 0, :] * tok.scale))
    np.testing.assert_array_equal(ints[:, D:2 * D], np.rint(coeffs[:, 1, :] * tok.scale))


def test_fast_decodes_exactly_when_rounding_is_exact():
    # chunks whose scaled coefficients are integers: encode -> decode loses nothing
    tok = fitted("fast")
    rng = np.random.default_rng(1)
    ints = rng.integers(-3, 4, (20, K, D)).astype(float)
    ints[:, 0, :] = rng.integers(-5, 6, (20, D))
    chunks = tok._normalizer().inverse(scipy.fft.idct(ints / tok.scale, axis=1, norm="ortho"))
    recon, failed = tok.decode_with_failures(tok.encode(chunks))
    assert not failed.any()
    np.testing.assert_allclose(recon, chunks, atol=1e-5)


# -- FAST decode failures and repair rules -------------------------------------------------------
def symbol_ids(tok, ints) -> list[int]:
    """Hand-made token sequence: one single-symbol BPE token per integer coefficient."""
    bpe = tok._bpe()
    return [bpe.token_to_id(chr(_BASE + int(v) - tok.min_symbol_)) for v in ints]


def expected_from_ints(tok, ints) -> np.ndarray:
    """The chunk a full list of k * D frequency-major ints decodes to."""
    coeffs = np.asarray(ints, dtype=float).reshape(1, K, D) / tok.scale
    return tok._normalizer().inverse(scipy.fft.idct(coeffs, axis=1, norm="ortho"))[0]


def test_fast_pad_zeros_high_frequency_on_short_and_long_sequences():
    tok = fitted("fast")
    ints = tok._rounded(tok.coefficients(smooth_chunks()[:1]))[0]
    short, long_ = ints[:K * D - 5], np.r_[ints, ints[:3]]
    bad_id = symbol_ids(tok, ints[:4]) + [tok.vocab_size + 7] + symbol_ids(tok, ints[4:])
    seqs = [symbol_ids(tok, ints), symbol_ids(tok, short), symbol_ids(tok, long_), bad_id]
    recon, failed = tok.decode_with_failures(seqs, repair="pad-zeros-high-frequency")
    assert failed.tolist() == [False, True, True, True]
    np.testing.assert_allclose(recon[0], expected_from_ints(tok, ints), atol=1e-5)
    np.testing.assert_allclose(recon[1], expected_from_ints(tok, np.r_[short, np.zeros(5)]),
                               atol=1e-5)
    np.testing.assert_allclose(recon[2], expected_from_ints(tok, ints), atol=1e-5)
    np.testing.assert_allclose(recon[3], expected_from_ints(
        tok, np.r_[ints[:4], np.zeros(K * D - 4)]), atol=1e-5)


def test_fast_hold_last_action_and_zero_chunk():
    tok = fitted("fast")
    good = tok.encode(smooth_chunks()[:1])[0]
    seqs = [good, good[:-1], [], [-1, 2, 3]]
    prev = np.arange(8, dtype=float).reshape(4, 2)
    normal = tok.decode_with_failures([good])[0][0]
    held, failed = tok.decode_with_failures(seqs, prev_action=prev, repair="hold-last-action")
    assert failed.tolist() == [False, True, True, True]
    np.testing.assert_array_equal(held[0], normal)
    for i in (1, 2, 3):
        np.testing.assert_array_equal(held[i], np.broadcast_to(prev[i], (K, D)))
    zero, _ = tok.decode_with_failures(seqs, repair="zero-chunk")
    np.testing.assert_array_equal(zero[0], normal)
    assert np.all(zero[1:] == 0)
    no_prev, _ = tok.decode_with_failures(seqs, repair="hold-last-action")
    assert np.all(no_prev[1:] == 0)  # no previous action: the zero chunk


def test_fast_decode_counts_failures_and_never_raises_on_garbage():
    tok = make_chunk_tokenizer("fast", repair="zero-chunk").fit(smooth_chunks())
    good = tok.encode(smooth_chunks()[:2])
    garbage = [good[0], [1.5, 2.5], [[1, 2]], "abc", None, [10**12], good[1][:1]]
    chunks = tok.decode(garbage)
    assert chunks.shape == (7, K, D) and np.isfinite(chunks).all()
    assert tok.decode_failures == 6
    tok.decode(good)
    assert tok.decode_failures == 6
    with pytest.raises(InvalidValueError):
        tok.decode_with_failures([good[0]], repair="nearest")
    with pytest.raises(InvalidValueError):
        tok.decode_with_failures([good[0]], prev_action=np.zeros((2, D)))
    assert set(REPAIR_RULES) == {"pad-zeros-high-frequency", "hold-last-action", "zero-chunk"}


@given(st.lists(st.lists(st.integers(-5, 5000), max_size=3 * K * D), min_size=1, max_size=6),
       st.sampled_from(REPAIR_RULES))
def test_fast_any_sequence_decodes_to_a_finite_chunk(seqs, repair):
    tok = fitted("fast")
    prev = np.ones((len(seqs), D))
    chunks, failed = tok.decode_with_failures(seqs, prev_action=prev, repair=repair)
    assert chunks.shape == (len(seqs), K, D) and np.isfinite(chunks).all()
    assert failed.dtype == bool and failed.shape == (len(seqs),)


@functools.cache
def fitted_byte_level():
    return make_chunk_tokenizer("fast", bpe="byte").fit(smooth_chunks())


def test_fast_byte_level_bpe_round_trips_and_a_shortened_sequence_fails():
    """The reference's byte-level BPE: same rounding (so the same error bound), a 1024-token
    vocabulary over 256 byte values, and a sequence one token short fails."""
    tok, chunks = fitted_byte_level(), smooth_chunks()
    assert tok.bpe == "byte" and tok.vocab_size <= 1024
    recon, failed = tok.decode_with_failures(tok.encode(chunks))
    assert not failed.any()
    assert np.all(np.abs(recon - chunks).max(axis=(0, 1)) <= tok.error_bound + 1e-5)
    char = fitted("fast")
    assert np.array_equal(recon, char.decode(char.encode(chunks)))  # only the BPE differs
    cut = [t[:-1] for t in tok.encode(chunks[:20]) if len(t) > 1]
    assert tok.decode_with_failures(cut)[1].all()
    assert ChunkTokenizer.from_state_dict(tok.state_dict()).bpe == "byte"


@given(st.lists(st.lists(st.integers(-5, 2000), max_size=3 * K * D), min_size=1, max_size=6))
def test_fast_byte_level_any_sequence_decodes_to_a_finite_chunk(seqs):
    chunks, failed = fitted_byte_level().decode_with_failures(seqs)
    assert chunks.shape == (len(seqs), K, D) and np.isfinite(chunks).all()
    assert failed.shape == (len(seqs),)


def test_fast_bpe_level_is_checked():
    with pytest.raises(InvalidValueError, match="bpe must be one of char, byte"):
        make_chunk_tokenizer("fast", bpe="word").fit(smooth_chunks())
    with pytest.raises(InvalidValueError, match="vocab_size >= 256"):
        make_chunk_tokenizer("fast", bpe="byte", vocab_size=100).fit(smooth_chunks())


# -- fixed-length codes: any sequence of the right length decodes --------------------------------
@pytest.mark.parametrize("name", ["beast", "rvq", "per-step"])
@given(data=st.data())
def test_fixed_length_codes_decode_any_sequence(name, data):
    tok = fitted(name)
    n = data.draw(st.integers(1, 5))
    tokens = np.array(data.draw(st.lists(
        st.lists(st.integers(0, tok.vocab_size - 1), min_size=tok.n_tokens,
                 max_size=tok.n_tokens), min_size=n, max_size=n)), dtype=np.int64)
    chunks, failed = tok.decode_with_failures(tokens)
    assert chunks.shape == (n, K, D) and np.isfinite(chunks).all() and not failed.any()


@pytest.mark.parametrize("name", ["beast", "rvq"])
def test_fixed_length_codes_refuse_wrong_shapes(name):
    tok = fitted(name)
    with pytest.raises(InvalidValueError):
        tok.decode(np.zeros((2, tok.n_tokens + 1), dtype=np.int64))
    with pytest.raises(InvalidValueError):
        tok.decode(np.full((2, tok.n_tokens), tok.vocab_size, dtype=np.int64))


# -- save / load ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fast", "beast", "rvq", "per-step"])
def test_save_load_gives_identical_encodings(name, tmp_path):
    tok, chunks = fitted(name), smooth_chunks(50, seed=3)
    path = tok.save(tmp_path / "tok.json")
    again = ChunkTokenizer.load(path)
    assert type(again) is type(tok) and again.get_params() == tok.get_params()
    a, b = tok.encode(chunks), again.encode(chunks)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    np.testing.assert_array_equal(tok.decode(a), again.decode(b))
    assert make_chunk_tokenizer(json.loads(path.read_text())).encode(chunks[:1]) is not None
    with pytest.raises(OutputExistsError):
        tok.save(path, overwrite=False)


def test_load_refuses_damaged_files(tmp_path):
    state = fitted("fast").state_dict()
    cases = {"format": {**state, "format": "other"}, "version": {**state, "version": 99},
             "missing": {k: v for k, v in state.items() if k != "fitted"},
             "bpe": {**state, "fitted": {**state["fitted"], "bpe_json_": "{not json"}},
             "bounds": {**state, "fitted": {**state["fitted"], "low_": [0.0]}}}
    for case, bad in cases.items():
        path = tmp_path / f"{case}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(CorruptFileError) as err:
            ChunkTokenizer.load(path)
        one_line(err)
    rvq = fitted("rvq").state_dict()
    rvq["fitted"]["levels_"] = rvq["fitted"]["levels_"][:1]
    with pytest.raises(CorruptFileError):
        ChunkTokenizer.from_state_dict(rvq)


@pytest.mark.parametrize("name", ["fast", "rvq"])
def test_same_data_and_seed_give_the_same_tokens(name):
    chunks = smooth_chunks(200, seed=5)
    a, b = (make_chunk_tokenizer(name, **SMALL[name]).fit(chunks) for _ in range(2))
    assert a.state_dict() == b.state_dict()


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fast", "beast", "rvq", "per-step"])
def test_bad_chunks_raise_one_line(name):
    tok = make_chunk_tokenizer(name, **SMALL[name])
    with pytest.raises(NotFittedError):
        tok.encode(smooth_chunks(3))
    for bad in (np.zeros((10, K)), np.zeros((10, K, D, 1)), np.zeros((10, 0, D))):
        with pytest.raises(InvalidValueError) as err:
            tok.fit(bad)
        assert "(N, k, D)" in one_line(err) or "k >= 1" in str(err.value)
    nan = smooth_chunks(20)
    nan[3, 4, 1] = np.nan
    with pytest.raises(InvalidValueError):
        tok.fit(nan)
    with pytest.raises(InvalidValueError) as err:
        fitted(name).encode(smooth_chunks(5, k=K + 1))
    assert "fitted on" in one_line(err)


def test_fast_vocab_smaller_than_symbol_range_names_the_minimum():
    chunks = smooth_chunks()
    n_symbols = make_chunk_tokenizer("fast", scale=50.0, vocab_size=4096).fit(chunks).n_symbols_
    with pytest.raises(InvalidValueError) as err:
        make_chunk_tokenizer("fast", scale=50.0, vocab_size=n_symbols - 1).fit(chunks)
    assert f"vocab_size >= {n_symbols}" in one_line(err)
    make_chunk_tokenizer("fast", scale=50.0, vocab_size=n_symbols).fit(chunks)


@pytest.mark.parametrize("name, params, needle", [
    ("fast", {"scale": 0}, "scale"), ("fast", {"vocab_size": 1}, "vocab_size"),
    ("fast", {"repair": "guess"}, "repair"), ("beast", {"n_control_points": 0}, "n_control_points"),
    ("beast", {"degree": 8, "n_control_points": 8}, "degree"),
    ("beast", {"n_control_points": K + 1, "degree": 3}, f"n_control_points <= {K}"),
    ("rvq", {"levels": 0}, "levels"), ("rvq", {"codes": 1}, "codes"),
])
def test_bad_parameters_raise_one_line(name, params, needle):
    with pytest.raises(InvalidValueError) as err:
        make_chunk_tokenizer(name, **params).fit(smooth_chunks(50))
    assert needle in one_line(err)


# -- the comparison ------------------------------------------------------------------------------
def test_compare_rows_on_sines(capsys):
    from qbc.experiments.chunk_tokenizers import ChunkCompareConfig, run_compare

    specs = [{"name": "per-step", "n_bins": 256}, {"name": "fast", "scale": 10.0}]
    rows = run_compare(ChunkCompareConfig(source="sines", n_episodes=3, fit_chunks=500,
                                          specs=specs), log=print)
    assert [r["tokenizer"].split("(")[0] for r in rows] == ["per-step", "fast"]
    assert rows[0]["mean_tokens_per_chunk"] == K * D and rows[0]["n_fit_chunks"] == 500
    assert rows[1]["mean_tokens_per_chunk"] < K * D and rows[1]["decode_failure_rate"] == 0.0
    assert "held-out" in capsys.readouterr().out
    with pytest.raises(InvalidValueError):
        run_compare(ChunkCompareConfig(source="csv", specs=specs))


def test_fast_default_vocab_grows_to_heavy_tailed_symbols():
    """Without vocab_size, a symbol range wider than 1024 (actions far beyond the normalisation
    quantiles) gets a vocabulary that holds it; narrow data keeps FAST's 1024."""
    rng = np.random.default_rng(0)
    chunks = 0.05 * rng.standard_normal((2000, 8, 1))
    chunks[::97] *= 400.0  # rare saturations, far outside the 1st-99th percentile range
    tok = make_chunk_tokenizer("fast").fit(chunks)
    assert tok.n_symbols_ > 1024 and tok.vocab_size >= tok.n_symbols_
    decoded = tok.decode(tok.encode(chunks[:50]))
    assert np.all(np.abs(decoded - chunks[:50]) <= tok.error_bound + 1e-6)
    with pytest.raises(InvalidValueError, match="vocab_size 1024 is smaller"):
        make_chunk_tokenizer("fast", vocab_size=1024).fit(chunks)
    narrow = make_chunk_tokenizer("fast").fit(0.05 * rng.standard_normal((2000, 8, 1)))
    assert narrow.n_symbols_ <= 1024 and narrow.get_params()["vocab_size"] is None
