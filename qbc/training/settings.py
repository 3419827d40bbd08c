"""Which of ``qbc train``'s settings apply to a run: a setting given away from its default that
the run would ignore (a token setting with a continuous policy, the output head's with another
policy kind, a range setting with a quantizer without a fitted range, ...) is refused in one line
instead of being recorded as applied."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from qbc.errors import InvalidValueError
from qbc.infra.validate import check_all
from qbc.policy import ModelConfig, needs_tokenizer
from qbc.policy.registry import (
    LOCATION_SETTINGS,
    POLICY_KINDS,
    check_model_settings_read,
    given_settings,
    refuse_location_settings,
)
from qbc.quantizers import check_bins_flag, get_quantizer_class, quantile_params

if TYPE_CHECKING:  # annotations only: the config module imports this one
    from qbc.training.config import TrainConfig


#: Settings only token policies read (field -> flag); a policy without a tokenizer ignores them.
TOKEN_SETTINGS = {"quantizer": "--quantizer", "bins": "--bins", "per_dim": "--no-per-dim",
                  "quantile": "--quantile", "range_margin": "--range-margin",
                  "token_target": "--token-target", "target_sigma": "--target-sigma"}
#: Settings only --augment model reads.
AUGMENT_SETTINGS = {"transition_steps": "--transition-steps",
                    "transition_head": "--transition-head", "transition_bins": "--transition-bins"}
#: Model settings of the ar-transformer's output head alone (field -> flag).
HEAD_SETTINGS = {"head": "--model.head", "loc_layers": "--model.loc-layers",
                 "loc_inputs": "--model.loc-inputs"}
#: Every flag above, as spelled on the command line: what a caller that trains several kinds
#: with one set of flags leaves out of a continuous policy's.
TOKEN_FLAGS = (*TOKEN_SETTINGS.values(), "--per-dim", *HEAD_SETTINGS.values())


def check_settings_apply(cfg: TrainConfig) -> None:
    """Refuse (one-line InvalidValueError) a setting given away from its default that this run
    would ignore: token settings with a continuous policy, the output head's settings
    (``--model.head``, ``--model.loc-layers``) with a policy other than the ar-transformer,
    ``--quantile`` / ``--range-margin`` with a quantizer without a fitted range,
    ``--target-sigma`` with a stochastic or joint quantizer or with ``--token-target``,
    ``--token-target`` with a joint one (``sampled`` with a deterministic one), a
    ``--model.*`` setting the policy kind does not read, the transition model's settings
    without ``--augment model``, and ``--select-episodes`` without ``--select-by rollout``.
    A setting equal to its default changes nothing and passes."""
    given = _given(cfg)
    head_flags = [HEAD_SETTINGS[k] for k in given_settings(cfg.model, HEAD_SETTINGS)]
    if not needs_tokenizer(cfg.policy):
        _refuse_token_settings(cfg, given, head_flags)
    else:
        _check_token_settings(cfg, given, head_flags)
    check_model_settings_read(cfg.policy, cfg.model)
    check_head_settings(cfg)
    _check_run_settings(cfg, given)


def _refuse_token_settings(cfg: TrainConfig, given: set[str], head_flags: list[str]) -> None:
    """A continuous policy has no action tokens: any token setting in ``given`` (the fields
    set away from their defaults) or output head flag in ``head_flags`` is refused."""
    flags = [TOKEN_SETTINGS[k] for k in TOKEN_SETTINGS if k in given] + head_flags
    if flags:
        raise InvalidValueError(
            f"{', '.join(flags)} set{'s' if len(flags) == 1 else ''} the action tokens, "
            f"which --policy {cfg.policy} does not have (it regresses continuous actions) "
            f"and would ignore: leave {'it' if len(flags) == 1 else 'them'} out or train a "
            f"token policy ({', '.join(POLICY_KINDS.names(tokens=True, chunk=False))})")


def _check_token_settings(cfg: TrainConfig, given: set[str], head_flags: list[str]) -> None:
    """A token policy's settings that it would ignore: head flags without an output head to
    set, a range's parameters without a fitted range, and target settings the quantizer (or
    each other) rules out."""
    if head_flags and not POLICY_KINDS.meta(cfg.policy)["head"]:
        owner = " or ".join(POLICY_KINDS.names(head=True, chunk=False))
        raise InvalidValueError(
            f"{head_flags[0]} sets the {owner}'s output head; --policy {cfg.policy} "
            f"would ignore it: leave it out or use --policy {owner}")
    quantile_params(cfg.quantizer, cfg.quantile, cfg.range_margin)
    check_bins_flag(cfg.quantizer, cfg.bins)
    klass = get_quantizer_class(cfg.quantizer)
    why = ("stochastic: its targets are two-hot already" if klass.stochastic
           else "joint: its tokens have no order")
    check_all([(not cfg.target_sigma or not (klass.stochastic or klass.joint),
                f"--target-sigma spreads one-hot targets over neighbouring bins of a "
                f"deterministic per-dimension quantizer; --quantizer {cfg.quantizer} "
                f"({why}) "
                "would ignore it: leave --target-sigma out or use uniform, kmeans or "
                "lloyd_max"),
               ("token_target" not in given or not klass.joint,
                f"--token-target chooses how the targets spread over ordered bins; "
                f"--quantizer {cfg.quantizer} (joint: its tokens have no order) is trained "
                "on one-hot tokens and would ignore it: leave --token-target out"),
               (cfg.token_target != "sampled" or klass.stochastic,
                f"--token-target sampled draws the tokens of a stochastic quantizer "
                f"(smooth); --quantizer {cfg.quantizer} is deterministic: use "
                "--token-target one-hot"),
               ("token_target" not in given or not cfg.target_sigma,
                "--target-sigma replaces the --token-target targets with Gaussian ones: "
                "give one of the two")])


def _check_run_settings(cfg: TrainConfig, given: set[str]) -> None:
    """Settings of parts of the run that it does not have: the transition model without
    ``--augment model``, the rollouts of rollout selection without it, checkpoint selection
    or early stopping without held-out episodes, and a weight average of STE-quantized
    weights."""
    unused = [AUGMENT_SETTINGS[k] for k in AUGMENT_SETTINGS if k in given]
    check_all([(cfg.augment == "model" or not unused,
                f"{', '.join(unused)} set{'s' if len(unused) == 1 else ''} the transition model "
                "of --augment model, which this run does not train and would ignore "
                f"{'it' if len(unused) == 1 else 'them'}: add --augment model or leave "
                f"{'it' if len(unused) == 1 else 'them'} out"),
               (cfg.select_by == "rollout" or "select_episodes" not in given,
                "--select-episodes sets the rollouts of --select-by rollout; this run selects "
                f"by {cfg.select_by} and would ignore it: add --select-by rollout or leave "
                "--select-episodes out"),
               (cfg.val_fraction > 0 or not ({"select_by", "select_episodes"} & given
                                             or cfg.patience),
                "--select-by and --patience choose among the checkpoints evaluated on held-out "
                "episodes; --val-fraction 0 holds out none (best/ is the last checkpoint) and "
                "would ignore them: give a --val-fraction > 0 or leave them out"),
               (not (cfg.ema_decay and cfg.weight_quantizer),
                "--ema-decay averages the weights, but --weight-quantizer anneals quantizers "
                "that live in the trained weights (an average would keep stale ones): leave "
                "one of them out")])


def check_head_settings(cfg: TrainConfig, act_dim: int | None = None) -> None:
    """Refuse (one-line InvalidValueError) the ordered head's settings (``--model.loc-layers``,
    ``--model.loc-inputs``, ``--model.hidden``) given away from their defaults when the
    ar-transformer of this run builds no ordered head, or ``--model.hidden`` without a location
    MLP. ``act_dim``: the action dimension, once known (the dataset's, the env's): a joint
    quantizer (vq) on actions of more than one dimension has one token per action and no
    ordered head. Without it only what the settings alone decide is checked."""
    if not (needs_tokenizer(cfg.policy) and POLICY_KINDS.meta(cfg.policy)["head"]):
        return
    refuse_location_settings(*unused_location_settings(cfg.model, cfg.quantizer, act_dim))


def unused_location_settings(model: ModelConfig, quantizer: str, act_dim: int | None
                             ) -> tuple[list[str], str]:
    """The ordered head's settings of ``model`` away from their defaults that an ar-transformer
    trained with ``quantizer`` on actions of ``act_dim`` dimensions (None: not known yet)
    ignores, and why: all of them without an ordered head, ``hidden`` without a location MLP."""
    given = given_settings(model, LOCATION_SETTINGS)
    if model.head != "ordered":
        return given, "--model.head plain has none"
    if get_quantizer_class(quantizer).joint and act_dim is not None and act_dim > 1:
        return given, (f"--quantizer {quantizer} is joint (one token for all {act_dim} action "
                       "dimensions, no ordered bins)")
    if "hidden" in given and model.loc_layers == 0:
        return ["hidden"], ("--model.hidden is the width of its MLP and --model.loc-layers 0 "
                            "has none (give --model.loc-layers >= 1)")
    return [], ""


def model_with_used_location(kind: str, model: ModelConfig, quantizer: str, act_dim: int
                             ) -> ModelConfig:
    """``model`` with the ordered head's settings a policy of ``kind`` with an ordered head
    would ignore (see :func:`unused_location_settings`) back at their defaults: what a caller
    that trains several quantizers with one set of model settings (a sweep's cells) passes to
    each. Other kinds get ``model`` unchanged."""
    if not (needs_tokenizer(kind) and POLICY_KINDS.meta(kind)["head"]):
        return model
    unused, _ = unused_location_settings(model, quantizer, act_dim)
    return dataclasses.replace(model, **{k: getattr(ModelConfig, k) for k in unused})


def _given(cfg: TrainConfig) -> set[str]:
    """The fields of ``cfg`` that differ from their defaults."""
    return {f.name for f in dataclasses.fields(cfg)
            if f.default is not dataclasses.MISSING and getattr(cfg, f.name) != f.default}
