"""``qbc train``: train a behavior-cloning policy (:func:`qbc.training.run_train`) and print its
summary: the step budget, losses, where the checkpoint is, and the closing rollout.

Its flags are the fields of :class:`qbc.training.TrainConfig`. Under torchrun
(``torchrun --nproc-per-node N -m qbc.cli train ...``) every rank trains and rank 0 alone prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qbc.cli import Command
from qbc.cli.config_file import ConfigFile
from qbc.infra.files import read_json_object
from qbc.training import TrainConfig, TrainSummary, run_train
from qbc.training.closing_rollout import ClosingRollout
from qbc.training.distributed import main_process


def run(cfg: TrainConfig) -> TrainSummary:
    """:func:`qbc.training.run_train`, its summary printed by rank 0."""
    summary = run_train(cfg)
    if main_process():
        print(format_summary(summary))
    return summary


def format_summary(s: TrainSummary) -> str:
    """The summary of a run in a few lines."""
    val = "-" if s.best_val_loss is None else f"{s.best_val_loss:.4g}"
    sec = s.seconds
    lines = [f"trained {s.policy} on {s.dataset}: {s.steps} steps, "
             f"{s.train_samples_per_s:.0f} samples/s (training alone: "
             f"{sec.get('train', 0):.1f} s; validation {sec.get('validation', 0):.1f} s and "
             f"checkpoints {sec.get('checkpoints', 0):.1f} s not counted)",
             f"  final train loss {s.final_train_loss:.4g}; best/ at step {s.best_step}, "
             f"its val loss {val}",
             budget_line(s.budget),
             f"  checkpoint: {s.checkpoint}"]
    r = s.rollout
    if r:
        lines.append(rollout_line(r))
        if r.verdict:
            lines.append("  " + r.verdict["text"])
    elif s.rollout_skipped:
        lines.append("  rollouts skipped: the dataset's env id cannot be made here")
    return "\n".join(lines)


def budget_line(b: dict[str, Any]) -> str:
    """Where the step budget came from and whether early stopping ended the run."""
    if not b:
        return "  budget: -"
    origin = ("--steps" if b["from"] == "--steps"
              else f"{b['epochs']:g} epochs of the training split")
    watched = ("validation action error" if b.get("select_by") == "action-mse"
               else "validation loss")
    stop = (f"stopped early: no lower {watched} in {b['patience']} evaluations"
            if b["stopped_early"] else
            f"early stopping after {b['patience']} evaluations without improvement"
            if b["patience"] else "no early stopping")
    return (f"  budget: {b['steps']} steps ({origin}); {stop}; best checkpoint by "
            f"{b['select_by']}")


def rollout_line(r: ClosingRollout) -> str:
    """The closing rollout in words: learner vs expert on the same seeds, returns over the
    full horizon, failed (terminated or diverged) episodes as a fraction."""
    head = (f"  coupled rollouts, {r.episodes} episodes x {r.horizon} steps on "
            f"{r.env_id} (seeds {r.first_seed}..{r.first_seed + r.episodes - 1}): ")
    p = r.actors["policy"]
    policy = (f"policy return {p.mean_return:.4g} "
              f"({p.reward_per_step:.4g}/step over all {r.horizon} steps), "
              f"{p.failed_fraction:.0%} of episodes "
              "failed (terminated or diverged)")
    if r.expert is None:
        return (head + policy + f"; not compared with an expert: {r.no_expert}"
                + outcome_text(r, "policy"))
    lo, hi = r.regret_ci95
    e = r.actors["expert"]
    return (head + policy + f"; expert {r.expert} on the same seeds "
            f"{e.mean_return:.4g} ({e.reward_per_step:.4g}/step), "
            f"{e.failed_fraction:.0%} failed; regret {r.regret:.4g} "
            f"[95% CI {lo:.3g}, {hi:.3g}]"
            + ("" if r.floor_regret is None else
               f"; the quantized expert (deterministic encoding: the floor of argmax "
               f"decoding) {r.floor_regret:.4g}, "
               f"{r.actors['quantized_expert'].failed_fraction:.0%} failed")
            + _stochastic_floor_text(r) + outcome_text(r, "policy", "expert"))


def _stochastic_floor_text(r: ClosingRollout) -> str:
    """'; the stochastic q#π* ...' for a smooth tokenizer's closing rollout; '' otherwise."""
    q = r.actors.get("quantized_expert_stochastic")
    if q is None:
        return ""
    return (f"; the stochastic q#π* (stochastic rounding: the theory's quantized expert, the "
            f"floor of sampled decoding) {q.regret:.4g}, {q.failed_fraction:.0%} failed")


def outcome_text(r: ClosingRollout, *names: str) -> str:
    """'; success policy 40% [..], expert 100% [..]; modes ...' for envs that report success
    (and modes); '' otherwise."""
    text = ""
    actors = [r.actors[n] for n in names]
    if all(a.success is not None for a in actors):
        text += "; success " + ", ".join(
            f"{n} {a.success:.0%} [95% CI {a.success_ci95[0]:.0%}, {a.success_ci95[1]:.0%}]"
            for n, a in zip(names, actors, strict=True))
    if all(a.modes is not None for a in actors):
        text += "; modes (left/right/none) " + ", ".join(
            f"{n} {a.modes['left']:.0%}/{a.modes['right']:.0%}/{a.modes['none']:.0%}"
            for n, a in zip(names, actors, strict=True))
    return text


def budget_as_given(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """A run's saved settings (``train_config.json``) with ``steps`` as the run was given it: a
    run records the budget it resolved, and when its ``summary.json`` says that the budget came
    from --epochs, ``steps`` is left out so that it is derived again (same data, same steps)
    and early stopping waits for the same minimum as before."""
    summary = path.parent / "summary.json"
    if "dataset_sha256" not in values or not summary.is_file():
        return values
    budget = read_json_object(summary, "summary").get("budget")
    if isinstance(budget, dict) and budget.get("from") == "--epochs":
        return {k: v for k, v in values.items() if k != "steps"}
    return values


#: ``--config FILE``: a run's train_config.json or a TOML file of TrainConfig's fields.
CONFIG_FILE = ConfigFile(
    record_keys=frozenset({"dataset_sha256", "run_id", "resolved_device", "world_size"}),
    per_run=frozenset({"resume", "overwrite"}), adjust=budget_as_given,
    help="start from the settings in FILE: a run's train_config.json (reproduces that run) or "
         "a TOML file of the same fields ([model] table for --model.*); flags given on the "
         "command line override them. The file's resume and overwrite are not read: give --out "
         "(or --overwrite) here.")

TRAIN_COMMAND = Command(TrainConfig, run, "train a BC policy (AR transformer or a baseline)",
                        config_file=CONFIG_FILE)
