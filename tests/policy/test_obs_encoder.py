"""Quantized random projections as the policy's observation encoder (`qbc train --obs-encoder`)."""

import json

import numpy as np
import pytest
import torch

from qbc.cli import main
from qbc.compressive import projection_quantizer
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.policy import load_policy
from qbc.policy.obs_encoder import QuantizedProjectionEncoder, parse_obs_encoder


def test_spec_parsing_fills_defaults_and_refuses_bad_settings():
    assert parse_obs_encoder("qrp:k=8,bits=3") == {"type": "qrp", "k": 8, "bits": 3,
                                                   "quantizer": "lloyd_max", "seed": 0}
    assert parse_obs_encoder("qrp")["k"] == 16
    assert parse_obs_encoder("qrp:quantizer=uniform,seed=4")["quantizer"] == "uniform"
    for bad, match in [("pca:k=4", "unknown observation encoder"), ("qrp:k=4,bit=2", "bit=2"),
                       ("qrp:k=four", "integer"), ("qrp:k=0", ">= 1"), ("qrp:k", "'k'")]:
        with pytest.raises(InvalidValueError, match=match):
            parse_obs_encoder(bad)
    with pytest.raises(InvalidValueError, match="bits"):
        QuantizedProjectionEncoder(3, bits=0)
    with pytest.raises(UnknownNameError):
        QuantizedProjectionEncoder(3, quantizer="lloyd-max")


@pytest.mark.parametrize("quantizer,bits", [("lloyd_max", 1), ("lloyd_max", 2), ("uniform", 3)])
def test_encoder_quantizes_unit_variance_projections(quantizer, bits):
    d, k = 5, 256
    enc = QuantizedProjectionEncoder(d, k=k, bits=bits, quantizer=quantizer, seed=3)
    z = torch.randn(4000, d, generator=torch.Generator().manual_seed(0))  # standardised obs
    proj = z @ enc.matrix
    assert abs(float(proj.var(dim=0).mean()) - 1.0) < 0.1  # N(0, 1) on average, as designed
    out = enc(z)
    assert out.shape == (4000, k)
    assert len(torch.unique(out)) == 2 ** bits
    reference = projection_quantizer(quantizer, bits).quantize(proj.numpy())
    np.testing.assert_allclose(out.numpy(), reference, rtol=0, atol=1e-6)
    histories = z.view(1000, 4, d)  # (B, K, d) histories work the same way
    torch.testing.assert_close(enc(histories), out.view(1000, 4, k))


@pytest.fixture
def dataset():
    assert main(["collect", "--env", "qbc/LinearStable-v0", "--episodes", "8", "--num-envs",
                 "8", "--dataset", "qbc/enc-test-v0"]) == 0
    return "qbc/enc-test-v0"


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["ar-transformer", "mlp-gaussian"])
def test_training_with_an_encoder_saves_reloads_and_resumes(tmp_path, dataset, policy):
    out = tmp_path / "run"
    bins = [] if policy.startswith("mlp") else ["--bins", "8"]  # continuous: no tokens
    args = ["train", "--dataset", dataset, "--policy", policy, *bins, "--steps", "20",
            "--eval-interval", "10", "--obs-encoder", "qrp:k=12,bits=2", "--out", str(out),
            "--rollout-episodes", "2", "--rollout-horizon", "20", "--no-progress"]
    assert main(args) == 0
    stored = json.loads((out / "best" / "config.json").read_text())["model"]["obs_encoder"]
    assert stored == {"type": "qrp", "k": 12, "bits": 2, "quantizer": "lloyd_max", "seed": 0,
                      "obs_dim": 4}
    policy_ = load_policy(out)
    assert policy_.module.inner.cfg.obs_dim == 12 and policy_.obs_dim == 4
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    actions = policy_.act(obs)
    assert actions.shape == (6, 2)
    np.testing.assert_array_equal(load_policy(out).act(obs), actions)
    # Observations that fall in the same cells of every projection get the same action.
    tiny = obs + 1e-7
    np.testing.assert_array_equal(policy_.act(tiny), actions)
    assert main([*args, "--steps", "30", "--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 30


def test_a_bad_encoder_is_a_one_line_error(tmp_path, dataset, capsys):
    assert main(["train", "--dataset", dataset, "--steps", "5", "--obs-encoder", "qrp:k=8,b=2",
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b=2" in err[0]
