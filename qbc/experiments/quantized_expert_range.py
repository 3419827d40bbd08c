"""The quantized expert (the floor of a token learner) with the data-fitted token range against
ranges widened by ``--range-margin``: regret and diverged episodes over coupled rollouts
(``scripts/quantized_expert_range.py``).

One tokenizer per dataset, fitted to all of its actions (``qbc train`` fits its own on the
training split, so its range can differ slightly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qbc.agents import make_expert
from qbc.data import load_demonstrations
from qbc.infra.progress import Log, silent
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.tokenizer import ActionTokenizer


@dataclass
class RangeConfig:
    """The quantized expert with the data-fitted token range against wider ones."""

    datasets: list[str]
    """Minari dataset ids of the demonstrations (one tokenizer fitted per dataset)."""
    env: str = "qbc/ScalarUnstable-v0"
    expert: str = "lqr"
    quantizer: str = "uniform"
    bins: int = 64
    margins: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    episodes: int = 100
    horizon: int = 500
    seed: int = 900000
    """first evaluation episode seed."""


def compare_ranges(cfg: RangeConfig, log: Log = silent) -> dict[float, list[dict]]:
    """Per margin, the quantized expert's metrics at H = ``cfg.horizon`` on each dataset (in
    order); ``log`` gets a line per (dataset, margin) and the means over datasets."""
    expert = make_expert(cfg.expert, cfg.env)
    totals: dict[float, list[dict]] = {m: [] for m in cfg.margins}
    for name in cfg.datasets:
        actions = load_demonstrations(name).actions
        actors = {"expert": expert}
        for m in cfg.margins:
            params = {"margin": m} if m else {}
            tok = ActionTokenizer.fit(actions.astype(np.float32), quantizer=cfg.quantizer,
                                      n_bins=cfg.bins, **params)
            actors[f"margin {m:g}"] = QuantizedExpert(expert, tok)
        metrics = evaluate_actors(cfg.env, actors, cfg.seed, cfg.episodes, [cfg.horizon]).policies
        for m in cfg.margins:
            row = metrics[f"margin {m:g}"][str(cfg.horizon)]
            totals[m].append(row)
            log(f"{name}  margin {m:g}: regret {row['regret']:.3g}, diverged "
                f"{row['diverged_fraction']:.1%}")
    log(f"\nmeans over {len(cfg.datasets)} datasets x {cfg.episodes} episodes, "
        f"H = {cfg.horizon}:")
    for m, rows in totals.items():
        diverged = sum(round(r["diverged_fraction"] * cfg.episodes) for r in rows)
        log(f"  margin {m:g}: regret {np.mean([r['regret'] for r in rows]):.3g}, diverged "
            f"{diverged} of {len(rows) * cfg.episodes} episodes")
    return totals
