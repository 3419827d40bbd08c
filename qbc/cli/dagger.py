"""``qbc dagger``: :func:`qbc.interactive.dagger.run_dagger` and a one-screen summary of the rounds.

The flags are :class:`qbc.interactive.dagger.DaggerConfig`'s; the two that the library takes as
dicts
(``--expert-params`` with ``--expert-path``, ``--train-overrides``) are given as KEY=VALUE pairs
or JSON objects (:mod:`qbc.cli.flag_types`) and parsed here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.cli import Command
from qbc.cli.config_file import ConfigFile, key_values_as_flags
from qbc.cli.flag_types import KeyValues, expert_params, key_values
from qbc.data.expert_choice import default_expert_line, unnamed_expert
from qbc.interactive.dagger import DaggerConfig, run_dagger
from qbc.interactive.rounds import DaggerRound
from qbc.interactive.run_files import CONFIG_NAME, read_timing
from qbc.rollout.growth import floor_verdict


@dataclass
class DaggerArgs(DaggerConfig):
    """The flags of ``qbc dagger``: :class:`DaggerConfig`'s settings, with the dict ones given as
    KEY=VALUE pairs or JSON objects (``--expert-params``, ``--train-overrides``) and
    ``--expert-path`` apart."""

    expert_path: str | None = None
    """the expert's model: an SB3 zip (sb3) or an actor folder (actor)."""
    expert_params: KeyValues = ()  # type: ignore[assignment]  (the flag's text; a dict below)
    """extra expert parameters as KEY=VALUE pairs (algo=td3) or a JSON object."""
    train_overrides: KeyValues = ()  # type: ignore[assignment]
    """any other `qbc train` setting as KEY=VALUE pairs (warmup_steps=50) or a JSON object."""


def dagger_config(args: DaggerArgs) -> DaggerConfig:
    """The flags as the library's typed settings (the dict flags parsed)."""
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(DaggerConfig)}
    return DaggerConfig(**{**settings,
                           "train_overrides": key_values(args.train_overrides, "--train-overrides"),
                           "expert_params": expert_params(args.expert_params, args.expert_path)})


def run_dagger_command(args: DaggerArgs) -> list[DaggerRound]:
    """Run (or continue) DAgger, then print rounds.csv as a table and the last round's time."""
    cfg = dagger_config(args)
    rows = run_dagger(cfg)
    # after the run, on stdout: a refused run's stderr holds its error line alone
    if cfg.expert is None and "path" not in cfg.expert_params and (
            line := default_expert_line("dagger", cfg.env)):
        print(line)
    print(format_summary(cfg, rows, read_timing(cfg.out)))
    return rows


def format_summary(cfg: DaggerConfig, rows: list[DaggerRound],
                   timing: list[dict[str, Any]]) -> str:
    """The rounds as a table: beta, expert labels so far, val log-loss, regret, divergence, and
    the success rate where the env reports one."""
    expert = cfg.expert or unnamed_expert(cfg.env, cfg.expert_params)  # as run_dagger chose
    lines = [f"DAgger on {cfg.env} with expert {expert} ({cfg.policy}, {cfg.quantizer}/"
             f"{cfg.bins}, beta {cfg.beta}, init {cfg.init}); coupled rollouts: "
             f"{cfg.eval_episodes} episodes from seed {cfg.eval_seed}",
             f"{'round':>5}{'beta':>7}{'labels':>9}{'val loss':>10}{'regret':>11}"
             f"{'95% CI':>22}{'diverged':>9}{'floor':>9}{'floor div':>10}"
             + (f"{'success [95% CI]':>24}" if any(r.success is not None for r in rows)
                else "")]
    for r in rows:
        val = "-" if r.val_loss is None else f"{r.val_loss:.4g}"
        ci = f"[{r.regret_ci_lo:.3g}, {r.regret_ci_hi:.3g}]"
        floor = (f"{r.floor_regret:>9.4g}{r.floor_diverged_fraction:>10.0%}"
                 if r.floor_regret is not None else f"{'-':>9}{'-':>10}")
        success = (f"{r.success:.0%} [{r.success_ci_lo:.0%}, {r.success_ci_hi:.0%}]"
                   if r.success is not None else "")
        lines.append(f"{r.round:>5}{r.beta:>7.3g}{r.expert_labels:>9}{val:>10}"
                     f"{r.regret:>11.4g}{ci:>22}{r.diverged_fraction:>9.0%}{floor}"
                     f"{success:>24}".rstrip())
    verdict = last_round_verdict(rows)
    if verdict is not None:
        lines.append(f"round {rows[-1].round}: {verdict['text']}")
    if timing:
        t = timing[-1]
        lines.append(f"round {t['round']} wall time: rollout + labelling "
                     f"{t['rollout_label_s']:.2f} s, dataset write {t['dataset_write_s']:.2f} s,"
                     f" training {t['train_s']:.2f} s, evaluation {t['eval_s']:.2f} s "
                     f"({t['outside_training_fraction']:.1%} of rollout+write+training outside "
                     "training)")
    lines.append(f"rounds.csv, timing.csv and round-<r>/ run folders in {cfg.out}")
    return "\n".join(lines)


def last_round_verdict(rows: list[DaggerRound]) -> dict[str, Any] | None:
    """:func:`qbc.rollout.growth.floor_verdict` of the last round against its floor (None for a
    continuous policy or rows written before the floor was measured)."""
    last = rows[-1] if rows else None
    if last is None or last.floor_regret is None or last.expert_return is None:
        return None

    return floor_verdict({"regret": last.regret, "failed": last.diverged_fraction},
                         {"regret": last.floor_regret,
                          "failed": last.floor_diverged_fraction}, last.expert_return,
                         {"command": "dagger"})


def saved_run_settings(values: dict[str, Any], path: Path) -> dict[str, Any]:
    """The settings of ``--config FILE`` as ``qbc dagger`` takes them: the dict settings as
    flags (:func:`~qbc.cli.config_file.key_values_as_flags`), and a run's own
    ``dagger_config.json`` without its dataset base, which belongs to that run's folder (a new
    --out gets its own; the same --out continues with the stored one)."""
    values = key_values_as_flags("expert_params", "train_overrides")(values, path)
    if path.name == CONFIG_NAME:
        values = {k: v for k, v in values.items() if k != "dataset_base"}
    return values


#: ``--config FILE``: a run's dagger_config.json or a TOML file of DaggerConfig's fields.
CONFIG_FILE = ConfigFile(
    per_run=frozenset({"overwrite"}), saved="runs/dagger/dagger_config.json",
    adjust=saved_run_settings,
    help="start from the settings in FILE: a run's dagger_config.json (the same settings: with "
         "its --out it continues that run, with another --out it runs them again there) or a "
         "TOML file of the same fields ([model] table for --model.*, [train_overrides] and "
         "[expert_params] tables); flags given on the command line override them. The file's "
         "overwrite is not read.")

COMMAND = Command(DaggerArgs, run_dagger_command,
                  "DAgger: expert/learner mixture rollouts, expert labels, aggregate, retrain",
                  config_file=CONFIG_FILE)
