"""An exponential moving average of a model's weights during training (``--ema-decay``).

The weights a run evaluates, selects and saves as ``best/`` are the average, not the last
step's: on small datasets closed-loop behaviour varies from checkpoint to checkpoint far more
than the validation error does, and the average moves less. The averaging is
:class:`torch.optim.swa_utils.AveragedModel`; its decay warms up, ``min(decay, (1 + n) / (10 +
n))`` after n updates, so the average spans about the last tenth of the steps taken until that
reaches ``decay`` (a short run is not dominated by its initial weights). ``last/`` keeps the
averaged parameters beside the raw ones, so ``--resume`` continues the same average.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel

#: Prefix of the averaged parameters' names in ``last/trainer.safetensors``.
TENSOR_PREFIX = "ema."


class WeightAverage:
    """The running average of ``module``'s parameters: after an update it is
    ``d * average + (1 - d) * weights`` (d: :meth:`decay_after`), starting from the weights of
    the first update.
    Buffers (fixed tables such as codewords) are the module's own, copied when it was made."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.averaged = AveragedModel(module, multi_avg_fn=self._fold)

    def decay_after(self, n: int) -> float:
        """The decay of the update that follows ``n`` earlier ones (the first copies)."""
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def _fold(self, averaged: list[torch.Tensor], current: list[torch.Tensor],
              n_averaged: torch.Tensor) -> None:
        """AveragedModel's update of every parameter at once (called from the second update on;
        ``n_averaged`` counts the updates before this one)."""
        weight = 1.0 - self.decay_after(int(n_averaged))
        for a, c in zip(averaged, current, strict=True):
            a.lerp_(c, weight)

    @property
    def module(self) -> torch.nn.Module:
        """The model with the averaged weights (the same class as the trained one)."""
        return self.averaged.module

    def update(self, module: torch.nn.Module) -> None:
        """Fold ``module``'s current parameters into the average (once per optimiser step)."""
        self.averaged.update_parameters(module)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The averaged parameters and the update count, named for ``last/``."""
        tensors = {TENSOR_PREFIX + name: p.detach()
                   for name, p in self.averaged.module.named_parameters()}
        tensors[TENSOR_PREFIX + "n_averaged"] = self.averaged.n_averaged.detach()
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_tensors`; without them (a ``last/`` saved before averaging was
        on) the average starts again from the weights of the next update. A partial or
        mis-shaped set raises KeyError / RuntimeError (the caller reports it as damaged)."""
        if TENSOR_PREFIX + "n_averaged" not in tensors:
            return
        with torch.no_grad():
            for name, p in self.averaged.module.named_parameters():
                p.copy_(tensors[TENSOR_PREFIX + name])
            self.averaged.n_averaged.copy_(tensors[TENSOR_PREFIX + "n_averaged"])
