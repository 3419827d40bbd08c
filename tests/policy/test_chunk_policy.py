"""Chunk policies (qbc.policy.chunked) and `qbc train-chunked`: the end-token layout of
variable-length codes, masked log-loss, save/load, a tiny train -> rollout end to end through the
CLI, and bad input as exit code 2 with one line."""

import json

import numpy as np
import pytest
import torch
from chunk_toy import TINY, Demos, _train

from qbc.chunking import make_chunk_tokenizer
from qbc.errors import InvalidValueError
from qbc.policy import load_policy
from qbc.policy.chunked import (
    ChunkPolicy,
    build_chunk_policy,
    chunk_token_layout,
    pad_sequences,
    strip_end,
)
from qbc.training.chunk_data import chunk_rows, parse_params
from qbc.training.chunk_select import chunk_action_error, select_by_action_error
from qbc.training.config import default_steps


def test_chunk_rows_pair_each_chunk_with_the_observation_at_its_first_step():
    d = Demos(episodes=2, steps=5)
    d.observations = np.arange(10, dtype=np.float32)[:, None]
    obs, chunks = chunk_rows(d, k=3)
    assert chunks.shape == (6, 3, 1)
    np.testing.assert_array_equal(obs[:, 0], [0, 1, 2, 5, 6, 7])  # no chunk spans episodes
    np.testing.assert_array_equal(chunks[3, :, 0], d.actions[5:8, 0])


def test_end_token_layout_padding_and_stripping():
    seqs = [np.array([3, 1]), np.array([], dtype=np.int64), np.array([2, 2, 2])]
    tokens, mask = pad_sequences(seqs, n=4, end=9)
    np.testing.assert_array_equal(tokens, [[3, 1, 9, 9], [9, 9, 9, 9], [2, 2, 2, 9]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    back = strip_end(tokens, 9)
    assert [list(s) for s in back] == [[3, 1], [], [2, 2, 2]]
    assert list(strip_end(np.array([[1, 2, 3]]), 9)[0]) == [1, 2, 3]  # no end token: whole row
    with pytest.raises(InvalidValueError):
        pad_sequences([np.arange(4)], n=4, end=9)


def test_masked_loss_ignores_positions_after_the_end_token():
    torch.manual_seed(0)
    chunks = np.random.default_rng(0).normal(size=(200, 4, 1))
    tok = make_chunk_tokenizer("fast", vocab_size=64).fit(chunks)
    n, vocab, end = chunk_token_layout(tok, max_len=6)
    assert (n, vocab, end) == (7, tok.vocab_size + 1, tok.vocab_size)
    module = build_chunk_policy("chunk-ar-transformer", TINY, 1, 1, 4, tok, max_len=6)
    obs = torch.zeros(2, 1, 1)
    tokens = torch.tensor([[1, end, end, end, end, end, end], [2, 3, end, end, end, end, end]])
    mask = (torch.arange(7)[None] <= torch.tensor([[1], [2]])).float()
    with torch.no_grad():
        base = float(module.loss({"obs": obs, "tokens": tokens, "mask": mask}))
        changed = tokens.clone()
        changed[:, -1] = 0  # a target after both rows' end tokens: not counted
        assert float(module.loss({"obs": obs, "tokens": changed, "mask": mask})) == base
        changed[0, 1] = 0  # row 0's end token is a target: counted
        assert float(module.loss({"obs": obs, "tokens": changed, "mask": mask})) != base
        assert module.logits(obs, changed).shape == (2, 7, vocab)


@pytest.mark.slow
@pytest.mark.parametrize("policy, tokenizer", [("chunk-ar-transformer", "per-step"),
                                               ("chunk-ar-transformer", "beast"),
                                               ("chunk-ar-transformer", "fast"),
                                               ("chunk-mlp-l1", "per-step")])
def test_every_kind_trains_saves_and_loads_the_same_chunks(tmp_path, policy, tokenizer):
    params = "vocab_size=64" if tokenizer == "fast" else ""
    # chunk-mlp-l1 has no tokenizer: its tokenizer settings stay at their defaults
    token = ({} if policy == "chunk-mlp-l1" else
             {"chunk_tokenizer": tokenizer, "bins": 16, "chunk_tokenizer_params": params})
    res, cfg = _train(tmp_path, policy=policy, **token)
    loaded = load_policy(cfg.out)
    assert isinstance(loaded, ChunkPolicy) and loaded.chunk_len == 3 and loaded.act_dim == 1
    obs = np.array([[0.5, 0.0], [-0.8, 0.3]], dtype=np.float32)
    a, fa = res["policy"].predict_chunks(obs)
    b, fb = loaded.predict_chunks(obs)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 3, 1) and fa.dtype == bool and np.array_equal(fa, fb)
    np.testing.assert_array_equal(loaded.act(obs), a[:, 0])
    metrics = [json.loads(line) for line in (cfg.out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]


def test_trained_chunk_policy_predicts_the_demonstrated_chunk(tmp_path):
    res, _ = _train(tmp_path, policy="chunk-mlp-l1", steps=400)
    obs = np.array([[0.6, 0.0]], dtype=np.float32)
    chunks, _ = res["policy"].predict_chunks(obs)
    # the chunk at an episode's first step: u_t = 0.6 (t + 1) / 10, t = 0, 1, 2
    np.testing.assert_allclose(chunks[0, :, 0], [0.06, 0.12, 0.18], atol=0.03)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_default_budget_comes_from_the_data_and_resume_continues_exactly(tmp_path):
    """Without --steps the budget is qbc train's data-scaled one; a run stopped at step 20
    and resumed from last/ to step 40 ends with the weights of a run straight to step 40."""
    kw = {"steps": None, "eval_interval": 10, "chunk_tokenizer": "beast", "bins": 16,
          "tensorboard": False}
    res, cfg = _train(tmp_path, name="cut", stop_at=20, **kw)
    rows = res["train_rows"]
    assert res["budget"]["steps"] == default_steps(rows, 32, 30.0) and res["steps"] == 20
    assert res["budget"]["from"] == "--epochs" and res["budget"]["patience"] == 10
    assert json.loads((cfg.out / "last" / "trainer_state.json").read_text())["step"] == 20
    resumed, _ = _train(tmp_path, name="cut", stop_at=40, resume=True, **kw)
    assert resumed["steps"] == 40 and [m["step"] for m in _metrics(cfg.out)] == [10, 20, 30, 40]
    straight, ref = _train(tmp_path, name="straight", stop_at=40, **kw)
    a = load_policy(cfg.out / "last").module.state_dict()
    b = load_policy(ref.out / "last").module.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(InvalidValueError, match="differ from the run in progress"):
        _train(tmp_path, name="cut", stop_at=50, resume=True, **{**kw, "bins": 8})


def test_best_checkpoint_has_the_lowest_decoded_action_error_and_curves_are_logged(tmp_path):
    res, cfg = _train(tmp_path, steps=80, eval_interval=10, chunk_tokenizer="fast",
                      chunk_tokenizer_params="vocab_size=64")
    records = _metrics(cfg.out)
    errors = [r["val_action_rmse"] for r in records]
    assert res["best_step"] == records[int(np.argmin(errors))]["step"]
    assert res["best_val_action_rmse"] == min(errors)
    assert all(r["val_decode_failure_rate"] == 0 for r in records)  # constrained decoding
    val = Demos()._rows(Demos().episode_ids < 2)
    again = chunk_action_error(load_policy(cfg.out / "best"), *chunk_rows(val, 3))
    assert again["val_action_rmse"] == pytest.approx(min(errors), rel=1e-5)
    assert list((cfg.out / "tensorboard").glob("events.*")), "no TensorBoard event file"


def test_selection_rule_and_early_stopping_on_the_action_error(tmp_path):
    best = {"step": 0, "val_action_rmse": None, "val_loss": None}
    best, up = select_by_action_error(best, {"val_action_rmse": 0.5, "val_loss": 3.0}, 10)
    assert up and best["step"] == 10
    best, up = select_by_action_error(best, {"val_action_rmse": 0.5, "val_loss": 1.0}, 20)
    assert not up and best["step"] == 10  # ties keep the earlier step; log-loss does not count
    # a learning rate too small to change any argmax token: no improvement after the first
    # evaluation, so patience 2 stops the run two evaluations later
    res, cfg = _train(tmp_path, steps=200, eval_interval=10, lr=1e-9, patience=2,
                      chunk_tokenizer="per-step", bins=16)
    assert res["budget"]["stopped_early"] and res["steps"] == 30 and res["best_step"] == 10


def test_same_seed_same_weights(tmp_path):
    a, _ = _train(tmp_path, name="a", steps=20)
    b, _ = _train(tmp_path, name="b", steps=20)
    for (ka, va), (_, vb) in zip(a["policy"].module.state_dict().items(),
                                 b["policy"].module.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_parse_params():
    assert parse_params("scale=20, quantizer=kmeans,x=0.5") == {
        "scale": 20, "quantizer": "kmeans", "x": 0.5}
    assert parse_params("") == {}
    with pytest.raises(InvalidValueError):
        parse_params("scale")


def test_decode_mode_mean_is_refused_for_chunk_policies(tmp_path):
    res, _ = _train(tmp_path, steps=5)
    with pytest.raises(InvalidValueError, match="argmax"):
        res["policy"].decode_mode = "mean"


# -- the commands, end to end ---------------------------------------------------------------------
@pytest.fixture
def dataset():
    pytest.importorskip("qbc.agents.experts")
    from qbc.cli import main

    assert main(["collect", "--env", "qbc/LinearStable-v0", "--expert", "lqr", "--episodes", "6",
                 "--dataset", "test/chunks-v0", "--max-episode-steps", "20"]) == 0
    return "test/chunks-v0"


@pytest.mark.slow
def test_train_chunked_then_rollout_every_execution_mode(tmp_path, dataset, capsys):
    from qbc.cli import main

    run = tmp_path / "chunked"
    argv = ["train-chunked", "--dataset", dataset, "--out", str(run), "--chunk-k", "4",
            "--chunk-tokenizer", "beast", "--bins", "16", "--steps", "30", "--batch-size", "32",
            "--eval-interval", "15", "--rollout-episodes", "2", "--execute", "receding:2",
            "--no-progress", "--model.d-model", "16", "--model.n-heads", "2", "--device", "cpu"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "trained chunk-ar-transformer (k = 4)" in text and "executed receding:2" in text
    summary = json.loads((run / "summary.json").read_text())
    r = summary["rollout"]
    assert r["execute"] == "receding:2" and r["chunks"] == 2 * 10 and r["decode_failures"] == 0
    assert r["chunk_floor_regret"] is not None and "chunk floor (the expert's plans" in text
    assert summary["tokenizer"]["n_tokens"] == 8  # beast: min(k, 10) control points x D = 2
    for mode, chunks in (("open-loop", 5), ("receding:1", 20), ("ensemble:0.1", 20)):
        out = tmp_path / mode.replace(":", "-")
        assert main(["rollout", "--policy", str(run), "--out", str(out), "--episodes", "3",
                     "--horizons", "10,20", "--execute", mode]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["execution"]["policy"] == {"execute": mode, "chunk_len": 4,
                                                  "chunks": 3 * chunks, "decode_failures": 0}
        assert "20" in metrics["policies"]["policy"]
        # the chunk floor: the expert's plans through the policy's tokenizer, same mode
        assert metrics["execution"]["quantized_chunk_expert"] == {
            "execute": mode, "chunk_len": 4, "chunks": 3 * chunks, "decode_failures": 0}
        floor = metrics["chunk_floor"]
        assert floor["floor"] == "quantized_chunk_expert"
        h = floor["horizons"]["20"]
        assert h["floor_regret"] == metrics["policies"]["quantized_chunk_expert"]["20"]["regret"]
        assert h["ratio"] == (pytest.approx(h["regret"] / h["floor_regret"])
                              if h["floor_regret"] > 0 else None)  # no ratio to a floor <= 0
        text = capsys.readouterr().out
        assert "quantized_chunk_expert" in text and "learner / chunk floor" in text
    capsys.readouterr()


def _error(argv, capsys):
    from qbc.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_exits_2_with_one_line(tmp_path, dataset, capsys):
    base = ["train-chunked", "--dataset", dataset, "--no-progress", "--steps", "2"]
    assert "--chunk-k must be an integer >= 1" in _error(
        base + ["--out", str(tmp_path / "a"), "--chunk-k", "0"], capsys)
    assert "--chunk-k 50 is longer than the shortest episode" in _error(
        base + ["--out", str(tmp_path / "b"), "--chunk-k", "50"], capsys)
    assert "bad --execute" in _error(
        base + ["--out", str(tmp_path / "c"), "--execute", "receding:zero"], capsys)
    assert "M <= 4" in _error(base + ["--out", str(tmp_path / "d"), "--execute", "receding:5"],
                              capsys)
    assert "unknown chunk tokenizer" in _error(
        base + ["--out", str(tmp_path / "e"), "--chunk-tokenizer", "dct"], capsys)
    assert "--resume and --overwrite exclude each other" in _error(
        base + ["--out", str(tmp_path / "f"), "--resume", "--overwrite"], capsys)
    assert not any((tmp_path / n).exists() for n in "abcdef")  # refused commands wrote nothing
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "notes.txt").write_text("not a run")
    assert "no resumable run" in _error(base + ["--out", str(tmp_path / "g"), "--resume"], capsys)
    roll = ["rollout", "--env", "qbc/LinearStable-v0", "--out", str(tmp_path / "r"),
            "--tokenizer", "x.json"]
    assert "bad --execute" in _error(roll + ["--execute", "ensemble:-1"], capsys)
    assert "--execute needs a chunk --policy" in _error(roll + ["--execute", "open-loop"],
                                                        capsys)
