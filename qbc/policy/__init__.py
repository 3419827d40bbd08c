"""Policies over quantized actions: the autoregressive transformer and the baselines.

>>> from qbc.policy import load_policy
>>> policy = load_policy("runs/lqr-ar")          # a run directory or a checkpoint directory
>>> actions = policy.act(obs)                     # obs (B, obs_dim) -> actions (B, act_dim)

Kinds (``available_policies()``): ``ar-transformer``, ``independent-categorical``, ``mlp-mse``,
``mlp-gaussian``; chunk kinds (``chunk_policies()``): ``chunk-ar-transformer``, ``chunk-mlp-l1``.
Each kind is a module here registering its class and config with ``@register_policy`` (the
registry: :data:`POLICY_KINDS`); the imports below make the names exist. ``build_policy`` makes a
fresh torch module; :class:`Policy` is the numpy-facing wrapper (normalisation, history,
decoding); ``save_checkpoint`` / ``load_policy`` store and restore it as safetensors + JSON.
"""

# The policy kinds: each module registers its kind(s) on import (one line per new kind).
from qbc.policy import ar_transformer, baselines, chunked  # noqa: F401  (registers the kinds)
from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.baselines import (
    IndependentCategoricalPolicy,
    MLPConfig,
    MLPGaussianPolicy,
    MLPRegressionPolicy,
)
from qbc.policy.decoding import DECODE_MODES
from qbc.policy.loading import load_policy, save_checkpoint
from qbc.policy.registry import (
    POLICY_KINDS,
    ModelConfig,
    available_policies,
    build_policy,
    chunk_policies,
    needs_tokenizer,
    register_policy,
)
from qbc.policy.wrapper import Normalizer, Policy

__all__ = [
    "ARTransformerConfig",
    "ARTransformerPolicy",
    "DECODE_MODES",
    "IndependentCategoricalPolicy",
    "MLPConfig",
    "MLPGaussianPolicy",
    "MLPRegressionPolicy",
    "POLICY_KINDS",
    "ModelConfig",
    "Normalizer",
    "Policy",
    "available_policies",
    "build_policy",
    "chunk_policies",
    "load_policy",
    "needs_tokenizer",
    "register_policy",
    "save_checkpoint",
]
