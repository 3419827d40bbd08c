"""The quantized expert (the floor of a token learner) with the data-fitted token range against
ranges widened by ``--range-margin``: regret and diverged episodes over coupled rollouts.

One tokenizer per dataset, fitted to all of its actions (`qbc train` fits its own on the training
split, so its range can differ slightly).
Usage:
    python scripts/quantized_expert_range.py --datasets floor/qbc_scalarunstable_v0-s0-bc-v0 ...
        [--env qbc/ScalarUnstable-v0] [--expert lqr] [--quantizer uniform] [--bins 64]
        [--margins 0 0.5 1] [--episodes 100] [--horizon 500] [--seed 900000]
(the datasets of `scripts/learner_vs_floor.py` lie under its --out folder's datasets/: set
MINARI_DATASETS_PATH to it).
"""

from dataclasses import dataclass, field

import numpy as np
import tyro

from qbc.agents import make_expert
from qbc.data import load_demonstrations
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.tokenizer import ActionTokenizer


@dataclass
class RangeConfig:
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


def main(cfg: RangeConfig) -> None:
    expert = make_expert(cfg.expert, cfg.env)
    totals = {m: [] for m in cfg.margins}
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
            print(f"{name}  margin {m:g}: regret {row['regret']:.3g}, diverged "
                  f"{row['diverged_fraction']:.1%}")
    print(f"\nmeans over {len(cfg.datasets)} datasets x {cfg.episodes} episodes, "
          f"H = {cfg.horizon}:")
    for m, rows in totals.items():
        diverged = sum(round(r["diverged_fraction"] * cfg.episodes) for r in rows)
        print(f"  margin {m:g}: regret {np.mean([r['regret'] for r in rows]):.3g}, diverged "
              f"{diverged} of {len(rows) * cfg.episodes} episodes")


if __name__ == "__main__":
    main(tyro.cli(RangeConfig))
