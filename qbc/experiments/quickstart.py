"""The quickstart: the whole pipeline on embedded defaults, in a few minutes on a laptop CPU
(``qbc quickstart``, which adds the closing summary).

For a stable and an unstable scalar system (LQR expert) and the Theorem 6 system (arctan
expert): collect demonstrations, fit uniform, smooth and k-means tokenizers at two bin counts,
train an autoregressive transformer on each, roll the learner and the quantized expert out
against the expert (coupled), measure the certificate's quantities, and write
``runs/quickstart-<time>/report.md`` with a results table and regret-vs-horizon plots (the
report's text: :mod:`qbc.experiments.quickstart_report`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents import make_expert
from qbc.certify.certificate import (
    piiss_gain,
    quantization_error,
    rtvc_violation_rate,
    used_eps_q,
)
from qbc.data import load_demonstrations
from qbc.data.collect import CollectConfig, collect
from qbc.envs import describe
from qbc.errors import InvalidValueError
from qbc.experiments.quickstart_report import format_report
from qbc.infra.environ import scoped_threads
from qbc.infra.files import atomic_write_json, atomic_write_text
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import Rule, check_config
from qbc.policy import ModelConfig
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.rollout.video import video_backend, write_rollout_videos
from qbc.training import TrainConfig, train


@dataclass(frozen=True)
class Plan:
    """What the quickstart runs. One place for its defaults; ``--tiny`` shrinks it."""

    envs: tuple[tuple[str, str], ...] = (("qbc/ScalarStable-v0", "lqr"),
                                         ("qbc/ScalarUnstable-v0", "lqr"),
                                         ("qbc/Arctan-v0", "arctan"))
    quantizers: tuple[str, ...] = ("uniform", "smooth", "kmeans")
    bins: tuple[int, ...] = (8, 32)
    n_demos: int = 50
    train_steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    d_model: int = 32
    episodes: int = 50
    horizons: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
    gain_sizes: tuple[float, ...] = (0.01, 0.1)
    rtvc_deltas: tuple[float, ...] = (0.001, 0.01, 0.1)
    video_horizon: int = 100
    """steps of the one video per env (its first tokenizer's learner, first coupled episode)."""


TINY = Plan(envs=(("qbc/ScalarStable-v0", "lqr"), ("qbc/ScalarUnstable-v0", "lqr")),
            quantizers=("uniform", "kmeans"), bins=(8,), n_demos=10, train_steps=40,
            episodes=8, horizons=(10, 50), gain_sizes=(0.1,), rtvc_deltas=(0.01,),
            video_horizon=10)


@dataclass
class QuickstartConfig:
    """Run the whole qbc pipeline on embedded defaults and write a report."""

    out: Path | None = None
    """run directory; default runs/quickstart-<time>."""
    tiny: bool = False
    """a much smaller run (well under a minute), for smoke tests."""
    seed: int = 0
    """seed of data collection and training."""
    progress: bool = True
    """show progress bars."""
    threads: int = 1
    """torch CPU threads; the quickstart's models are tiny, and one thread per process is
    faster than two on a 2-core laptop (0 keeps torch's default)."""
    video: bool = True
    """one rollout video per env under videos/, linked from the report (a GIF with the core
    install, an MP4 with ``pip install 'qbc[video]'``; skipped with a note in the report where
    imageio is missing)."""


def default_out() -> Path:
    """``runs/quickstart-<time>``, relative to the working directory."""
    return Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the plan (``TINY`` under ``--tiny``) and write config.json, results.json, report.md
    and one regret-vs-horizon plot per env into the run directory ``cfg.out`` (default
    :func:`default_out`); returns the results dict (as in results.json) with ``"out"``, the run
    directory."""

    check_config(cfg, {"threads": Rule(lo=0, integer=True)})
    plan = TINY if cfg.tiny else Plan()
    out = cfg.out or default_out()
    with scoped_threads(cfg.threads), output_dir(out, overwrite=False, what="quickstart") as work:
        rows, envs, seconds = _run_plan(plan, cfg, out, work)
        result = {"plan": asdict(plan), "tiny": cfg.tiny, "envs": envs, "rows": rows,
                  "seconds": seconds}
        atomic_write_json(work / "results.json", result)
        plots = _plot(rows, plan, work)
        atomic_write_text(work / "report.md", format_report(result, plots))
    return {**result, "out": str(out)}


def _run_plan(plan: Plan, cfg: QuickstartConfig, out: Path, work: Path
              ) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """Every cell of ``plan``, written into ``work`` (the run directory ``out``):
    (rows, env facts, seconds)."""
    atomic_write_json(work / "config.json", {"config": {**asdict(cfg), "out": str(out)},
                                             "plan": asdict(plan)})
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    envs: dict[str, Any] = {}
    n_cells = len(plan.envs) * len(plan.quantizers) * len(plan.bins)
    bar = progress_bar(total=n_cells, desc="quickstart", unit="policy", disable=not cfg.progress)
    video = cfg.video and _can_write_video()
    for env_id, expert_name in plan.envs:
        env_info, demos, expert = _prepare_env(env_id, expert_name, plan, cfg, work)
        envs[env_id] = env_info
        for i, (quantizer, bins) in enumerate(itertools.product(plan.quantizers, plan.bins)):
            bar.set_postfix_str(f"{env_id} {quantizer}/{bins}")
            rows.append(_run_cell(env_id, expert, demos, quantizer, bins, plan, cfg,
                                  work, env_info, video=video and i == 0))
            bar.update(1)
    bar.close()
    return rows, envs, time.perf_counter() - start


def _prepare_env(env_id: str, expert_name: str, plan: Plan, cfg: QuickstartConfig, out: Path):
    dataset_id = "quickstart/" + env_id.split("/")[-1].lower().replace("-v0", "") + "-v0"
    root = out / "datasets"  # the quickstart's datasets stay inside its run directory
    collect(CollectConfig(env=env_id, dataset_id=dataset_id, expert=expert_name,
                          episodes=plan.n_demos, num_envs=plan.n_demos, seed=cfg.seed), root=root)
    demos = load_demonstrations(dataset_id, root=root)
    expert = make_expert(expert_name, env_id)
    gain = piiss_gain(env_id, expert, plan.gain_sizes, range(10_000, 10_000 + plan.episodes),
                      horizon=100)
    info = describe(env_id)
    return ({"dataset": dataset_id, "expert": expert_name,
             "open_loop_radius": info.get("open_loop_spectral_radius"),
             "lqr_closed_loop_radius": info.get("lqr_closed_loop_spectral_radius"),
             "gain": gain["gains"], "gain_sizes": gain["sizes"], "stability": gain["verdict"],
             "expert_return_per_step": float(demos.episode_returns().mean()
                                             / demos.episode_lengths().mean())},
            demos, expert)


def _can_write_video() -> bool:
    """Whether :func:`qbc.rollout.video.video_backend` has a format to write (imageio installed)."""
    try:
        video_backend()
    except InvalidValueError:
        return False
    return True


def _run_cell(env_id, expert, demos, quantizer, bins, plan, cfg, out, env_info, video=False):
    name = f"{env_id.split('/')[-1]}_{quantizer}{bins}"
    tcfg = TrainConfig(dataset=env_info["dataset"], out=out / "policies" / name,
                       quantizer=quantizer, bins=bins, steps=plan.train_steps,
                       batch_size=plan.batch_size, lr=plan.lr,
                       model=ModelConfig(d_model=plan.d_model),
                       eval_interval=max(plan.train_steps // 3, 1),
                       warmup_steps=min(100, plan.train_steps // 5), seed=cfg.seed,
                       rollout_episodes=0, progress=False)
    trained = train(tcfg, demos)
    tok = trained.policy.tokenizer
    actors = {"expert": expert, "learner": trained.policy,
              "quantized_expert": QuantizedExpert(expert, tok)}
    report = evaluate_actors(env_id, actors, 1_000_000, plan.episodes, plan.horizons)
    eps = quantization_error(tok, demos.actions)
    eps_q = used_eps_q(eps)
    rtvc = rtvc_violation_rate(expert, tok, demos.observations, plan.rtvc_deltas, eps_q)
    row = {"env": env_id, "quantizer": quantizer, "bins": bins, "eps_q": eps_q,
           "eps_q_kind": "worst case" if eps["worst_case_bound"] is not None else "in-dist",
           "rtvc": rtvc["violation_rate"], "val_loss": trained.best_val_loss}
    for who in ("learner", "quantized_expert"):
        m, fit = report.policies[who], report.growth[who]
        regrets = [m[str(h)]["regret"] for h in plan.horizons]
        row[who] = {"regret": regrets,
                    "regret_ci95": [m[str(h)]["regret_ci95"] for h in plan.horizons],
                    "regret_per_step": [m[str(h)]["regret_per_step"] for h in plan.horizons],
                    "state_dev_mean": m[str(plan.horizons[-1])]["state_dev_mean"],
                    "diverged": m[str(plan.horizons[-1])]["diverged_fraction"],
                    "slope": fit["power"]["slope"] if fit["power"] else None,
                    "better_fit": fit["better"]}
    if video:
        row["video"] = _video(env_id, actors, 1_000_000, plan.video_horizon, out, name)
    return row


def _video(env_id: str, actors: dict[str, Any], seed: int, horizon: int, out: Path,
           name: str) -> str:
    """The coupled episode ``seed`` as a video under ``out/videos/``; its path relative to
    ``out`` (for the report's link)."""
    panels = {"expert": actors["expert"], "policy": actors["learner"],
              "quantized_expert": actors["quantized_expert"]}
    (path,) = write_rollout_videos(env_id, panels, [seed], horizon, out / "videos" / name)
    return path.relative_to(out).as_posix()


def _plot(rows, plan: Plan, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    paths = []
    for env_id in dict.fromkeys(r["env"] for r in rows):
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for i, r in enumerate(x for x in rows if x["env"] == env_id):
            for who, style in (("learner", "o-"), ("quantized_expert", "s--")):
                h = np.array(plan.horizons, dtype=float)
                y = np.array(r[who]["regret"], dtype=float)
                keep = y > 0
                if keep.any():
                    tag = "learner" if who == "learner" else "q#π*"
                    label = f"{r['quantizer']}/{r['bins']} {tag}"
                    ax.plot(h[keep], y[keep], style, color=f"C{i}", label=label, markersize=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("horizon H")
        ax.set_ylabel("regret J(expert) − J(·)")
        ax.set_title(f"{env_id}: learner (solid) vs quantized expert (dashed)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
        name = f"regret_vs_H_{env_id.split('/')[-1]}.png"
        save_figure(fig, out / name)
        paths.append(name)
    return paths
