"""BC policies with quantized weights: `qbc train --weight-quantizer` (STE pairs)."""

import numpy as np
import pytest
import torch

from qbc.cli import main
from qbc.policy import load_policy
from qbc.ste import QuantLinear


@pytest.fixture
def dataset():
    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--episodes", "10", "--num-envs",
                 "10", "--dataset", "qbc/wq-test-v0"]) == 0
    return "qbc/wq-test-v0"


@pytest.mark.slow
@pytest.mark.parametrize("policy,quantizer", [("mlp-mse", "bnn++"),
                                              ("ar-transformer", "bc")])
def test_training_with_quantized_weights_saves_and_reloads(tmp_path, dataset, policy, quantizer):
    out = tmp_path / "run"
    bins = [] if policy.startswith("mlp") else ["--bins", "8"]  # continuous: no tokens
    assert main(["train", "--dataset", dataset, "--policy", policy, *bins,
                 "--steps", "20", "--eval-interval", "10", "--weight-quantizer", quantizer,
                 "--out", str(out), "--rollout-episodes", "0", "--no-progress"]) == 0
    loaded = load_policy(out)
    layers = [m for m in loaded.module.modules() if isinstance(m, QuantLinear)]
    assert layers, "no linear layer was quantized"
    for layer in layers:  # the deployed weights of these binary pairs are exactly ±1
        w = layer.deployed_weight()
        assert torch.all(w.abs() == 1.0)
    obs = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    assert loaded.act(obs).shape == (8, 1)
    np.testing.assert_array_equal(loaded.act(obs), load_policy(out).act(obs))


def test_unknown_weight_quantizer_is_a_clear_error(tmp_path, dataset, capsys):
    assert main(["train", "--dataset", dataset, "--steps", "5", "--weight-quantizer", "bnnn",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bnn" in err and "Traceback" not in err


@pytest.mark.parametrize("quantizer", ["uniform", "theorem6"])
def test_registry_weight_quantizer_checkpoint_reloads(tmp_path, dataset, tiny_model_flags,
                                                      quantizer):
    """A registry quantizer's codebook is fitted on the weights during training, so config.json
    cannot give its size: the checkpoint used to be refused by its own loader ('does not fit
    the model in config.json', the run lost at its end). It reloads, deploys only codewords and
    resumes."""
    out = tmp_path / "run"
    flags = ["--dataset", dataset, "--bins", "8", "--eval-interval", "2",
             "--batch-size", "16", "--weight-quantizer", quantizer, "--out", str(out),
             "--rollout-episodes", "0", "--no-progress", *tiny_model_flags]
    assert main(["train", *flags, "--steps", "4"]) == 0
    loaded = load_policy(out)
    layers = [m for m in loaded.module.modules() if isinstance(m, QuantLinear)]
    assert layers
    for layer in layers:
        codebook = layer.weight_quantizer.codebook
        assert codebook.numel() > 1
        assert torch.isin(layer.deployed_weight(), codebook).all()
    obs = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(loaded.act(obs), load_policy(out).act(obs))
    assert main(["train", *flags, "--steps", "6", "--resume"]) == 0
