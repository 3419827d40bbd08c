"""A whole ``qbc train`` run from a dataset id: check the settings, load the demonstrations,
train, then (rank 0) the transition model and the closing rollout, and ``summary.json``."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from qbc.data import load_demonstrations
from qbc.errors import QbcWarning
from qbc.infra.files import atomic_write_json
from qbc.training.checkpoint import ClaimedRun, claimed_run
from qbc.training.config import TrainConfig, validate_config
from qbc.training.evaluation import rollout_evaluation
from qbc.training.loop import TrainResult, train_in
from qbc.training.run_log import record_scalars
from qbc.training.transition import train_transition_model


def run_train(cfg: TrainConfig) -> dict[str, Any]:
    """Load the dataset, train, roll the best policy out and write summary.json; returns the
    summary (the ``qbc train`` command prints it).

    Every setting is checked before the dataset is read, and the data before the run folder
    is touched. Under torchrun every rank trains; rank 0 alone does the rest (the other ranks
    return the training numbers without writing anything)."""
    validate_config(cfg)
    demos = load_demonstrations(cfg.dataset, drop_nonfinite=cfg.drop_nonfinite)
    with claimed_run(cfg, demos) as claimed:
        result = train_in(cfg, demos, claimed)
        return finish(cfg, demos, result, claimed)


def finish(cfg: TrainConfig, demos: Any, result: TrainResult,
           claimed: ClaimedRun) -> dict[str, Any]:
    """The summary of a trained run (rank 0: with the transition model and the closing
    rollout, written to ``summary.json`` in the run folder, the rollout also to the run
    log)."""
    summary: dict[str, Any] = {
        "policy": cfg.policy, "dataset": cfg.dataset, "steps": result.step,
        "final_train_loss": result.final_train_loss, "best_val_loss": result.best_val_loss,
        "best_step": result.best_step, "train_samples_per_s": result.samples_per_s,
        "seconds": result.seconds, "budget": result.budget,
        "checkpoint": str(cfg.out / "best"),
    }
    work, run_log = claimed.work, claimed.run_log
    if not claimed.ctx.is_main:
        return summary
    if result.policy.tokenizer is not None:
        summary["tokenizer"] = {"quantizer": cfg.quantizer, "vocab": result.policy.tokenizer
                                .vocab_size, "n_tokens": result.policy.tokenizer.n_tokens}
    if cfg.augment == "model":
        train_transition_model(dataclasses.replace(cfg, out=work), demos, result.policy)
        summary["transition_model"] = str(cfg.out / "transition")
    if cfg.rollout_episodes > 0:
        summary["rollout"] = rollout_evaluation(result.policy, demos, cfg.rollout_episodes,
                                                cfg.rollout_horizon, cfg.rollout_seed,
                                                progress=cfg.progress,
                                                training={**result.budget,
                                                          "best_step": result.best_step})
        if summary["rollout"] and summary["rollout"]["horizon_capped"]:
            warnings.warn(summary["rollout"]["horizon_capped"], QbcWarning, stacklevel=2)
        if summary["rollout"] and run_log is not None:
            run_log.scalars(record_scalars(summary["rollout"], "rollout"), result.step)
    summary["run_logs"] = run_log.writing if run_log is not None else []
    atomic_write_json(work / "summary.json", summary)
    return summary
