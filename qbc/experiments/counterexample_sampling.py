"""Algorithm 1 with the model state advanced by the model's mean (qbc's default) against the model
state drawn from the model (the algorithm as written), on the Theorem 6 construction, over seeds
and both transition-model heads.

Each (head, seed) is one :func:`qbc.experiments.counterexample.counterexample_table` with
``model_sample`` (both deployments in one coupled rollout, same seeds). The rows are stored per
seed (``per_seed.json``), so every number of the table of their ranges (``table.md``) and of the
sampled-minus-mean summary (``summary.json``) can be recomputed from the folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.experiments.counterexample import counterexample_table
from qbc.infra.files import atomic_write_json, atomic_write_text
from qbc.infra.progress import Log, silent
from qbc.rollout.augment import TransitionModelConfig

#: transition-model heads, in the table's column order, with their column titles
HEADS = {"gaussian": "Gaussian head", "tokens": "token head"}


@dataclass
class SamplingComparisonConfig:
    """Algorithm 1 on the Theorem 6 construction (qbc/Arctan-v0), mean against sampled model
    states, over seeds and both model heads; writes per_seed.json, summary.json and table.md."""

    gaussian_seeds: tuple[int, ...] = (0, 1, 2)
    """seeds run with the Gaussian head (each: demonstrations, evaluation and model seed)."""
    token_seeds: tuple[int, ...] = (0, 1)
    """seeds run with the next-state token head."""
    eps: tuple[float, ...] = (0.1, 0.05, 0.01)
    """ε values of the construction."""
    horizons: tuple[int, ...] = (10, 100, 1000)
    """horizons H at which the per-step loss is reported."""
    n_demos: int = 200
    """expert episodes the transition model learns from."""
    episodes: int = 100
    """evaluation episodes (coupled, seeds disjoint from the demonstrations)."""
    model_steps: int = 1500
    """training steps of the transition model."""
    out: Path = Path("runs/counterexample_sampling")
    """output directory."""


def per_seed_rows(cfg: SamplingComparisonConfig, log: Log = silent
                  ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The counterexample table of every (head, seed) with sampled model states, one row per
    (head, seed, ε, H) with ``head`` and ``seed`` added; and the seconds each run took."""
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for head, seeds in (("gaussian", cfg.gaussian_seeds), ("tokens", cfg.token_seeds)):
        for seed in seeds:
            start = time.perf_counter()
            model_cfg = TransitionModelConfig(steps=cfg.model_steps, head=head, seed=seed)
            table = counterexample_table(cfg.eps, cfg.horizons, n_demos=cfg.n_demos,
                                         episodes=cfg.episodes, seed=seed, model_cfg=model_cfg,
                                         model_sample=True)
            rows += [{"head": head, "seed": seed, **row} for row in table]
            seconds[f"{head}/seed{seed}"] = round(time.perf_counter() - start, 1)
            log(f"{head} head, seed {seed}: {seconds[f'{head}/seed{seed}']:.0f} s")
    return rows, seconds


def sampling_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per head and H: the largest and the smallest (sampled − mean) per-step loss / ε over ε
    and seeds, with the (ε, seed) where each is reached (negative: sampling lowered the loss)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for head in [h for h in HEADS if any(r["head"] == h for r in rows)]:
        summary[head] = {}
        for h in sorted({r["H"] for r in rows if r["head"] == head}):
            diffs = [(r["sampled_loss_over_eps"] - r["model_loss_over_eps"], r["eps"], r["seed"])
                     for r in rows if r["head"] == head and r["H"] == h]
            (hi, hi_eps, hi_seed), (lo, lo_eps, lo_seed) = max(diffs), min(diffs)
            summary[head][str(h)] = {
                "max_sampled_minus_mean_over_eps": hi, "at_max": {"eps": hi_eps, "seed": hi_seed},
                "min_sampled_minus_mean_over_eps": lo, "at_min": {"eps": lo_eps, "seed": lo_seed}}
    return summary


def value_range(values: list[float], digits: int) -> str:
    """'lo–hi' rounded to ``digits`` decimals, or one number when both round alike."""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}–{hi}"


def range_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of ranges over seeds: per (ε, H) the plain policy's per-step loss (3
    decimals) and, per head, the mean and sampled deployments' per-step loss / ε (2 decimals)."""
    heads = [h for h in HEADS if any(r["head"] == h for r in rows)]
    header = ["ε", "H", "plain policy, loss per step"]
    for head in heads:
        header += [f"{HEADS[head]}: mean x̂", "sampled x̂"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cells = sorted({(r["eps"], r["H"]) for r in rows}, key=lambda c: (-c[0], c[1]))
    for eps, h in cells:
        same = [r for r in rows if r["eps"] == eps and r["H"] == h]
        line = [f"{eps:g}", str(h), value_range([r["plain_loss"] for r in same], 3)]
        for head in heads:
            mine = [r for r in same if r["head"] == head]
            line += [value_range([r["model_loss_over_eps"] for r in mine], 2),
                     value_range([r["sampled_loss_over_eps"] for r in mine], 2)]
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def seeds_note(rows: list[dict[str, Any]]) -> str:
    """Which seeds each head's ranges cover."""
    parts = []
    for head in [h for h in HEADS if any(r["head"] == h for r in rows)]:
        seeds = sorted({r["seed"] for r in rows if r["head"] == head})
        parts.append(f"{HEADS[head]}: seeds {', '.join(map(str, seeds))}")
    return "; ".join(parts)


def run_sampling_comparison(cfg: SamplingComparisonConfig, log: Log = silent
                            ) -> list[dict[str, Any]]:
    """:func:`per_seed_rows` with ``cfg``: writes per_seed.json, summary.json (the sampled-minus-
    mean extremes and each run's seconds) and table.md into ``cfg.out``, gives ``log`` the
    table; returns the rows."""
    rows, seconds = per_seed_rows(cfg, log)
    table = range_table(rows)
    atomic_write_json(cfg.out / "per_seed.json", rows)
    atomic_write_json(cfg.out / "summary.json", {"sampled_minus_mean": sampling_summary(rows),
                                                 "seconds": seconds})
    atomic_write_text(cfg.out / "table.md", (
        "Per-step loss 1 − r over t < H (plain policy) and per-step loss / ε (model-based "
        "deployments, x̂ advanced by the model's mean or drawn from it), ranges over "
        f"{seeds_note(rows)} ({cfg.episodes} coupled evaluation episodes; model from "
        f"{cfg.n_demos} expert episodes, {cfg.model_steps} steps).\n\n" + table + "\n"))
    log(table)
    log(f"saved {cfg.out}/per_seed.json, summary.json, table.md")
    return rows
