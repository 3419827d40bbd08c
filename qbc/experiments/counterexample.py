"""Theorem 6 on real runs: the constructed policy deployed plainly and with model-based
deployment (Algorithm 1, by default with qbc's mean model state), per-step loss against the
horizon, for several ε."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents import make_expert
from qbc.agents.counterexample import Theorem6Policy
from qbc.infra.files import atomic_write_json, atomic_write_text
from qbc.infra.progress import Log, silent
from qbc.rollout.augment import (
    ModelAugmentedPolicy,
    TransitionModelConfig,
    fit_transition_model,
)
from qbc.rollout.coupled import RolloutResult, coupled_rollout
from qbc.rollout.evaluate import evaluate_actors

ENV_ID = "qbc/Arctan-v0"


def expert_transitions(result: RolloutResult, name: str = "expert"
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten a rollout into transitions (x_t, u_t, x_{t+1}), each (N·H, ·), alive steps only."""
    obs, act, alive = result.observations[name], result.actions[name], result.alive[name]
    keep = alive.reshape(-1)
    flat = lambda a: a.reshape(-1, a.shape[-1])[keep]  # noqa: E731
    return flat(obs[:-1]), flat(act), flat(obs[1:])


def counterexample_table(eps_values: Sequence[float] = (0.1, 0.05, 0.01),
                         horizons: Sequence[int] = (10, 100, 1000), n_demos: int = 200,
                         demo_horizon: int = 50, episodes: int = 100, seed: int = 0,
                         k: float = 2.0, d: float = 1.2,
                         model_cfg: TransitionModelConfig | None = None,
                         model_sample: bool = False,
                         progress: bool = False) -> list[dict[str, Any]]:
    """Per-step loss 1 − r_t (mean over t < H and episodes) of the Theorem 6 policy, plain and
    model-based, on ``qbc/Arctan-v0``; the model is learned from ``n_demos`` expert episodes.

    Returns one row per (ε, H): ``eps, H, plain_loss, model_loss, model_loss_over_eps,
    expert_loss``. Evaluation seeds are disjoint from the demonstration seeds. The model-based
    deployment advances x̂ by the model's mean; ``model_sample`` also deploys it with x̂ drawn
    from the model (Algorithm 1 as the paper writes it) in the same coupled rollout, adding
    ``sampled_loss, sampled_loss_over_eps`` (the other columns do not change).
    """
    expert = make_expert("arctan", ENV_ID)
    demos = coupled_rollout(ENV_ID, {"expert": expert}, seeds=range(seed, seed + n_demos),
                            horizon=demo_horizon)
    obs, act, nxt = expert_transitions(demos)
    rows = []
    for eps in eps_values:
        policy = Theorem6Policy(k=k, d=d, eps=eps)
        model = fit_transition_model(obs, act, nxt, policy.tokenizer, model_cfg, progress=progress)
        actors = {"expert": expert, "plain": policy, "model": ModelAugmentedPolicy(policy, model)}
        if model_sample:
            actors["sampled"] = ModelAugmentedPolicy(policy, model, sample=True, seed=seed)
        result = evaluate_actors(ENV_ID, actors, seed + 1_000_000, episodes, horizons).result
        for h in horizons:
            loss = {n: float((1.0 - result.rewards[n][:h]).mean()) for n in result.names}
            row = {"eps": eps, "H": int(h), "plain_loss": loss["plain"],
                   "model_loss": loss["model"], "model_loss_over_eps": loss["model"] / eps,
                   "expert_loss": loss["expert"]}
            if model_sample:
                row.update(sampled_loss=loss["sampled"],
                           sampled_loss_over_eps=loss["sampled"] / eps)
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width table; two more columns (model-based with sampled x̂) when the
    rows have them."""
    sampled = bool(rows) and "sampled_loss" in rows[0]
    lines = [f"{'eps':>6}{'H':>6}{'plain loss/step':>17}{'model-based':>13}{'model/eps':>11}"
             f"{'expert':>9}" + (f"{'sampled':>10}{'sampled/eps':>13}" if sampled else "")]
    for r in rows:
        lines.append(f"{r['eps']:>6g}{r['H']:>6}{r['plain_loss']:>17.4f}{r['model_loss']:>13.4f}"
                     f"{r['model_loss_over_eps']:>11.2f}{r['expert_loss']:>9.4f}"
                     + (f"{r['sampled_loss']:>10.4f}{r['sampled_loss_over_eps']:>13.2f}"
                        if sampled else ""))
    return "\n".join(lines)


def plot_table(rows: list[dict[str, Any]], path) -> Any:
    """Per-step loss vs H, plain (solid), model-based (dashed) and, where the rows have it,
    model-based with sampled x̂ (dotted), one colour per ε."""
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, eps in enumerate(sorted({r["eps"] for r in rows}, reverse=True)):
        sub = [r for r in rows if r["eps"] == eps]
        hs = [r["H"] for r in sub]
        ax.plot(hs, [r["plain_loss"] for r in sub], "o-", color=f"C{i}", label=f"plain ε={eps:g}")
        ax.plot(hs, [r["model_loss"] for r in sub], "s--", color=f"C{i}",
                label=f"model-based ε={eps:g}")
        if "sampled_loss" in sub[0]:
            ax.plot(hs, [r["sampled_loss"] for r in sub], "^:", color=f"C{i}",
                    label=f"model-based, sampled x̂, ε={eps:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("horizon H")
    ax.set_ylabel("per-step loss 1 − r")
    ax.set_title("Theorem 6 construction on qbc/Arctan-v0")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


@dataclass
class CounterexampleConfig:
    """Theorem 6 on qbc/Arctan-v0: the constructed policy's per-step loss, plain and with
    model-based deployment; writes table.json, table.md and loss_vs_horizon.png."""

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
    model_sample: bool = False
    """also deploy with the model state drawn from the model (Algorithm 1 as written; the
    default column advances it by the model's mean): adds the columns 'sampled' and
    'sampled/eps'."""
    seed: int = 0
    """first demonstration seed (evaluation seeds start at seed + 1,000,000) and the transition
    model's seed."""
    out: Path = Path("runs/counterexample")
    """output directory."""


def run_counterexample(cfg: CounterexampleConfig, log: Log = silent) -> list[dict[str, Any]]:
    """:func:`counterexample_table` with ``cfg``: writes table.json, table.md and
    loss_vs_horizon.png into ``cfg.out`` and gives ``log`` the table; returns its rows."""
    rows = counterexample_table(cfg.eps, cfg.horizons, n_demos=cfg.n_demos,
                                episodes=cfg.episodes, seed=cfg.seed, k=cfg.k, d=cfg.d,
                                model_cfg=TransitionModelConfig(steps=cfg.model_steps,
                                                                head=cfg.model_head,
                                                                seed=cfg.seed),
                                model_sample=cfg.model_sample, progress=True)
    table = format_table(rows)
    atomic_write_json(cfg.out / "table.json", rows)
    atomic_write_text(cfg.out / "table.md", "```\n" + table + "\n```\n")
    plot_table(rows, cfg.out / "loss_vs_horizon.png")
    log(table)
    log(f"saved {cfg.out}/table.json, table.md, loss_vs_horizon.png")
    return rows
