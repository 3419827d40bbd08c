"""QuantLinear / QuantConv2d: drop-in for the torch layers, exact binary export, annealing."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from qbc.ste import (
    QuantConv2d,
    QuantLinear,
    anneal_step,
    export_deployed,
    quantize_linear_layers,
    save_deployed,
    ste_quantizers,
)


@pytest.mark.parametrize("name", ["bc", "pc", "bnn", "bnn+", "bnn++"])
def test_quantlinear_exports_exactly_binary_weights(name, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(QuantLinear(7, 5, weight_quantizer=name), nn.ReLU(),
                          QuantLinear(5, 3, weight_quantizer=name))
    state = export_deployed(model)
    for key in ("0.weight", "2.weight"):
        assert torch.equal(state[key].abs(), torch.ones_like(state[key]))
        assert torch.equal(state[key], torch.where(model.get_submodule(key[0]).weight >= 0,
                                                   1.0, -1.0))
    assert not any("quantizer" in k for k in state)
    # the deployed state loads into plain nn.Linear layers
    plain = nn.Sequential(nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    plain.load_state_dict(state)
    path = save_deployed(model, tmp_path / "w.safetensors")
    assert torch.equal(load_file(str(path))["0.weight"], state["0.weight"])


def test_quantlinear_is_a_drop_in_for_linear():
    torch.manual_seed(1)
    lin = nn.Linear(6, 4)
    q = QuantLinear(6, 4, weight_quantizer=None)
    q.load_state_dict(lin.state_dict())
    x = torch.randn(3, 6)
    torch.testing.assert_close(q(x), lin(x))
    assert isinstance(q, nn.Linear)
    # with bc: forward uses sign(θ), gradient reaches θ straight through
    qb = QuantLinear(6, 4, weight_quantizer="bc")
    qb.load_state_dict(lin.state_dict(), strict=False)
    y = qb(x)
    torch.testing.assert_close(y, x @ torch.where(lin.weight >= 0, 1.0, -1.0).T + lin.bias)
    y.sum().backward()
    torch.testing.assert_close(qb.weight.grad, torch.ones(4, 3) @ x)


def test_activation_quantizer_binarises_inputs():
    q = QuantLinear(5, 2, weight_quantizer=None, activation_quantizer="bnn")
    x = torch.randn(4, 5)
    torch.testing.assert_close(q(x), nn.functional.linear(torch.where(x >= 0, 1.0, -1.0),
                                                          q.weight, q.bias))


def test_quantconv2d_exports_binary_and_matches_conv():
    torch.manual_seed(2)
    conv = QuantConv2d(2, 3, 3, padding=1, weight_quantizer="bnn++")
    x = torch.randn(2, 2, 5, 5)
    assert conv(x).shape == (2, 3, 5, 5)
    w = conv.deployed_weight()
    assert torch.equal(w.abs(), torch.ones_like(w))
    ref = nn.functional.conv2d(x, conv.weight_quantizer.forward_map(conv.weight), conv.bias,
                               padding=1)
    torch.testing.assert_close(conv(x), ref)


def test_anneal_step_advances_every_quantizer():
    model = nn.Sequential(QuantLinear(3, 3, weight_quantizer="bnn++"),
                          QuantLinear(3, 3, weight_quantizer="pc"),
                          QuantLinear(3, 3, weight_quantizer="bc"))
    before = [q.value for q in ste_quantizers(model)]
    values = anneal_step(model, 10)
    after = [q.value for q in ste_quantizers(model)]
    assert set(values) == {"0.weight_quantizer", "1.weight_quantizer"}
    assert after[0] > before[0] and after[1] > before[1] and after[2] is None


def test_quantize_linear_layers_swaps_in_place_and_keeps_weights():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Sequential(nn.Linear(8, 2)))
    w0 = model[0].weight.detach().clone()
    quantize_linear_layers(model, "bnn")
    assert isinstance(model[0], QuantLinear) and isinstance(model[2][0], QuantLinear)
    assert torch.equal(model[0].weight, w0)
    assert model[0].weight_quantizer is not model[2][0].weight_quantizer
