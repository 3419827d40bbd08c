"""The transition model of model-based deployment (``qbc train --augment model``), trained on
the policy's training episodes with the policy's tokenizer (:mod:`qbc.rollout.augment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qbc.errors import InvalidValueError
from qbc.policy import Policy
from qbc.rollout.augment import (
    TransitionModelConfig,
    fit_transition_model,
    save_transition_model,
)
from qbc.training.config import TrainConfig
from qbc.training.data import split_demos


def train_transition_model(cfg: TrainConfig, demos: Any, policy: Policy) -> Path:
    """Fit the transition model of model-based deployment on the training episodes (the same
    split as the policy's) with the policy's tokenizer; save it in ``cfg.out / "transition"``."""
    if policy.tokenizer is None:
        raise InvalidValueError(f"--augment model needs a token policy, not {cfg.policy!r}")
    train_demos, _ = split_demos(demos, cfg.val_fraction, cfg.seed)
    model = fit_transition_model(train_demos.observations, train_demos.actions,
                                 train_demos.next_observations, policy.tokenizer,
                                 TransitionModelConfig(steps=cfg.transition_steps, seed=cfg.seed,
                                                       head=cfg.transition_head,
                                                       state_bins=cfg.transition_bins),
                                 progress=cfg.progress)
    return save_transition_model(model, cfg.out / "transition")
