"""A whole ``qbc train`` run from a dataset id: check the settings, load the demonstrations,
train, then (rank 0) the transition model and the closing rollout, and ``summary.json``."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

from qbc.data import load_demonstrations
from qbc.errors import QbcWarning
from qbc.infra.files import atomic_write_json
from qbc.training.checkpoint import ClaimedRun, claimed_run
from qbc.training.closing_rollout import ClosingRollout
from qbc.training.config import TrainConfig, validate_config
from qbc.training.evaluation import rollout_evaluation
from qbc.training.loop import TrainResult, train_in
from qbc.training.run_log import record_scalars
from qbc.training.transition import train_transition_model


@dataclass
class TrainSummary:
    """What a ``qbc train`` run did (:func:`run_train`); :meth:`to_json` is its ``summary.json``.

    The fields after ``checkpoint`` are rank 0's (None on the other ranks of a torchrun run, and
    where they do not apply): they are left out of the JSON when None."""

    policy: str
    """the policy kind (--policy)."""
    dataset: str
    """the Minari dataset id trained on."""
    steps: int
    """optimisation steps taken (fewer than the budget when early stopping ended the run)."""
    final_train_loss: float
    """training loss of the last step."""
    best_val_loss: float | None
    """validation loss of the best checkpoint (None without validation episodes)."""
    best_step: int
    """step of the best checkpoint (best/)."""
    train_samples_per_s: float
    """training samples a second, optimisation time alone."""
    seconds: dict[str, float]
    """wall time by part: 'train', 'validation', 'checkpoints'."""
    budget: dict[str, Any]
    """the step budget: 'from' ('--steps' or '--epochs'), 'epochs', 'steps', 'patience',
    'stopped_early', 'select_by'."""
    checkpoint: str
    """the best checkpoint's folder (out/best)."""
    tokenizer: dict[str, Any] | None = None
    """token policies: 'quantizer', 'vocab' (tokens per position), 'n_tokens' (per action)."""
    transition_model: str | None = None
    """with --augment model: the transition model's folder (out/transition)."""
    rollout: ClosingRollout | None = None
    """the closing rollout (:func:`qbc.training.evaluation.rollout_evaluation`): learner vs
    expert on the same seeds, regret, floor and verdict."""
    rollout_skipped: bool = False
    """the closing rollout was asked for but the dataset's env cannot be made here
    (summary.json: ``"rollout": null``)."""
    run_logs: list[str] | None = None
    """the run logs written beside metrics.jsonl ('tensorboard', 'wandb')."""

    def to_json(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it: the fields in order, the optional ones
        only when set (``rollout`` as null when it was skipped)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "rollout_skipped"}
        if self.rollout is not None:
            out["rollout"] = self.rollout.to_json()
        for name in ("tokenizer", "transition_model", "run_logs"):
            if out[name] is None:
                del out[name]
        if self.rollout is None and not self.rollout_skipped:
            del out["rollout"]
        return out


def run_train(cfg: TrainConfig) -> TrainSummary:
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
           claimed: ClaimedRun) -> TrainSummary:
    """The summary of a trained run (rank 0: with the transition model and the closing
    rollout, written to ``summary.json`` in the run folder, the rollout also to the run
    log)."""
    summary = TrainSummary(
        policy=cfg.policy, dataset=cfg.dataset, steps=result.step,
        final_train_loss=result.final_train_loss, best_val_loss=result.best_val_loss,
        best_step=result.best_step, train_samples_per_s=result.samples_per_s,
        seconds=result.seconds, budget=result.budget, checkpoint=str(cfg.out / "best"))
    work, run_log = claimed.work, claimed.run_log
    if not claimed.ctx.is_main:
        return summary
    tokenizer = result.policy.tokenizer
    if tokenizer is not None:
        summary.tokenizer = {"quantizer": cfg.quantizer, "vocab": tokenizer.vocab_size,
                             "n_tokens": tokenizer.n_tokens}
    if cfg.augment == "model":
        train_transition_model(dataclasses.replace(cfg, out=work), demos, result.policy)
        summary.transition_model = str(cfg.out / "transition")
    if cfg.rollout_episodes > 0:
        r = rollout_evaluation(result.policy, demos, cfg.rollout_episodes, cfg.rollout_horizon,
                               cfg.rollout_seed, progress=cfg.progress,
                               training={**result.budget, "best_step": result.best_step})
        summary.rollout, summary.rollout_skipped = r, r is None
        if r and r.horizon_capped:
            warnings.warn(r.horizon_capped, QbcWarning, stacklevel=2)
        if r and run_log is not None:
            run_log.scalars(record_scalars(r.to_json(), "rollout"), result.step)
    summary.run_logs = run_log.writing if run_log is not None else []
    atomic_write_json(work / "summary.json", summary.to_json())
    return summary
