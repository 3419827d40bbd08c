"""Baseline policies trained by the same loop as the transformer.

- ``mlp-mse``: deterministic regression of the (normalised) action, mean squared error.
- ``mlp-gaussian``: diagonal Gaussian, negative log-likelihood; the standard deviation is either a
  function of the state (``std="state"``) or one learned vector (``std="fixed"``).
- ``independent-categorical``: one categorical per token position, all predicted from the
  observation alone (no autoregression): p(tok | obs) = prod_i p(tok_i | obs).

All take normalised observations (B, K, obs_dim) (the history is flattened). The continuous ones
predict normalised actions; :class:`qbc.policy.Policy` maps them back to action units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from qbc.policy.decoding import pick_tokens, token_log_loss
from qbc.policy.registry import MLP_READS, ModelConfig, register_policy


@dataclass
class MLPConfig:
    """Shape of an MLP policy."""

    obs_dim: int
    """length of one observation vector."""
    out_dim: int
    """action dimensions D (continuous) or tokens per action (categorical)."""
    obs_history: int = 1
    """observations fed to the network (flattened)."""
    hidden: int = 256
    """width of the hidden layers."""
    n_layers: int = 2
    """hidden layers."""
    vocab_size: int = 0
    """token values per position (categorical policy only)."""
    std: str = "state"
    """Gaussian policy: "state" (std is a function of the state) or "fixed" (one learned vector)."""


def mlp(n_in: int, hidden: int, n_layers: int, n_out: int) -> nn.Sequential:
    """n_layers hidden layers of GELU units, then a linear output layer."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.GELU()]
    layers.append(nn.Linear(hidden if n_layers else n_in, n_out))
    return nn.Sequential(*layers)


def _config(m: ModelConfig, obs_dim: int, out_dim: int, vocab: int = 0) -> MLPConfig:
    """The MLP of ``qbc train``'s model settings (--model.hidden, --model.mlp-layers, ...)."""
    return MLPConfig(obs_dim=obs_dim, out_dim=out_dim, obs_history=m.obs_history,
                     hidden=m.hidden, n_layers=m.mlp_layers, vocab_size=vocab, std=m.std)


def _size(m: ModelConfig, act_dim: int, vocab: int) -> int:
    """The hidden and output matrices."""
    out = act_dim * max(vocab, 1)
    if m.mlp_layers == 0:
        return m.obs_history * out
    return (m.mlp_layers - 1) * (m.hidden * m.hidden + 1) + (m.obs_history + out) * m.hidden


class _MLPPolicy(nn.Module):
    kind = ""
    is_token_policy = False

    def __init__(self, cfg: MLPConfig, n_out: int):
        super().__init__()
        self.cfg = cfg
        self.net = mlp(cfg.obs_dim * cfg.obs_history, cfg.hidden, cfg.n_layers, n_out)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.flatten(1))


@register_policy("mlp-mse", MLPConfig, tokens=False, size=_size, reads=MLP_READS,
                 build=lambda m, o, a, n, v: MLPRegressionPolicy(_config(m, o, a)))
class MLPRegressionPolicy(_MLPPolicy):
    """Deterministic action regression (``mlp-mse``)."""


    def __init__(self, cfg: MLPConfig):
        super().__init__(cfg, cfg.out_dim)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error over normalised action components."""
        return F.mse_loss(self._features(batch["obs"]), batch["actions"])

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, deterministic: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised actions (B, D); the policy is deterministic either way."""
        return self._features(obs)


@register_policy("mlp-gaussian", MLPConfig, tokens=False, size=_size, reads=(*MLP_READS, "std"),
                 build=lambda m, o, a, n, v: MLPGaussianPolicy(_config(m, o, a)))
class MLPGaussianPolicy(_MLPPolicy):
    """Diagonal Gaussian over normalised actions (``mlp-gaussian``)."""

    LOG_STD_RANGE = (-7.0, 2.0)

    def __init__(self, cfg: MLPConfig):
        if cfg.std not in ("state", "fixed"):
            raise ValueError(f"std must be 'state' or 'fixed', got {cfg.std!r}")
        super().__init__(cfg, 2 * cfg.out_dim if cfg.std == "state" else cfg.out_dim)
        if cfg.std == "fixed":
            self.log_std = nn.Parameter(torch.zeros(cfg.out_dim))

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation (B, D) of the normalised action."""
        out = self._features(obs)
        if self.cfg.std == "state":
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return mean, log_std.clamp(*self.LOG_STD_RANGE).exp()

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Negative log-likelihood per action dimension (nats), averaged."""
        mean, std = self.distribution(batch["obs"])
        z = (batch["actions"] - mean) / std
        return (0.5 * z.pow(2) + std.log() + 0.5 * math.log(2 * math.pi)).mean()

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, deterministic: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean when deterministic, else a draw (normalised actions (B, D))."""
        mean, std = self.distribution(obs)
        if deterministic:
            return mean
        dev = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=dev).to(mean.device)
        return mean + std * noise


@register_policy("independent-categorical", MLPConfig, tokens=True, size=_size, reads=MLP_READS,
                 build=lambda m, o, a, n, v: IndependentCategoricalPolicy(_config(m, o, n, v)))
class IndependentCategoricalPolicy(_MLPPolicy):
    """A categorical per token position from the observation alone (``independent-categorical``)."""

    def __init__(self, cfg: MLPConfig):
        super().__init__(cfg, cfg.out_dim * cfg.vocab_size)

    def logits(self, obs: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n_tokens, V); ``tokens`` is ignored (no autoregression)."""
        return self._features(obs).view(obs.shape[0], self.cfg.out_dim, self.cfg.vocab_size)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Log-loss (nats per token), on soft targets when the batch has them."""
        return token_log_loss(self.logits(batch["obs"]), batch["tokens"], batch.get("soft"))

    @torch.no_grad()
    def decode(self, obs: torch.Tensor, sample: bool = False, temperature: float = 1.0,
               generator: torch.Generator | None = None, use_cache: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, n_tokens) and probs (B, n_tokens, V); positions drawn independently."""
        logits = self.logits(obs)
        out = [pick_tokens(logits[:, i], sample, temperature, generator)
               for i in range(logits.shape[1])]
        return torch.stack([t for t, _ in out], 1), torch.stack([p for _, p in out], 1)
