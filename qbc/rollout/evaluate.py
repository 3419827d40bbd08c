"""The evaluation protocol, once: :func:`evaluate` rolls the policy, its quantized expert(s) or
chunk floor and the expert out from the same seeds (coupled), measures regret and state
deviation per horizon, fits how regret grows with H and judges the learner against its floor;
it returns a :class:`~qbc.rollout.report.RolloutReport` (written by
:func:`~qbc.rollout.report.write_report`). ``qbc rollout`` and the experiments call it; the
runs that evaluate actors they hold in memory (training's closing rollout and checkpoint
selection, DAgger's rounds, sweeps, quickstart, certify) call it through
:func:`evaluate_actors`.

It prints nothing: progress goes through :mod:`qbc.infra.progress`, the lines a command shows
while it runs through the ``log`` callback, and warnings through :mod:`warnings`
(``QbcWarning``).

    inputs = open_inputs(cfg)                     # refuses bad settings before any output
    report = evaluate(cfg, inputs, out=folder)
    write_report(folder, report)
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.chunking.execution import execution_metrics
from qbc.errors import ClippedActionsWarning, QbcWarning
from qbc.infra.progress import Log, silent
from qbc.policy.wrapper import Policy
from qbc.rollout.coupled import (
    QuantizedExpert,
    check_coupling,
    coupled_rollout,
    coupling_line,
    floor_labels,
)
from qbc.rollout.growth import fit_growth
from qbc.rollout.inputs import EvalConfig, EvalInputs, actor_inputs, open_inputs
from qbc.rollout.metrics import horizon_metrics
from qbc.rollout.report import RolloutReport, clipped_warning, floor_ratios, learner_verdict
from qbc.rollout.video import write_rollout_videos


def evaluate(cfg: EvalConfig, inputs: EvalInputs | None = None, *, out: str | Path | None = None,
             log: Log = silent, datasets_root: str | Path | None = None) -> RolloutReport:
    """The coupled evaluation of ``cfg`` (its ``inputs`` from :func:`open_inputs`, opened here
    when not given, with ``datasets_root``; or actors already in memory, :func:`actor_inputs`):
    ``cfg.episodes`` episodes from seeds ``cfg.seed``, ``cfg.seed + 1``, ... to the largest
    horizon. ``out`` (default ``cfg.out``) is the folder the videos of ``cfg.video`` are written
    into (``out/videos``); ``log`` receives the coupling line, the expert line and the video
    paths as they happen."""
    inputs = inputs if inputs is not None else open_inputs(cfg, datasets_root)
    env_id, actors, horizons = inputs.env_id, inputs.actors, inputs.horizons
    if inputs.horizons_capped:
        warnings.warn(inputs.horizons_capped, QbcWarning, stacklevel=2)
    coupling = None
    if inputs.standalone:
        coupling = check_coupling(env_id, actors["expert"], seed=cfg.seed)
        log(coupling_line(env_id, coupling))
    choice = inputs.expert
    if choice is not None:
        log(f"expert: {choice.name}" + (f" {json.dumps(choice.params)}" if choice.params else "")
            + f" (from {choice.source})")
    seeds = np.arange(cfg.seed, cfg.seed + cfg.episodes)
    if inputs.standalone:
        seed_sampling(actors, cfg.seed)
    start = time.perf_counter()
    result = coupled_rollout(env_id, actors, seeds, horizons[-1], num_envs=cfg.num_envs,
                             env_kwargs=inputs.env_kwargs, progress=cfg.progress)
    seconds = time.perf_counter() - start
    metrics = horizon_metrics(result, horizons, reference=inputs.reference,
                              divergence_threshold=cfg.divergence_threshold)
    n_actions = sum(a.shape[0] * a.shape[1] for a in result.actions.values())
    metrics.update(env_id=env_id, coupling=coupling,
                   expert=None if choice is None else choice.to_dict(),
                   horizons_capped=inputs.horizons_capped)
    metrics["growth"] = {
        name: fit_growth(horizons, [per_h[str(h)]["regret"] for h in horizons])
        for name, per_h in metrics["policies"].items() if name != inputs.reference
    }
    metrics["timing"] = {"seconds": seconds, "actions_per_second": n_actions / seconds}
    metrics["clipped_actions"] = clipped_counts(actors, warn=inputs.standalone)
    metrics["floors"] = floor_labels(actors, cfg.decode if "policy" in actors else None)
    metrics["execution"] = execution_metrics(actors)  # chunk policies: mode, decode failures
    metrics["verdict"] = learner_verdict(metrics)
    metrics["chunk_floor"] = floor_ratios(metrics)
    if cfg.video:
        metrics["videos"] = _videos(env_id, actors, seeds[:cfg.video], horizons[-1],
                                    Path(out if out is not None else cfg.out), cfg.seed, log)
    config = {**asdict(cfg), "env": env_id, "expert_params": dict(cfg.expert_params)}
    return RolloutReport(**metrics, config=config, result=result)


def evaluate_actors(env_id: str, actors: dict[str, Any], seed: int, episodes: int,
                    horizons: Sequence[int], *, num_envs: int | None = None,
                    divergence_threshold: float = 1e3, reference: str = "expert",
                    env_kwargs: dict[str, Any] | None = None, progress: bool = False
                    ) -> RolloutReport:
    """:func:`evaluate` of actors already in memory (a run's trained policy, its quantized
    expert, a chunk floor, ...), by name, the reference (``expert``) among them: ``episodes``
    coupled episodes from seeds ``seed, seed + 1, ...``, ``num_envs`` at a time (default: all
    together), measured at each H of ``horizons`` (already within the env's time limit), on
    the env made with ``env_kwargs``. The caller seeds its actors' sampling itself; no
    coupling check, no warnings (the clipped counts are in the report), nothing written."""
    horizons = sorted(int(h) for h in horizons)
    cfg = EvalConfig(out=Path("."), env=env_id, episodes=episodes, horizons=tuple(horizons),
                     num_envs=num_envs or episodes, seed=seed, progress=progress,
                     divergence_threshold=divergence_threshold, quantized_expert=False)
    return evaluate(cfg, actor_inputs(env_id, actors, horizons, reference, env_kwargs))


def seed_sampling(actors: dict[str, Any], seed: int) -> None:
    """Give the qbc policy among ``actors`` (inside a chunk executor too) a fresh CPU
    ``torch.Generator`` seeded with ``seed``: sampled decoding (--decode sample) draws from it,
    the same draws on every run and device. The model-based actor wraps the same policy, so
    its draws continue that stream."""
    if "policy" not in actors:
        return
    policy = actors["policy"]
    policy = policy if isinstance(policy, Policy) else getattr(policy, "policy", None)
    if isinstance(policy, Policy):
        policy.generator = torch.Generator().manual_seed(seed)


def clipped_counts(actors: dict[str, Any], warn: bool = True) -> dict[str, dict[str, int]]:
    """Per quantized expert: action values outside its tokenizer's range (clipped to the edge
    cells) out of all it quantized; with ``warn`` each non-zero count is also a
    ClippedActionsWarning."""
    counts = {}
    for name, actor in actors.items():
        if isinstance(actor, QuantizedExpert):
            counts[name] = {"clipped": actor.n_clipped, "values": actor.n_values}
            if actor.n_clipped and warn:
                warnings.warn(clipped_warning(name, actor.n_clipped, actor.n_values),
                              ClippedActionsWarning, stacklevel=2)
    return counts


def _videos(env_id: str, actors: dict[str, Any], seeds: np.ndarray, horizon: int, out: Path,
            seed: int, log: Log) -> list[str]:
    """:func:`qbc.rollout.video.write_rollout_videos` into ``out/videos``; paths relative to
    ``out``."""
    seed_sampling(actors, seed)  # --decode sample: the same draws as in the rollout
    paths = write_rollout_videos(env_id, actors, seeds, horizon, out / "videos")
    log(f"videos: {', '.join(str(p) for p in paths)}")
    return [str(p.relative_to(out)) for p in paths]
