"""Chunk tokenizers at the Python API and on disk: constructors check their parameters (qbc's
typed errors, not scikit-learn's or numpy's), fixed-length decoders refuse ragged token lists,
damaged files raise CorruptFileError naming the file and the field (or the failed self-check),
and a chunk checkpoint whose tokenizer.json was edited is refused by its recorded hash."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import TINY_CHUNK_TOKENIZERS

from qbc.chunking import ChunkTokenizer, make_chunk_tokenizer
from qbc.errors import CorruptFileError, InvalidValueError, QbcError, UnknownNameError

CHUNKS = np.random.default_rng(0).normal(size=(300, 4, 2))


@pytest.mark.parametrize("name, params", [
    ("rvq", {"quantile": "0.1"}), ("rvq", {"seed": -1}), ("rvq", {"seed": 1.5}),
    ("rvq", {"levels": "2"}), ("rvq", {"quantile": 0.7}), ("rvq", {"codes": True}),
    ("fast", {"quantile": "x"}), ("fast", {"scale": True}), ("fast", {"scale": float("inf")}),
    ("fast", {"vocab_size": 1}), ("fast", {"min_frequency": 0}), ("fast", {"repair": "none"}),
    ("beast", {"bins": 1.5}), ("beast", {"degree": -1}), ("beast", {"n_control_points": "4"}),
    ("per-step", {"per_dim": "yes"}), ("per-step", {"n_bins": 1}),
    ("per-step", {"quantizer": 3}), ("per-step", {"quantizer_params": [1]})])
def test_constructors_check_their_parameters(name, params):
    with pytest.raises(InvalidValueError):
        make_chunk_tokenizer(name, **params)


def test_an_unknown_per_step_quantizer_is_an_unknown_name():
    with pytest.raises(UnknownNameError, match="unifrom"):
        make_chunk_tokenizer("per-step", quantizer="unifrom")


@pytest.mark.parametrize("name", ["beast", "rvq", "per-step"])
def test_fixed_length_decoders_refuse_ragged_token_lists(name):
    params = {"rvq": {"codes": 8, "levels": 2}, "beast": {"n_control_points": 3, "degree": 2},
              "per-step": {}}[name]
    tok = make_chunk_tokenizer(name, **params).fit(CHUNKS)
    tokens = tok.encode(CHUNKS[:2]).tolist()
    tokens[1] = tokens[1][:-1]
    with pytest.raises(InvalidValueError, match="different lengths"):
        tok.decode(tokens)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One fitted file per kind (fast, rvq, beast, per-step)."""
    root = tmp_path_factory.mktemp("chunk_toks")
    made = {kind: make_chunk_tokenizer(kind, **settings)
            for kind, settings in TINY_CHUNK_TOKENIZERS.items()}
    paths = {}
    for name, tok in made.items():
        paths[name] = tok.fit(CHUNKS).save(root / f"{name}.json")
    return paths


def _edited(path, tmp_path, edit):
    state = json.loads(path.read_text())
    edit(state)
    out = tmp_path / path.name
    out.write_text(json.dumps(state))
    return out


@pytest.mark.parametrize("kind, edit, words", [
    ("fast", lambda s: s.update(chunk_len=10 ** 12), ["'chunk_len'"]),
    ("fast", lambda s: s.update(action_dim="2"), ["'action_dim' must be a int"]),
    ("fast", lambda s: s["fitted"].update(bpe_json_="{}"), ["'fitted'"]),
    ("fast", lambda s: s["fitted"].update(n_symbols_=s["fitted"]["n_symbols_"] + 3),
     ["does not decode its own encodings"]),
    ("fast", lambda s: s["fitted"].update(min_symbol_=10 ** 30), ["min_symbol_"]),
    ("fast", lambda s: s["fitted"].update(low_=[float("nan")] * 2), ["'fitted'"]),
    ("fast", lambda s: s.update(params=[]), ["'params' must be a dict"]),
    ("rvq", lambda s: s["params"].update(quantile="0.1"), ["'params'", "quantile"]),
    ("rvq", lambda s: s["params"].update(seed=-1), ["'params'", "seed"]),
    ("rvq", lambda s: s.update(name="nope"), ["'name'", "unknown chunk tokenizer"]),
    ("beast", lambda s: s["fitted"].update(tokenizer_=None), ["'fitted'"]),
    ("per-step", lambda s: s.update(chunk_len=0), ["'chunk_len'"]),
])
def test_damaged_files_are_corrupt_file_errors_naming_file_and_field(saved, tmp_path, kind,
                                                                      edit, words):
    path = _edited(saved[kind], tmp_path, edit)
    with pytest.raises(CorruptFileError) as info:
        ChunkTokenizer.load(path)
    message = str(info.value)
    assert str(path) in message and all(w in message for w in words), message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["fast", "rvq", "beast", "per-step"])
def test_a_valid_file_loads_faithfully(saved, kind):
    tok = ChunkTokenizer.load(saved[kind])
    again = make_chunk_tokenizer(json.loads(saved[kind].read_text()))
    tokens = tok.encode(CHUNKS[:20])
    np.testing.assert_array_equal(tok.decode(tokens), again.decode(tokens))


def test_chunk_checkpoint_refuses_an_edited_tokenizer(tmp_path):
    from chunk_toy import _train

    from qbc.policy import load_policy

    _, cfg = _train(tmp_path, policy="chunk-ar-transformer", chunk_tokenizer="per-step",
                    bins=16, steps=10)
    path = cfg.out / "best" / "tokenizer.json"
    if not path.is_file():
        path = cfg.out / "tokenizer.json"
    state = json.loads(path.read_text())
    quantizers = state["fitted"]["tokenizer_"]["quantizers"]
    quantizers[0]["fitted"]["high_"] += 0.5  # same shapes, other numbers
    path.write_text(json.dumps(state))
    with pytest.raises(QbcError, match="sha256"):
        load_policy(cfg.out)


@pytest.mark.parametrize("prev", [np.full((2, 2), np.nan), np.array([[0.0, np.inf]] * 2),
                                  [["a", "b"]] * 2])
def test_repair_with_a_non_finite_previous_action_is_refused(saved, prev):
    tok = ChunkTokenizer.load(saved["fast"])
    tokens = [np.array([10 ** 6]), np.array([], dtype=np.int64)]  # both fail to decode
    with pytest.raises(InvalidValueError, match="prev_action"):
        tok.decode(tokens, prev_action=prev, repair="hold-last-action")
    chunks = tok.decode(tokens, prev_action=np.ones((2, 2)), repair="hold-last-action")
    np.testing.assert_array_equal(chunks, np.ones((2, 4, 2), np.float32))


@pytest.mark.parametrize("value, words", [("x", "chunk_len must be an integer, got 'x'"),
                                          (2, "chunk_len 2"), (True, "chunk_len must be")])
def test_a_chunk_checkpoints_config_with_another_chunk_length_names_config_json(
        tmp_path, value, words):
    """The chunk length does not change the weights' shapes: an edited config.json loaded, or
    was blamed on tokenizer.json alone."""
    from chunk_toy import _train

    from qbc.policy import load_policy

    _, cfg = _train(tmp_path, policy="chunk-ar-transformer", chunk_tokenizer="per-step",
                    bins=16, steps=2)
    path = cfg.out / "best" / "config.json"
    conf = json.loads(path.read_text())
    conf["model"]["chunk_len"] = value
    path.write_text(json.dumps(conf))
    with pytest.raises(CorruptFileError, match="config.json") as got:
        load_policy(cfg.out)
    assert words in str(got.value)
