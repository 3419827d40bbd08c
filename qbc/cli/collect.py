"""``qbc collect``: roll an expert out and save the episodes as a Minari dataset.

The flags are parsed into a typed :class:`qbc.data.collect.CollectConfig` (``--expert-params``
KEY=VALUE pairs or JSON and ``--expert-path`` into ``expert_params``, ``--dart SIGMA | auto``
into ``dart_sigma`` / ``dart_policy``) and :func:`qbc.data.collect.collect` does the work; this
module prints the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qbc.cli import Command
from qbc.cli.flag_types import KeyValues, expert_params
from qbc.data.collect import CollectConfig, Collected, collect
from qbc.data.expert_choice import default_expert, default_expert_line
from qbc.errors import InvalidValueError
from qbc.rollout.metrics import mode_fractions, proportion_ci95


@dataclass
class CollectArgs:
    """Roll an expert out in a Gymnasium env and save the episodes as a Minari dataset (HDF5)."""

    env: str
    """Gymnasium env id, e.g. qbc/LinearUnstable-v0 or Pendulum-v1."""
    dataset: str
    """Minari dataset id to create, '(namespace/)name-vN', e.g. qbc/linear-unstable-lqr-v0."""
    expert: str | None = None
    """expert: lqr, linear, arctan, detour (qbc's own envs), fetch-push, fetch-pick-and-place,
    maze-planner (the Gymnasium-Robotics tasks), sb3 (--expert-path ZIP), zoo:ENV (a
    trained actor shipped with qbc, e.g. zoo:Pendulum-v1; `qbc expert list`) or actor
    (--expert-path FOLDER, an actor folder from `qbc expert train` / `qbc expert export`);
    default: zoo:ENV when the zoo has the env, the env's scripted expert for the robotics tasks
    (one line says so), else lqr."""
    episodes: int = 100
    """number of episodes to record."""
    num_envs: int = 16
    """env copies stepped together (speed only: the data does not depend on it)."""
    seed: int = 0
    """episode k is reset with seed + k."""
    expert_path: str | None = None
    """the expert's model: an SB3 zip (sb3) or an actor folder (actor)."""
    expert_params: KeyValues = ()
    """extra expert parameters as KEY=VALUE pairs (values read as JSON), e.g. algo=td3 or
    gain_scale=0.8, or as a JSON object, e.g. '{"gain_scale": 0.8}'."""
    expert_noise: float = 0.0
    """std of Gaussian noise added to the expert's actions, then clipped to the action space;
    the dataset records the noisy actions."""
    dart: str | None = None
    """DART (Laskey et al. 2017): SIGMA, the std in action units (the same for every action
    dimension) of Gaussian noise added to the executed action, while the dataset records the
    expert's clean action as the label; or 'auto' with --policy RUN: SIGMA from that trained
    policy's error on the expert's states (the DART rule). The noise comes from its own
    generator per episode (seed + k), independent of the env's process noise."""
    policy: Path | None = None
    """with --dart auto: the trained policy (run folder or checkpoint) whose error sets SIGMA."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps. A third-party env's
    time limit caps it (one warning); qbc's own envs take any length."""
    overwrite: bool = False
    """replace an existing dataset with the same id."""
    progress: bool = True
    """show progress (a bar on a terminal, a plain line every ~10 s in a log)."""


def collect_config(args: CollectArgs) -> CollectConfig:
    """The flags as the library's typed settings (expert parameters and --dart parsed,
    checked)."""
    params = expert_params(args.expert_params, args.expert_path)
    sigma, policy = parse_dart(args.dart, args.policy)
    return CollectConfig(
        env=args.env, dataset_id=args.dataset,
        expert=args.expert or default_expert(args.env)[0], expert_params=params,
        episodes=args.episodes, num_envs=args.num_envs, seed=args.seed,
        expert_noise=args.expert_noise, dart_sigma=sigma, dart_policy=policy,
        max_episode_steps=args.max_episode_steps, overwrite=args.overwrite,
        progress=args.progress)


def run_collect(args: CollectArgs) -> Collected:
    """The command: :func:`qbc.data.collect.collect`, then a short summary on stdout."""
    cfg = collect_config(args)
    done = collect(cfg)
    # after the run, on stdout: a refused run's stderr holds its error line alone
    if args.expert is None and (line := default_expert_line("collect", args.env)):
        print(line)
    print(format_summary(cfg, done))
    return done


def parse_dart(text: str | None, policy: Path | None) -> tuple[float, Path | None]:
    """``--dart`` and ``--policy`` as ``(sigma, policy to fit sigma to)``: ``(0.0, None)``
    without DART, ``(SIGMA, None)`` for a std in action units, ``(0.0, RUN)`` for 'auto'."""
    if text is None:
        if policy is not None:
            raise InvalidValueError("--policy is only used with --dart auto; drop it or add "
                                    "--dart auto")
        return 0.0, None
    if text.strip().lower() == "auto":
        if policy is None:
            raise InvalidValueError("--dart auto needs --policy RUN (a trained policy whose error "
                                    "on the expert's states sets the noise)")
        return 0.0, policy
    try:
        sigma = float(text)
    except ValueError:
        sigma = float("nan")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise InvalidValueError(f"--dart must be a finite std >= 0 in action units or 'auto', "
                                f"got {text!r}")
    if policy is not None:
        raise InvalidValueError("--policy is only used with --dart auto")
    return sigma, None


def format_summary(cfg: CollectConfig, done: Collected) -> str:
    """A few lines: episodes, steps, returns, time, where the dataset is."""
    episodes, dart = done.episodes, done.dart_sigma
    returns = np.array([float(np.sum(ep.rewards)) for ep in episodes])
    lengths = np.array([len(ep.rewards) for ep in episodes])
    ends = sum(bool(ep.terminations[-1]) for ep in episodes)
    return "\n".join([
        f"collected {len(episodes)} episodes, {int(lengths.sum())} steps of {cfg.env} with "
        f"expert {done.expert_name} (noise {cfg.expert_noise}"
        + (f", DART sigma {dart:.4g}: clean labels recorded" if dart > 0 else "") + "); rollout "
        f"{done.rollout_seconds:.2f} s with {min(cfg.num_envs, cfg.episodes)} env copies",
        f"episode length {lengths.mean():.1f} (min {lengths.min()}, max {lengths.max()}), "
        f"{ends} terminated, {len(episodes) - ends} truncated",
        f"return {returns.mean():.4g} +- {returns.std():.4g} (min {returns.min():.4g}, "
        f"max {returns.max():.4g})", *outcome_lines(done.outcomes),
        f"dataset {cfg.dataset_id} at {done.dataset.storage.data_path.parent} "
        f"(written in {done.write_seconds:.2f} s)",
    ])


def outcome_lines(outcomes: dict[str, np.ndarray]) -> list[str]:
    """The expert's success rate (95% Wilson interval) and mode coverage, for envs that report
    them (none otherwise)."""
    lines = []
    if "success" in outcomes:
        rate, lo, hi = proportion_ci95(outcomes["success"])
        lines.append(f"success {rate:.1%} [95% CI {lo:.1%}, {hi:.1%}] "
                     f"({int(outcomes['success'].sum())} of {len(outcomes['success'])})")
    if "mode" in outcomes:
        lines.append(mode_line(mode_fractions(outcomes["mode"])))
    return lines


def mode_line(fractions: dict[str, float]) -> str:
    """Mode coverage in words: left / right / none as percentages of the episodes."""
    return (f"modes: left {fractions['left']:.0%}, right {fractions['right']:.0%}, "
            f"none {fractions['none']:.0%} (the side the obstacle was passed on)")


COMMAND = Command(CollectArgs, run_collect, "roll out an expert and save a Minari dataset",
                  renamed_flags={"--dataset-id": "--dataset"})
