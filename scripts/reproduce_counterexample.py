"""Theorem 6 of Cao & Xie on qbc/Arctan-v0: the constructed policy's per-step loss, deployed
plainly and with model-based deployment (Algorithm 1), for several ε and horizons.

Usage: python scripts/reproduce_counterexample.py [--out runs/counterexample]
Writes table.json, table.md and loss_vs_horizon.png; prints the table.
"""

from dataclasses import dataclass
from pathlib import Path

import tyro

from qbc.augment import TransitionModelConfig
from qbc.counterexample import counterexample_table, format_table, plot_table
from qbc.io import atomic_write_json, atomic_write_text


@dataclass
class Args:
    eps: tuple[float, ...] = (0.1, 0.05, 0.01)
    """ε values of the construction."""
    horizons: tuple[int, ...] = (10, 100, 1000)
    """horizons H at which the per-step loss is reported."""
    k: float = 2.0
    """interval size of I_P in units of ε (the paper's printed k = 1 violates its conditions)."""
    d: float = 1.2
    """offset of I_T1 in units of ε."""
    n_demos: int = 200
    """expert episodes the transition model learns from."""
    episodes: int = 100
    """evaluation episodes (coupled, seeds disjoint from the demonstrations)."""
    model_steps: int = 1500
    """training steps of the transition model."""
    model_head: str = "gaussian"
    """output of the transition model: 'gaussian' or 'tokens' (next-state tokens)."""
    out: Path = Path("runs/counterexample")
    """output directory."""


def main(args: Args) -> None:
    rows = counterexample_table(args.eps, args.horizons, n_demos=args.n_demos,
                                episodes=args.episodes, k=args.k, d=args.d,
                                model_cfg=TransitionModelConfig(steps=args.model_steps,
                                                                head=args.model_head),
                                progress=True)
    table = format_table(rows)
    atomic_write_json(args.out / "table.json", rows)
    atomic_write_text(args.out / "table.md", "```\n" + table + "\n```\n")
    plot_table(rows, args.out / "loss_vs_horizon.png")
    print(table)
    print(f"saved {args.out}/table.json, table.md, loss_vs_horizon.png")


if __name__ == "__main__":
    main(tyro.cli(Args))
