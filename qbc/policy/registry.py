"""The one registry of policy kinds, and the model settings they are built from."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.validate import AT_LEAST_ONE, FRACTION, Rule, check_all, check_config
from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.baselines import (
    IndependentCategoricalPolicy,
    MLPConfig,
    MLPGaussianPolicy,
    MLPRegressionPolicy,
)
from qbc.policy.chunked import (
    ChunkARConfig,
    ChunkARTransformer,
    ChunkMLPConfig,
    ChunkMLPRegression,
)
from qbc.policy.obs_encoder import wrap_with_encoder


@dataclass
class ModelConfig:
    """Model settings for every policy kind (each kind reads the fields it needs)."""

    d_model: int = 64
    """transformer: width of the residual stream."""
    n_layers: int = 2
    """transformer: blocks."""
    n_heads: int = 4
    """transformer: attention heads."""
    mlp_ratio: int = 4
    """transformer: MLP hidden width as a multiple of d_model."""
    dropout: float = 0.0
    """transformer: dropout rate during training."""
    hidden: int = 256
    """MLP baselines: hidden layer width; also the width of the ordered head's location MLP."""
    mlp_layers: int = 2
    """MLP baselines: hidden layers."""
    std: str = "state"
    """mlp-gaussian: "state" (state-dependent std) or "fixed" (state-independent)."""
    obs_history: int = 1
    """observations the policy sees: the current one and the k-1 before it."""
    head: str = "ordered"
    """ar-transformer's output head: 'ordered' (with a per-dimension tokenizer, the free logits
    plus a term that scores each bin by its codeword's distance from a location computed from
    the observation, :class:`~qbc.policy.ar_transformer.ARTransformerConfig`: states beyond the
    data get the bin their action extrapolates to, as the clipped quantized expert does) or
    'plain' (free logits only). A joint quantizer (vq) of actions of more than one dimension
    has no order among its codes: that run's head is plain, and its train_config.json says so."""
    loc_layers: int = 2
    """ar-transformer's ordered head: hidden layers (width --model.hidden) of the MLP on the
    observation inside each token's location (0: a linear location, the head's first version)."""


#: The ModelConfig fields each policy kind reads; it ignores the others (``hidden``: the width
#: of the ar-transformer's ordered head's location MLP).
_MLP_READS = ("hidden", "mlp_layers", "obs_history")
MODEL_READS: dict[str, tuple[str, ...]] = {
    "ar-transformer": ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "hidden",
                       "obs_history", "head", "loc_layers"),
    "independent-categorical": _MLP_READS, "mlp-mse": _MLP_READS,
    "mlp-gaussian": (*_MLP_READS, "std"),
    # chunk policies (qbc.policy.chunked.build_chunk_policy; obs_history must be 1)
    "chunk-ar-transformer": ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout",
                             "obs_history"),
    "chunk-mlp-l1": _MLP_READS}


def model_flag(name: str) -> str:
    """The flag of ModelConfig field ``name`` (``d_model`` -> ``--model.d-model``)."""
    return "--model." + name.replace("_", "-")


def unread_model_settings(kind: str, model: ModelConfig) -> list[str]:
    """The fields of ``model`` away from their defaults that policy ``kind`` does not read."""
    if kind not in MODEL_READS:
        raise UnknownNameError("policy", kind, MODEL_READS)
    reads = MODEL_READS[kind]
    return [f.name for f in dataclasses.fields(model)
            if f.name not in reads and getattr(model, f.name) != f.default]


def check_model_settings_read(kind: str, model: ModelConfig) -> None:
    """Refuse (one-line InvalidValueError) a setting of ``model`` given away from its default
    that policy ``kind`` does not read (``--model.d-model`` with an MLP policy, ...)."""
    unread = [model_flag(name) for name in unread_model_settings(kind, model)]
    if unread:
        them = "it" if len(unread) == 1 else "them"
        reads = ", ".join(model_flag(name) for name in MODEL_READS[kind])
        raise InvalidValueError(f"--policy {kind} does not read {', '.join(unread)} and would "
                                f"ignore {them}: leave {them} out (it reads {reads})")


def model_for(kind: str, model: ModelConfig) -> ModelConfig:
    """``model`` with the settings policy ``kind`` does not read back at their defaults: what a
    caller that gives several kinds one set of settings (a sweep's cell) passes to each."""
    return dataclasses.replace(model, **{name: getattr(ModelConfig, name)
                                         for name in unread_model_settings(kind, model)})


def _ar(m: ModelConfig, obs_dim: int, act_dim: int, n_tokens: int, vocab: int) -> nn.Module:
    return ARTransformerPolicy(ARTransformerConfig(
        obs_dim=obs_dim, n_tokens=n_tokens, vocab_size=vocab, obs_history=m.obs_history,
        d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, mlp_ratio=m.mlp_ratio,
        dropout=m.dropout, ordered_head=m.head == "ordered" and n_tokens == act_dim,
        loc_layers=m.loc_layers, loc_hidden=m.hidden))


def _mlp_cfg(m: ModelConfig, obs_dim: int, out_dim: int, vocab: int = 0) -> MLPConfig:
    return MLPConfig(obs_dim=obs_dim, out_dim=out_dim, obs_history=m.obs_history,
                     hidden=m.hidden, n_layers=m.mlp_layers, vocab_size=vocab, std=m.std)


#: kind -> (builder(model_cfg, obs_dim, act_dim, n_tokens, vocab), needs a tokenizer)
_POLICIES: dict[str, tuple[Callable[..., nn.Module], bool]] = {
    "ar-transformer": (_ar, True),
    "independent-categorical": (
        lambda m, o, a, n, v: IndependentCategoricalPolicy(_mlp_cfg(m, o, n, v)), True),
    "mlp-mse": (lambda m, o, a, n, v: MLPRegressionPolicy(_mlp_cfg(m, o, a)), False),
    "mlp-gaussian": (lambda m, o, a, n, v: MLPGaussianPolicy(_mlp_cfg(m, o, a)), False),
}

#: kind -> class, to rebuild a saved module from its stored config.
_CLASSES: dict[str, tuple[type[nn.Module], type]] = {
    "ar-transformer": (ARTransformerPolicy, ARTransformerConfig),
    "independent-categorical": (IndependentCategoricalPolicy, MLPConfig),
    "mlp-mse": (MLPRegressionPolicy, MLPConfig),
    "mlp-gaussian": (MLPGaussianPolicy, MLPConfig),
    # chunk policies (qbc.policy.chunked; built by build_chunk_policy, trained by
    # qbc.training.chunked)
    "chunk-ar-transformer": (ChunkARTransformer, ChunkARConfig),
    "chunk-mlp-l1": (ChunkMLPRegression, ChunkMLPConfig),
}


def available_policies() -> list[str]:
    """Registered policy kinds."""
    return sorted(_POLICIES)


def check_policy_kind(kind: str) -> str:
    if kind not in _POLICIES:
        raise UnknownNameError("policy", kind, _POLICIES)
    return kind


def needs_tokenizer(kind: str) -> bool:
    """True for policies over tokens (they are trained on a fitted ActionTokenizer)."""
    return _POLICIES[check_policy_kind(kind)][1]


#: Output heads of the ar-transformer (--model.head).
HEADS = ("ordered", "plain")

#: Ranges of the model settings (flags --model.*).
MODEL_RULES = {"d_model": AT_LEAST_ONE, "n_layers": AT_LEAST_ONE, "n_heads": AT_LEAST_ONE,
               "mlp_ratio": AT_LEAST_ONE, "dropout": FRACTION, "hidden": AT_LEAST_ONE,
               "mlp_layers": Rule(lo=0, integer=True), "loc_layers": Rule(lo=0, integer=True),
               "obs_history": AT_LEAST_ONE}


def check_model_config(model: ModelConfig) -> None:
    """Raise InvalidValueError (naming the --model.* flag) unless every setting is in range,
    n_heads divides d_model and std is 'state' or 'fixed'."""
    check_config(model, MODEL_RULES, prefix="model.")
    check_all([(model.d_model % model.n_heads == 0,
                f"--model.d-model ({model.d_model}) must be divisible by --model.n-heads "
                f"({model.n_heads})"),
               (model.std in ("state", "fixed"),
                f"--model.std must be 'state' or 'fixed', got {model.std!r}"),
               (model.head in HEADS,
                f"--model.head must be one of {', '.join(HEADS)}, got {model.head!r}")])


def build_policy(kind: str, model: ModelConfig, obs_dim: int, act_dim: int,
                 tokenizer: Any = None, obs_encoder: str | dict | None = None) -> nn.Module:
    """A freshly initialised policy module (seed torch first for reproducible weights).

    ``obs_encoder`` (e.g. ``"qrp:k=16,bits=2"``) puts a fixed quantized-projection encoder in
    front of it (:mod:`qbc.policy.obs_encoder`)."""
    builder, uses_tokens = _POLICIES[check_policy_kind(kind)]
    check_model_config(model)
    if uses_tokens and tokenizer is None:
        raise InvalidValueError(f"policy {kind!r} needs a fitted tokenizer")
    n_tokens = tokenizer.n_tokens if uses_tokens else 0
    vocab = tokenizer.vocab_size if uses_tokens else 0
    module = wrap_with_encoder(lambda n_in: builder(model, n_in, act_dim, n_tokens, vocab),
                               obs_encoder, obs_dim)
    inner = getattr(module, "inner", module)
    if getattr(inner.cfg, "ordered_head", False) and hasattr(tokenizer, "codebooks"):
        inner.set_bin_centers(tokenizer.codebooks())
    return module


def module_from_config(kind: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a module from ``module.config_dict()`` (as stored in a checkpoint)."""
    if kind not in _CLASSES:
        raise UnknownNameError("policy", kind, _CLASSES)
    klass, cfg_type = _CLASSES[kind]
    config = dict(config)
    encoder = config.pop("obs_encoder", None)
    if encoder is None:
        return klass(cfg_type(**config))
    obs_dim = encoder["obs_dim"]
    return wrap_with_encoder(lambda n_in: klass(cfg_type(**{**config, "obs_dim": n_in})),
                             encoder, obs_dim)


def rough_parameter_count(kind: str, model: ModelConfig, act_dim: int, vocab: int = 0) -> int:
    """A lower bound on the parameters of policy ``kind`` from the settings alone (its largest
    weight matrices, one per layer made), whatever the observations: sizes far beyond memory
    are refused with it before any module is made, since even on torch's 'meta' device making
    10^9 layers or a 10^20-wide matrix hangs or overflows."""
    out = act_dim * max(vocab, 1)
    if kind == "ar-transformer":
        d = model.d_model
        return (model.n_layers * ((4 + 2 * model.mlp_ratio) * d * d + 1)
                + (model.obs_history + 2 * out) * d)
    if model.mlp_layers == 0:
        return model.obs_history * out
    hidden = model.hidden
    return ((model.mlp_layers - 1) * (hidden * hidden + 1)
            + (model.obs_history + out) * hidden)
