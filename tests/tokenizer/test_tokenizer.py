"""ActionTokenizer: layouts, exact JSON round trips, reports, and the tokenize command."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qbc.cli import main
from qbc.errors import CorruptFileError, InvalidValueError, NotFittedError
from qbc.quantizers import available_quantizers
from qbc.tokenizer import ActionTokenizer


@pytest.fixture
def actions():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.normal(size=2000), rng.uniform(-3, 3, 2000),
                            0.1 * rng.normal(size=2000)]).astype(np.float32)


def test_fit_on_the_class_or_on_an_instance(actions):
    a = ActionTokenizer.fit(actions, quantizer="uniform", n_bins=16)
    b = ActionTokenizer(quantizer="uniform", n_bins=16).fit(actions)
    assert a.state_dict() == b.state_dict()
    assert a.encode(actions).shape == (2000, 3)


@pytest.mark.parametrize("name", sorted(set(available_quantizers()) - {"test_round_to_int"}))
@pytest.mark.parametrize("per_dim", [True, False])
def test_every_quantizer_round_trips_through_json_exactly(tmp_path, actions, name, per_dim):
    kwargs = {} if name == "sign" else {"n_bins": 8}  # lloyd_max too: 64 levels take seconds
    tok = ActionTokenizer.fit(actions, quantizer=name, per_dim=per_dim, **kwargs)
    path = tok.save(tmp_path / "tok.json")
    back = ActionTokenizer.load(path)
    assert back.state_dict() == tok.state_dict()
    np.testing.assert_array_equal(back.codebooks(), tok.codebooks())
    tokens = tok.encode(actions)
    np.testing.assert_array_equal(back.encode(actions), tokens)
    np.testing.assert_array_equal(back.decode(tokens), tok.decode(tokens))
    assert tokens.shape == (len(actions), tok.n_tokens)
    assert tokens.min() >= 0 and tokens.max() < tok.vocab_size
    assert tok.decode(tokens).shape == actions.shape


def test_decode_table_matches_each_quantizer_and_follows_a_refit(actions):
    tok = ActionTokenizer.fit(actions, quantizer="kmeans", n_bins=8)
    tokens = tok.encode(actions)
    per_dim = np.stack([q.decode(tokens[:, d]) for d, q in enumerate(tok.quantizers_)], axis=1)
    np.testing.assert_array_equal(tok.decode(tokens), per_dim)
    tok.fit(actions * 3.0)  # a refit must not decode with the old codebooks
    per_dim = np.stack([q.decode(tokens[:, d]) for d, q in enumerate(tok.quantizers_)], axis=1)
    np.testing.assert_array_equal(tok.decode(tokens), per_dim)
    for bad in (tokens.astype(float), tokens + 8, tokens - 8):
        with pytest.raises(InvalidValueError):
            tok.decode(bad)


def test_vq_is_one_token_per_action(actions):
    tok = ActionTokenizer.fit(actions, quantizer="vq", n_bins=32)
    assert tok.n_tokens == 1 and tok.is_joint
    assert tok.encode(actions).shape == (2000, 1)
    assert tok.bits_per_action == pytest.approx(5.0)


def test_report_numbers_are_right(actions):
    tok = ActionTokenizer.fit(actions, quantizer="uniform", n_bins=16)
    probe = actions.copy()
    probe[:100, 0] = 50.0  # out of range: clipped
    rep = tok.report(probe)
    json.dumps(rep)  # JSON-safe
    assert rep["bits_per_action"] == pytest.approx(3 * 4.0)
    d0, d1 = rep["per_dim"][0], rep["per_dim"][1]
    assert d0["clipped_fraction"] == pytest.approx(100 / 2000)
    assert d1["clipped_fraction"] == 0.0
    assert d1["max_abs_error"] <= d1["error_bound"] + 1e-5
    assert d0["max_abs_error"] > d0["error_bound"]  # the clipped values
    err = np.abs(tok.decode(tok.encode(probe)) - probe)
    assert d1["mean_abs_error"] == pytest.approx(err[:, 1].mean(), rel=1e-6)
    # uniform data over 16 equal bins: usage entropy close to 4 bits
    assert 3.9 < d1["usage_entropy_bits"] <= 4.0


def test_learned_quantizers_report_no_worst_case_bound(actions):
    rep = ActionTokenizer.fit(actions, quantizer="kmeans", n_bins=8).report(actions)
    assert all(r["error_bound"] is None for r in rep["per_dim"])


def test_smooth_tokenizer_soft_targets_and_expected_action(actions):
    tok = ActionTokenizer.fit(actions, quantizer="smooth", n_bins=12)
    assert tok.stochastic
    soft = tok.soft_targets(actions)
    assert soft.shape == (2000, 3, 12)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tok.expected_action(soft), actions, atol=1e-4)
    with pytest.raises(InvalidValueError, match="stochastic"):
        ActionTokenizer.fit(actions, quantizer="uniform").soft_targets(actions)


def test_errors_are_clear(actions, tmp_path):
    with pytest.raises(NotFittedError):
        ActionTokenizer().encode(actions)
    tok = ActionTokenizer.fit(actions, n_bins=8)
    with pytest.raises(InvalidValueError, match="3"):
        tok.encode(actions[:, :2])
    bad = actions.copy()
    bad[5, 1] = np.nan
    with pytest.raises(InvalidValueError, match="non-finite"):
        tok.encode(bad)
    with pytest.raises(InvalidValueError, match="shape"):
        tok.decode(np.zeros((4, 2), dtype=np.int64))
    path = tok.save(tmp_path / "t.json")
    path.write_text(path.read_text()[:50])  # truncated
    with pytest.raises(CorruptFileError, match="truncated"):
        ActionTokenizer.load(path)
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(CorruptFileError, match="not a qbc tokenizer"):
        ActionTokenizer.load(tmp_path / "other.json")


@settings(max_examples=40, deadline=None)
@given(a=arrays(np.float32, st.tuples(st.integers(1, 30), st.integers(1, 3)),
                elements=st.floats(width=32, allow_nan=True, allow_infinity=True)),
       name=st.sampled_from(["uniform", "smooth", "kmeans"]))
def test_fuzz_tokenizer_inputs_give_tokens_or_documented_errors(a, name):
    with np.errstate(all="ignore"):
        try:
            tok = ActionTokenizer.fit(a, quantizer=name, n_bins=4)
        except InvalidValueError:
            assert not np.all(np.isfinite(a))
            return
        tokens = tok.encode(a)
    assert tokens.shape == a.shape
    assert np.all((tokens >= 0) & (tokens < 4))


def test_tokenize_command(tmp_path, actions, capsys):
    np.save(tmp_path / "a.npy", actions)
    out = tmp_path / "tok.json"
    assert main(["tokenize", "--actions", str(tmp_path / "a.npy"), "--out", str(out),
                 "--quantizer", "kmeans", "--bins", "8"]) == 0
    assert "kmeans" in capsys.readouterr().out
    assert ActionTokenizer.load(out).vocab_size == 8
    # existing output refused, exit code 2 and one line
    assert main(["tokenize", "--actions", str(tmp_path / "a.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert main(["tokenize", "--actions", str(tmp_path / "a.npy"), "--out", str(out),
                 "--quantizer", "unifrom", "--overwrite"]) == 2
    assert "Did you mean 'uniform'" in capsys.readouterr().err


def test_qbc_help_lists_only_existing_commands(capsys):
    from qbc.cli import COMMANDS, _load

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in COMMANDS:
        assert name in text
        _load(name)  # every listed command imports
    assert main(["no-such-command"]) == 2
