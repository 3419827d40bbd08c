"""The ordered head of chunk policies: per-step chunk tokens of a per-dimension quantizer are
trained with the ordered output head on two-hot targets (as ``qbc train`` trains per-step
tokens); other chunk tokens get the plain head, recorded as such, and refuse its settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from chunk_toy import TINY, Demos

from qbc.policy import ModelConfig
from qbc.policy.chunked import build_chunk_policy
from qbc.policy.registry import model_for
from qbc.training.chunk_data import prepare_chunk_data
from qbc.training.chunk_head import with_used_head_settings
from qbc.training.chunked import ChunkTrainConfig


def _cfg(**kw):
    return ChunkTrainConfig(dataset="toy", chunk_k=3, bins=8, device="cpu", progress=False,
                            **kw)


def test_per_step_chunk_targets_are_two_hot_around_each_value():
    tok, _, _, train_d, _ = prepare_chunk_data(_cfg(), Demos(), torch.device("cpu"))
    batch = train_d.batch(torch.arange(len(train_d)))
    soft = batch["soft"].numpy()  # (N, k * D, V)
    assert soft.shape == (len(train_d), 3, 8)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=1e-6)
    assert ((soft > 0).sum(-1) <= 2).all()
    # argmax is the chunk's token (nearest codeword); the mean codeword is the value itself
    np.testing.assert_array_equal(soft.argmax(-1), batch["tokens"].numpy())
    code = tok.codebooks()  # (k * D, V)
    chunks = train_d.raw[1].reshape(len(train_d), -1)
    expected = np.clip(chunks, code.min(1), code.max(1))
    np.testing.assert_allclose((soft * code[None]).sum(-1), expected, atol=1e-5)


def test_the_ordered_head_reads_each_positions_codewords():
    tok, *_ = prepare_chunk_data(_cfg(), Demos(), torch.device("cpu"))
    module = build_chunk_policy("chunk-ar-transformer", TINY, 2, 1, 3, tok)
    assert module.cfg.ordered_head and module.cfg.loc_hidden == TINY.hidden
    centers = module.bin_centers.numpy()  # (k * D, V), each position's codewords in [-1, 1]
    assert centers.shape == (3, 8) and np.allclose(centers, centers[:1])
    assert centers.min() == -1 and centers.max() == 1 and (np.diff(centers, axis=1) > 0).all()


def test_a_plain_head_trains_on_one_hot_tokens():
    plain = ModelConfig(head="plain")
    _, _, _, train_d, _ = prepare_chunk_data(_cfg(model=plain), Demos(), torch.device("cpu"))
    assert "soft" not in train_d.batch(torch.arange(4))


@pytest.mark.parametrize("tokenizer, params", [("fast", "vocab_size=64"), ("beast", ""),
                                               ("per-step", "quantizer=vq")])
def test_tokens_without_ordered_bins_get_the_plain_head_recorded(tmp_path, tokenizer, params):
    from qbc.training.chunked import train_chunked

    cfg = with_used_head_settings(_cfg(
        out=tmp_path / "run", chunk_tokenizer=tokenizer, chunk_tokenizer_params=params,
        model=model_for("chunk-ar-transformer", TINY), steps=2, eval_interval=1, batch_size=8,
        rollout_episodes=0))
    assert cfg.model.hidden == ModelConfig.hidden  # reset: this run has no location MLP
    res = train_chunked(cfg, Demos())
    assert not res["policy"].module.cfg.ordered_head
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert recorded["model"]["head"] == "plain"


@pytest.mark.parametrize("flags, named", [(["--model.loc-layers", "1"], "--model.loc-layers"),
                                          (["--model.hidden", "32"], "--model.hidden")])
def test_location_settings_on_tokens_without_ordered_bins_are_refused(tmp_path, capsys, flags,
                                                                      named):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train-chunked", "--dataset", "test/absent-v0", "--chunk-tokenizer", "fast",
                 *flags, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"qbc train-chunked: error: {named} sets"), err
    assert "--chunk-tokenizer fast tokens do not have" in err and not out.exists()


def test_the_location_mlp_width_with_a_plain_head_is_refused(tmp_path, capsys):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train-chunked", "--dataset", "test/absent-v0", "--model.head", "plain",
                 "--model.hidden", "32", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--model.hidden sets" in err and "plain has none" in err, err
    assert not out.exists()
