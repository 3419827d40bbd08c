"""Quantized layers: drop-in replacements of ``nn.Linear`` / ``nn.Conv2d`` whose weights (and,
optionally, inputs) pass through STE quantizers during training.

>>> layer = QuantLinear(64, 10, weight_quantizer="bnn++")
>>> y = layer(x)                      # training: SS_β(θ) forward, SS_β' backward
>>> anneal_step(model)                # trainer: advance β / μ of every quantizer by one step
>>> export_deployed(model)            # {"0.weight": ±1 tensor, ...}: the weights to ship

The latent weights keep the names and shapes of ``nn.Linear``/``nn.Conv2d`` (the layers subclass
them), so a state dict of the plain layer loads into the quantized one and vice versa.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from qbc.infra.files import atomic_write
from qbc.ste.functions import STEQuantizer, get_ste, serialize_ste


class _QuantMixin:
    """Shared by the quantized layers: quantizer slots, deployed weights, config."""

    def _init_quantizers(self, weight_quantizer, activation_quantizer) -> None:
        self.weight_quantizer = get_ste(weight_quantizer)
        self.activation_quantizer = get_ste(activation_quantizer)

    def _quant_inputs(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.activation_quantizer is not None:
            x = self.activation_quantizer(x)
        if self.weight_quantizer is not None:
            w = self.weight_quantizer(w)
        return x, w

    @torch.no_grad()
    def deployed_weight(self) -> torch.Tensor:
        """The weights as deployed: ``weight_quantizer.deploy(θ)`` (exactly ±1 for the binary
        pairs), or the latent weights when there is no weight quantizer."""
        if self.weight_quantizer is None:
            return self.weight.detach().clone()
        return self.weight_quantizer.deploy(self.weight.detach())

    def quant_config(self) -> dict[str, Any]:
        return {"weight_quantizer": serialize_ste(self.weight_quantizer),
                "activation_quantizer": serialize_ste(self.activation_quantizer)}


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` with quantized weights and optional quantized inputs.

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear``.
        weight_quantizer: STE quantizer of the weights (name, dict or instance; None = none).
        activation_quantizer: STE quantizer applied to the layer's input (None = none).
    Shapes: input (..., in_features) -> output (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_quantizer: str | dict | STEQuantizer | None = "bc",
                 activation_quantizer: str | dict | STEQuantizer | None = None,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_quantizers(weight_quantizer, activation_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._quant_inputs(x, self.weight)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.quant_config()}"


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` with quantized weights and optional quantized inputs; the arguments of
    ``nn.Conv2d`` plus ``weight_quantizer`` and ``activation_quantizer`` (keywords).
    Shapes: input (B, C_in, H, W) -> output (B, C_out, H', W')."""

    def __init__(self, *args, weight_quantizer: str | dict | STEQuantizer | None = "bc",
                 activation_quantizer: str | dict | STEQuantizer | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quantizers(weight_quantizer, activation_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._quant_inputs(x, self.weight)
        return self._conv_forward(x, w, self.bias)


def ste_quantizers(model: nn.Module) -> list[STEQuantizer]:
    """Every STE quantizer inside ``model``."""
    return [m for m in model.modules() if isinstance(m, STEQuantizer)]


def anneal_step(model: nn.Module, n: int = 1) -> dict[str, float]:
    """Advance every quantizer's β / μ schedule by ``n`` trainer steps; returns the current
    values by module name (for logging)."""
    values = {}
    for name, module in model.named_modules():
        if isinstance(module, STEQuantizer):
            module.step(n)
            if module.value is not None:
                values[name] = module.value
    return values


@torch.no_grad()
def export_deployed(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of the model as deployed: every quantized layer's ``weight`` replaced by its
    deployed (e.g. exactly ±1) weights; other tensors as they are, quantizer buffers left out."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if isinstance(module, _QuantMixin):
            state[f"{name}.weight" if name else "weight"] = module.deployed_weight()
    quant_prefixes = tuple(f"{n}." for n, m in model.named_modules()
                           if isinstance(m, STEQuantizer))
    return {k: v.contiguous() for k, v in state.items() if not k.startswith(quant_prefixes)}


def save_deployed(model: nn.Module, path: str | Path) -> Path:
    """Write :func:`export_deployed` as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = export_deployed(model)
    return atomic_write(path, lambda p: save_file(tensors, str(p)))


def quantize_linear_layers(model: nn.Module, weight_quantizer: str | dict | None,
                           activation_quantizer: str | dict | None = None) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a :class:`QuantLinear` holding the
    same weights; each layer gets its own quantizer built from the spec (a name or dict)."""
    for name, child in list(model.named_children()):
        if type(child) is nn.Linear:
            q = QuantLinear(child.in_features, child.out_features, bias=child.bias is not None,
                            weight_quantizer=weight_quantizer,
                            activation_quantizer=activation_quantizer,
                            device=child.weight.device, dtype=child.weight.dtype)
            q.load_state_dict(child.state_dict(), strict=False)
            setattr(model, name, q)
        else:
            quantize_linear_layers(child, weight_quantizer, activation_quantizer)
    return model
