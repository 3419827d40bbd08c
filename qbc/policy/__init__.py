"""Policies over quantized actions: the autoregressive transformer and the baselines.

>>> from qbc.policy import load_policy
>>> policy = load_policy("runs/lqr-ar")          # a run directory or a checkpoint directory
>>> actions = policy.act(obs)                     # obs (B, obs_dim) -> actions (B, act_dim)

Kinds (``available_policies()``): ``ar-transformer``, ``independent-categorical``, ``mlp-mse``,
``mlp-gaussian``. ``build_policy`` makes a fresh torch module; :class:`Policy` is the
numpy-facing wrapper (normalisation, history, decoding); ``save_checkpoint`` / ``load_policy``
store and restore it as safetensors + JSON.
"""

from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.baselines import (
    IndependentCategoricalPolicy,
    MLPConfig,
    MLPGaussianPolicy,
    MLPRegressionPolicy,
)
from qbc.policy.decoding import DECODE_MODES
from qbc.policy.loading import load_policy, save_checkpoint
from qbc.policy.registry import ModelConfig, available_policies, build_policy, needs_tokenizer
from qbc.policy.wrapper import Normalizer, Policy

__all__ = [
    "ARTransformerConfig",
    "ARTransformerPolicy",
    "DECODE_MODES",
    "IndependentCategoricalPolicy",
    "MLPConfig",
    "MLPGaussianPolicy",
    "MLPRegressionPolicy",
    "ModelConfig",
    "Normalizer",
    "Policy",
    "available_policies",
    "build_policy",
    "load_policy",
    "needs_tokenizer",
    "save_checkpoint",
]
