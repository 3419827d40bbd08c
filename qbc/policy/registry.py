"""The registry of policy kinds (:data:`POLICY_KINDS`), the model settings they are built from
(:class:`ModelConfig`), and building or rebuilding a policy module by kind.

A policy kind is one module under ``qbc/policy/`` holding its module class and its config class,
registered there with :func:`register_policy`; one import line in ``qbc/policy/__init__.py``
makes it exist after ``import qbc.policy``. This module imports none of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from torch import nn

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.validate import (
    AT_LEAST_ONE,
    FRACTION,
    Rule,
    check_all,
    check_config,
    check_field_types,
)
from qbc.policy.obs_encoder import wrap_with_encoder
from qbc.registry import Registry

#: Output heads of the ar-transformer (--model.head).
Head = Literal["ordered", "plain"]
#: How mlp-gaussian's std is computed (--model.std).
Std = Literal["state", "fixed"]
#: What the ordered head's location reads (``--model.loc-inputs``).
LocInputs = Literal["obs", "obs+trunk"]


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
    std: Std = "state"
    """mlp-gaussian: "state" (state-dependent std) or "fixed" (state-independent)."""
    obs_history: int = 1
    """observations the policy sees: the current one and the k-1 before it."""
    head: Head = "ordered"
    """ar-transformer's output head: 'ordered' (with a per-dimension tokenizer, the free logits
    plus a term that scores each bin by its codeword's distance from a location computed from
    the observation, :class:`~qbc.policy.ar_transformer.ARTransformerConfig`: states beyond the
    data get the bin their action extrapolates to, as the clipped quantized expert does) or
    'plain' (free logits only). A joint quantizer (vq) of actions of more than one dimension
    has no order among its codes: that run's head is plain, and its train_config.json says so."""
    loc_layers: int = 2
    """ar-transformer's ordered head: hidden layers (width --model.hidden) of the MLP on the
    observation inside each token's location (0: a linear location, the head's first version)."""
    loc_inputs: LocInputs = "obs+trunk"
    """ar-transformer's ordered head: what each token's location reads: 'obs+trunk' (the current
    observation, plus a linear function of the transformer's hidden state, which also reads the
    earlier tokens and the observation history) or 'obs' (the observation alone; the earlier
    tokens then reach a token through its free logits only). Measured against each other in
    docs/guide/training.md: no difference beyond the spread between training seeds."""


#: The policy kinds, each registered by its own module (:func:`register_policy`).
POLICY_KINDS: Registry[type[nn.Module]] = Registry("policy", name_attr="kind")


#: The ModelConfig fields an MLP policy kind reads (its ``reads`` at registration).
MLP_READS = ("hidden", "mlp_layers", "obs_history")
#: ... and a transformer kind.
TRANSFORMER_READS = ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout", "obs_history")


def model_reads(kind: str) -> tuple[str, ...]:
    """The ModelConfig fields policy ``kind`` reads (registered with it); it ignores the
    others."""
    return POLICY_KINDS.meta(kind)["reads"]


def model_flag(name: str) -> str:
    """The flag of ModelConfig field ``name`` (``d_model`` -> ``--model.d-model``)."""
    return "--model." + name.replace("_", "-")


def unread_model_settings(kind: str, model: ModelConfig) -> list[str]:
    """The fields of ``model`` away from their defaults that policy ``kind`` does not read."""
    reads = model_reads(kind)
    return [f.name for f in dataclasses.fields(model)
            if f.name not in reads and getattr(model, f.name) != f.default]


def check_model_settings_read(kind: str, model: ModelConfig) -> None:
    """Refuse (one-line InvalidValueError) a setting of ``model`` given away from its default
    that policy ``kind`` does not read (``--model.d-model`` with an MLP policy, ...)."""
    unread = [model_flag(name) for name in unread_model_settings(kind, model)]
    if unread:
        them = "it" if len(unread) == 1 else "them"
        reads = ", ".join(model_flag(name) for name in model_reads(kind))
        raise InvalidValueError(f"--policy {kind} does not read {', '.join(unread)} and would "
                                f"ignore {them}: leave {them} out (it reads {reads})")


def model_for(kind: str, model: ModelConfig) -> ModelConfig:
    """``model`` with the settings policy ``kind`` does not read back at their defaults: what a
    caller that gives several kinds one set of settings (a sweep's cell) passes to each."""
    return dataclasses.replace(model, **{name: getattr(ModelConfig, name)
                                         for name in unread_model_settings(kind, model)})


def _no_bound(model: ModelConfig, act_dim: int, vocab: int) -> int:
    return 0


def register_policy(name: str, config: type, *, tokens: bool, build: Callable[..., nn.Module],
                    size: Callable[[ModelConfig, int, int], int] = _no_bound,
                    chunk: bool = False, head: bool = False,
                    reads: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register a policy module class as kind ``name`` (``--policy name``;
    sets ``cls.kind``, ``cls.is_token_policy`` and ``cls.is_chunk_policy``).

    ``config``: its config class; ``cls(config(**module.config_dict()))`` rebuilds a saved
    module. ``tokens``: trained on a fitted tokenizer, its outputs are logits over tokens
    (``decode``), else normalised actions (``predict``). ``build``: a fresh module from the model
    settings, ``build(model, obs_dim, act_dim, n_tokens, vocab)`` (``n_tokens``, ``vocab``: the
    tokenizer's, 0 without one), or for a chunk kind ``build(model, obs_dim, act_dim,
    chunk_len, tokenizer, max_len)``. ``size``: ``size(model, act_dim, vocab)``, a lower bound
    on its parameters from the settings alone (see :func:`rough_parameter_count`; default 0).
    ``chunk``: a chunk policy (``qbc train-chunked``), not a per-step one (``qbc train``).
    ``head``: it reads the ordered output head's settings (``--model.head``,
    ``--model.loc-layers``); other kinds refuse them. ``reads``: the ModelConfig fields it
    reads (``--model.*``); the others given away from their defaults are refused."""

    def wrap(cls: type) -> type:
        cls.is_token_policy, cls.is_chunk_policy = tokens, chunk
        return POLICY_KINDS.add(name, cls, config=config, tokens=tokens, build=build,
                                size=size, chunk=chunk, head=head, reads=reads)

    return wrap


def available_policies() -> list[str]:
    """Registered per-step policy kinds (``qbc train --policy``)."""
    return POLICY_KINDS.names(chunk=False)


def chunk_policies() -> list[str]:
    """Registered chunk policy kinds (``qbc train-chunked --policy``)."""
    return POLICY_KINDS.names(chunk=True)


def check_policy_kind(kind: str) -> str:
    if kind not in available_policies():
        raise UnknownNameError("policy", kind, available_policies())
    return kind


def needs_tokenizer(kind: str) -> bool:
    """True for policies over tokens (they are trained on a fitted ActionTokenizer)."""
    return POLICY_KINDS.meta(check_policy_kind(kind))["tokens"]


#: The choices of --model.head and --model.std.
HEADS, STDS, LOC_INPUTS = get_args(Head), get_args(Std), get_args(LocInputs)

#: Ranges of the model settings (flags --model.*).
MODEL_RULES = {"d_model": AT_LEAST_ONE, "n_layers": AT_LEAST_ONE, "n_heads": AT_LEAST_ONE,
               "mlp_ratio": AT_LEAST_ONE, "dropout": FRACTION, "hidden": AT_LEAST_ONE,
               "mlp_layers": Rule(lo=0, integer=True), "loc_layers": Rule(lo=0, integer=True),
               "obs_history": AT_LEAST_ONE}


#: The ordered head's own settings (field -> flag): a model without an ordered head ignores
#: them (``hidden`` is also the MLP baselines' width).
LOCATION_SETTINGS = {"loc_layers": "--model.loc-layers", "loc_inputs": "--model.loc-inputs",
                     "hidden": "--model.hidden"}


def given_settings(model: ModelConfig, names: Iterable[str]) -> list[str]:
    """The fields among ``names`` that ``model`` sets away from their defaults."""
    return [name for name in names if getattr(model, name) != getattr(ModelConfig, name)]


def refuse_location_settings(names: list[str], why: str, runs: str = "this run") -> None:
    """Raise the one-line InvalidValueError for location settings ``names`` (fields of
    :data:`LOCATION_SETTINGS`) that ``runs`` would ignore, saying ``why``; nothing if empty."""
    if not names:
        return
    them = "it" if len(names) == 1 else "them"
    raise InvalidValueError(
        f"{', '.join(LOCATION_SETTINGS[n] for n in names)} set{'s' if len(names) == 1 else ''} "
        f"the ordered output head's location; {why}, so {runs} would ignore {them}: "
        f"leave {them} out")


def check_model_config(model: ModelConfig) -> None:
    """Raise InvalidValueError (naming the --model.* flag) unless every setting is in range,
    n_heads divides d_model, std is 'state' or 'fixed', and the ordered head's location
    settings are not given with ``head = "plain"`` (which has no location to set)."""
    check_config(model, MODEL_RULES, prefix="model.")
    if model.head == "plain":
        refuse_location_settings(given_settings(model, ("loc_layers", "loc_inputs")),
                                 "--model.head plain has none", runs="every run")
    check_all([(model.d_model % model.n_heads == 0,
                f"--model.d-model ({model.d_model}) must be divisible by --model.n-heads "
                f"({model.n_heads})"),
               (model.std in STDS,
                f"--model.std must be 'state' or 'fixed', got {model.std!r}"),
               (model.head in HEADS,
                f"--model.head must be one of {', '.join(HEADS)}, got {model.head!r}"),
               (model.loc_inputs in LOC_INPUTS,
                f"--model.loc-inputs must be one of {', '.join(LOC_INPUTS)}, "
                f"got {model.loc_inputs!r}")])


def build_policy(kind: str, model: ModelConfig, obs_dim: int, act_dim: int,
                 tokenizer: Any = None, obs_encoder: str | dict | None = None) -> nn.Module:
    """A freshly initialised policy module (seed torch first for reproducible weights).

    ``obs_encoder`` (e.g. ``"qrp:k=16,bits=2"``) puts a fixed quantized-projection encoder in
    front of it (:mod:`qbc.policy.obs_encoder`)."""
    meta = POLICY_KINDS.meta(check_policy_kind(kind))
    builder, uses_tokens = meta["build"], meta["tokens"]
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
    entry = POLICY_KINDS.entry(kind)
    klass, cfg_type = entry.value, entry.meta["config"]
    config = dict(config)
    encoder = config.pop("obs_encoder", None)
    check_field_types(cfg_type, config, "the model settings")  # a stored "x" for a size
    _check_stored_settings(config)
    if encoder is None:
        return klass(cfg_type(**config))
    obs_dim = encoder["obs_dim"]
    return wrap_with_encoder(lambda n_in: klass(cfg_type(**{**config, "obs_dim": n_in})),
                             encoder, obs_dim)


def _check_stored_settings(config: dict[str, Any]) -> None:
    """Stored module settings that the weights' shapes do not pin down, checked as a build
    from flags checks them: no negative size, n_heads >= 1 dividing d_model, dropout in [0, 1).
    (A checkpoint with n_heads -1 loaded and failed at its first action.)"""
    negative = [k for k, v in config.items() if type(v) is int and v < 0]
    heads, width, dropout = (config.get(k) for k in ("n_heads", "d_model", "dropout"))
    check_all([(not negative, f"setting {negative[0]!r} is negative" if negative else ""),
               (heads is None or (heads >= 1 and (width is None or width % heads == 0)),
                f"n_heads {heads} must be >= 1 and divide d_model {width}"),
               (dropout is None or 0 <= dropout < 1, f"dropout {dropout} is not in [0, 1)")])


def rough_parameter_count(kind: str, model: ModelConfig, act_dim: int, vocab: int = 0) -> int:
    """A lower bound on the parameters of policy ``kind`` from the settings alone (its largest
    weight matrices, one per layer made), whatever the observations: sizes far beyond memory
    are refused with it before any module is made, since even on torch's 'meta' device making
    10^9 layers or a 10^20-wide matrix hangs or overflows."""
    return POLICY_KINDS.meta(check_policy_kind(kind))["size"](model, act_dim, vocab)
