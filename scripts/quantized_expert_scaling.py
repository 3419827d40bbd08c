"""Regret of the quantized expert against H and against the bin width (issue: rollouts).

Usage: python scripts/quantized_expert_scaling.py [--env qbc/ScalarStable-v0] [--out DIR]
"""

from dataclasses import dataclass
from pathlib import Path

import tyro

from qbc.agents import make_expert
from qbc.io import atomic_write_json
from qbc.scaling import format_scaling, plot_scaling, quantized_expert_scaling


@dataclass
class Args:
    env: str = "qbc/ScalarStable-v0"
    """env id."""
    expert: str = "lqr"
    """expert name."""
    quantizer: str = "uniform"
    """registry quantizer."""
    bins: tuple[int, ...] = (8, 16, 32, 64)
    """bin counts."""
    horizons: tuple[int, ...] = (50, 100, 200, 500, 1000)
    """horizons H."""
    episodes: int = 200
    """coupled evaluation episodes per bin count."""
    x0_std: float | None = None
    """initial-state spread (default: the env's; small values start near stationarity)."""
    out: Path = Path("runs/quantized_expert_scaling.json")
    """where to write the results (JSON); the plot goes beside it (.png)."""


def main(args: Args) -> None:
    res = quantized_expert_scaling(args.env, make_expert(args.expert, args.env), args.bins,
                                   args.horizons, episodes=args.episodes, quantizer=args.quantizer,
                                   env_kwargs=None if args.x0_std is None
                                   else {"x0_std": args.x0_std})
    atomic_write_json(args.out, res)
    plot_scaling(res, args.out.with_suffix(".png"))
    print(format_scaling(res))
    print(f"saved {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
