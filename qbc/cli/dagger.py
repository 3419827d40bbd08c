"""``qbc dagger``: :func:`qbc.dagger.run_dagger` (its config, :class:`qbc.dagger.DaggerConfig`,
is the command's) and a one-screen summary of the rounds."""

from __future__ import annotations

from typing import Any

from qbc.cli import Command
from qbc.dagger import DaggerConfig, run_dagger
from qbc.dagger_files import read_timing


def run_dagger_command(cfg: DaggerConfig) -> list[dict[str, Any]]:
    """Run (or continue) DAgger, then print rounds.csv as a table and the last round's time."""
    rows = run_dagger(cfg)
    print(format_summary(cfg, rows, read_timing(cfg.out)))
    return rows


def format_summary(cfg: DaggerConfig, rows: list[dict[str, Any]],
                   timing: list[dict[str, Any]]) -> str:
    """The rounds as a table: beta, expert labels so far, val log-loss, regret, divergence."""
    lines = [f"DAgger on {cfg.env} with expert {cfg.expert} ({cfg.policy}, {cfg.quantizer}/"
             f"{cfg.bins}, beta {cfg.beta}, init {cfg.init}); coupled rollouts: "
             f"{cfg.eval_episodes} episodes from seed {cfg.eval_seed}",
             f"{'round':>5}{'beta':>7}{'labels':>9}{'val loss':>10}{'regret':>11}"
             f"{'95% CI':>22}{'diverged':>9}"]
    for r in rows:
        val = "-" if r["val_loss"] is None else f"{r['val_loss']:.4g}"
        ci = f"[{r['regret_ci_lo']:.3g}, {r['regret_ci_hi']:.3g}]"
        lines.append(f"{r['round']:>5}{r['beta']:>7.3g}{r['expert_labels']:>9}{val:>10}"
                     f"{r['regret']:>11.4g}{ci:>22}{r['diverged_fraction']:>9.0%}")
    if timing:
        t = timing[-1]
        lines.append(f"round {t['round']} wall time: rollout + labelling "
                     f"{t['rollout_label_s']:.2f} s, dataset write {t['dataset_write_s']:.2f} s,"
                     f" training {t['train_s']:.2f} s, evaluation {t['eval_s']:.2f} s "
                     f"({t['outside_training_fraction']:.1%} of rollout+write+training outside "
                     "training)")
    lines.append(f"rounds.csv, timing.csv and round-<r>/ run folders in {cfg.out}")
    return "\n".join(lines)


COMMAND = Command(DaggerConfig, run_dagger_command,
                  "DAgger: expert/learner mixture rollouts, expert labels, aggregate, retrain")
