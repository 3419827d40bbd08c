"""The ``qbc rollout`` command: coupled rollouts of a trained policy, its quantized expert and
the expert; metrics.json, per_step.csv, PNG plots and a summary table."""

from __future__ import annotations

import csv
import io
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError, QbcWarning
from qbc.io import atomic_write_json, atomic_write_text, prepare_out_dir
from qbc.rollout import (
    QuantizedExpert,
    RolloutResult,
    cap_horizons,
    check_coupling,
    coupled_rollout,
    coupling_line,
    fit_growth,
    horizon_metrics,
    per_step_table,
)


@dataclass
class RolloutConfig:
    """Roll a policy out against the expert from the same seeds (coupled) and measure how the
    regret and the state deviation grow with the horizon."""

    out: Path
    """output directory (metrics.json, per_step.csv, plots)."""
    policy: Path | None = None
    """policy checkpoint directory (from `qbc train`); without it only the expert and the
    quantized expert (needs --tokenizer) are rolled out."""
    env: str | None = None
    """env id; default: the env of the policy's training dataset."""
    expert: str = "lqr"
    """expert name (lqr, linear, arctan, sb3)."""
    expert_path: Path | None = None
    """saved model for an sb3 expert."""
    tokenizer: Path | None = None
    """tokenizer JSON for the quantized expert; default: the policy's own tokenizer."""
    episodes: int = 100
    """number of coupled episodes (seeds seed, seed+1, ...)."""
    horizons: str = "10,20,50,100,200,500"
    """comma-separated horizons H; the rollout runs to the largest. On a third-party env,
    horizons above its time limit (Pendulum-v1: 200) are capped there, with a warning."""
    num_envs: int = 100
    """episodes stepped together in one vector env."""
    seed: int = 1_000_000
    """first episode seed (keep it apart from the seeds of the training data)."""
    decode: str = "argmax"
    """policy decoding: argmax, sample or mean."""
    quantized_expert: bool = True
    """also roll out the quantized expert (deterministic, and stochastic for smooth tokenizers)."""
    augment: str = "none"
    """'model': also deploy the policy on a learned model's state (Algorithm 1), using the
    transition model saved by `qbc train --augment model` (the policy's run directory)."""
    resync_every: int = 0
    """with --augment model: reset the model state to the observed one every k steps (0: never)."""
    model_sample: bool = False
    """with --augment model: sample the model's next state instead of taking its mean."""
    divergence_threshold: float = 1e3
    """state norm above which an episode counts as diverged."""
    execute: str | None = None
    """chunk policies (qbc train-chunked): open-loop (default), receding:M (first M actions,
    then re-plan) or ensemble:C (ACT temporal ensembling, weights exp(-C i), i = 0 oldest)."""
    overwrite: bool = False
    """replace an existing output directory."""


def parse_horizons(text: str) -> list[int]:
    """"10,20,50" -> [10, 20, 50]; positive integers only."""
    try:
        hs = sorted({int(h) for h in str(text).split(",") if h.strip()})
    except ValueError:
        raise InvalidValueError(
            f"--horizons must be comma-separated integers like 10,20,50, got {text!r}"
        ) from None
    if not hs or hs[0] < 1:
        raise InvalidValueError(f"--horizons must be positive integers, got {text!r}")
    return hs


def run_rollout(cfg: RolloutConfig) -> dict[str, Any]:
    from qbc.agents import make_expert
    from qbc.chunking.execution import execute_policy, execution_metrics, parse_execute
    from qbc.tokenizer import ActionTokenizer

    horizons = parse_horizons(cfg.horizons)
    if cfg.execute is not None:
        parse_execute(cfg.execute)
    if cfg.episodes < 1 or cfg.num_envs < 1:
        raise InvalidValueError("--episodes and --num-envs must be >= 1")
    policy = None
    if cfg.policy is not None:
        from qbc.policy import load_policy

        policy = load_policy(cfg.policy)
        policy.decode_mode = cfg.decode
        policy = execute_policy(policy, cfg.execute)
    elif cfg.execute is not None:
        raise InvalidValueError("--execute needs a chunk --policy")
    env_id = cfg.env or getattr(policy, "env_id", None)
    if env_id is None:
        raise InvalidValueError("give --env (the policy does not record its env)")
    tokenizer = (ActionTokenizer.load(cfg.tokenizer) if cfg.tokenizer is not None
                 else getattr(policy, "tokenizer", None))
    check_fits_env(env_id, policy, tokenizer)
    horizons, capped = cap_horizons(env_id, horizons)
    if cfg.augment not in ("none", "model"):
        raise InvalidValueError(f"--augment must be 'none' or 'model', got {cfg.augment!r}")
    if cfg.augment == "model" and hasattr(policy, "chunk_len"):
        raise InvalidValueError("--augment model deploys per-step token policies, not chunks")
    expert_params = {"path": str(cfg.expert_path)} if cfg.expert_path else {}
    expert = make_expert(cfg.expert, env_id, **expert_params)
    actors: dict[str, Any] = {"expert": expert}
    if policy is not None:
        actors["policy"] = policy
    if cfg.quantized_expert and tokenizer is not None:
        actors["quantized_expert"] = QuantizedExpert(expert, tokenizer)
        if tokenizer.stochastic:
            actors["quantized_expert_stochastic"] = QuantizedExpert(
                expert, tokenizer, rng=np.random.default_rng(cfg.seed))
    if cfg.augment == "model":
        actors["policy_model_based"] = _model_based(cfg, policy)
    if len(actors) == 1:
        raise InvalidValueError("nothing to compare with the expert: give --policy or --tokenizer")
    out = prepare_out_dir(cfg.out, cfg.overwrite)  # after every check: no empty dir on an error
    if capped:
        warnings.warn(capped, QbcWarning, stacklevel=2)
    coupling = check_coupling(env_id, expert, seed=cfg.seed)
    print(coupling_line(env_id, coupling))
    seeds = np.arange(cfg.seed, cfg.seed + cfg.episodes)
    if policy is not None:
        import torch

        torch.manual_seed(cfg.seed)  # --decode sample draws from torch's global generator
    start = time.perf_counter()
    result = coupled_rollout(env_id, actors, seeds, horizons[-1], num_envs=cfg.num_envs,
                             progress=True)
    seconds = time.perf_counter() - start
    metrics = horizon_metrics(result, horizons, divergence_threshold=cfg.divergence_threshold)
    n_actions = sum(a.shape[0] * a.shape[1] for a in result.actions.values())
    metrics["env_id"] = env_id
    metrics["coupling"] = coupling
    metrics["horizons_capped"] = capped
    metrics["growth"] = {
        name: fit_growth(horizons, [per_h[str(h)]["regret"] for h in horizons])
        for name, per_h in metrics["policies"].items() if name != "expert"
    }
    metrics["timing"] = {"seconds": seconds, "actions_per_second": n_actions / seconds}
    metrics["clipped_actions"] = clipped_counts(actors)
    metrics["execution"] = execution_metrics(actors)  # chunk policies: mode, decode failures
    write_rollout_outputs(out, result, metrics, {**asdict(cfg), "env": env_id})
    print(format_summary(metrics))
    for name, e in metrics["execution"].items():
        print(f"{name}: executed {e['execute']} (k = {e['chunk_len']}): {e['chunks']} chunks "
              f"predicted, {e['decode_failures']} decode failures (repaired)")
    print(f"{n_actions} actions in {seconds:.1f} s ({n_actions / seconds:,.0f} actions/s); "
          f"outputs in {out}")
    return metrics


def check_fits_env(env_id: str, policy: Any = None, tokenizer: Any = None) -> None:
    """Raise InvalidValueError unless the policy's observation / action sizes and the
    tokenizer's action size equal those of the env ``env_id`` (an unknown id raises
    UnknownNameError)."""
    from qbc.gym_utils import make_env

    env = make_env(env_id)
    try:
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    finally:
        env.close()
    problems = []
    if policy is not None and (obs_shape, act_shape) != ((policy.obs_dim,), (policy.act_dim,)):
        problems.append(f"the policy takes {policy.obs_dim}-dimensional observations and gives "
                        f"{policy.act_dim}-dimensional actions")
    if tokenizer is not None and act_shape != (tokenizer.action_dim_,):
        problems.append(f"the tokenizer is for {tokenizer.action_dim_}-dimensional actions")
    if problems:
        raise InvalidValueError(
            f"{env_id} has observations of shape {obs_shape} and actions of shape {act_shape}, "
            "but " + " and ".join(problems) + "; pass the --env the policy was trained on (or a "
            "policy / tokenizer made for this env)")


def clipped_counts(actors: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per quantized expert: action values outside its tokenizer's range (clipped to the edge
    cells) out of all it quantized; each non-zero count is also a ClippedActionsWarning."""
    from qbc.errors import ClippedActionsWarning
    from qbc.tokenizer import clipped_message

    counts = {}
    for name, actor in actors.items():
        if isinstance(actor, QuantizedExpert):
            counts[name] = {"clipped": actor.n_clipped, "values": actor.n_values}
            if actor.n_clipped:
                warnings.warn(f"{name}: " + clipped_message(actor.n_clipped, actor.n_values,
                                                            "expert action"),
                              ClippedActionsWarning, stacklevel=2)
    return counts


def _model_based(cfg: RolloutConfig, policy: Any) -> Any:
    """The policy deployed on the state of the transition model saved beside it."""
    from qbc.augment import ModelAugmentedPolicy, load_transition_model

    if policy is None:
        raise InvalidValueError("--augment model needs --policy")
    candidates = [Path(cfg.policy) / "transition", Path(cfg.policy).parent / "transition"]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        raise InvalidValueError(
            f"no transition model beside {cfg.policy}: train with `qbc train --augment model`"
        )
    return ModelAugmentedPolicy(policy, load_transition_model(found),
                                resync_every=cfg.resync_every, sample=cfg.model_sample,
                                seed=cfg.seed)


def write_rollout_outputs(out: Path, result: RolloutResult, metrics: dict[str, Any],
                          config: dict[str, Any]) -> None:
    """metrics.json, per_step.csv, config.json and the two plots, all written atomically."""
    from qbc.plots import plot_regret_vs_horizon, plot_state_deviation

    atomic_write_json(out / "config.json", _json_safe(config))
    atomic_write_json(out / "metrics.json", metrics)
    rows = per_step_table(result)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "per_step.csv", buf.getvalue())
    plot_regret_vs_horizon(metrics, out / "regret_vs_horizon.png", title=result.env_id)
    plot_state_deviation(rows, out / "state_deviation.png", reference="expert",
                         title=result.env_id)


def format_summary(metrics: dict[str, Any]) -> str:
    """The one-screen table: regret (95% CI), state deviation and divergence per policy and H."""
    lines = [f"coupled rollouts on {metrics.get('env_id', '?')} (reference: expert)",
             f"{'policy':<28}{'H':>6}{'regret':>11}{'95% CI':>24}{'dev mean':>10}{'div':>6}"]
    for name, per_h in metrics["policies"].items():
        if name == metrics["reference"]:
            continue
        for h in metrics["horizons"]:
            m = per_h[str(h)]
            lo, hi = m["regret_ci95"]
            lines.append(f"{name:<28}{h:>6}{m['regret']:>11.4g}{f'[{lo:.3g}, {hi:.3g}]':>24}"
                         f"{m['state_dev_mean']:>10.3g}{m['diverged_fraction']:>6.0%}")
        fit = metrics.get("growth", {}).get(name)
        if fit:
            lines.append(f"{'':<28}{growth_line(fit)}")
    return "\n".join(lines)


def growth_line(fit: dict[str, Any]) -> str:
    """One line on how regret grows with H, from :func:`qbc.rollout.fit_growth`: the fitted
    power law and exponential rate, then the better fit only when growth is detected."""
    if not fit.get("power"):
        return f"growth: {fit['verdict']}"
    p = fit["power"]
    text = (f"growth: regret ~ H^{p['slope']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]; "
            f"exponential rate {fit['exponential']['rate']:.3g}/step; ")
    if fit["growth_detected"]:
        return text + f"better fit: {fit['better']}"
    return text + f"no growth detected ({fit['no_growth_reason']})"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _command():
    from qbc.cli import Command

    return Command(RolloutConfig, run_rollout,
                   "coupled rollouts vs the expert: regret and state deviation against H")


ROLLOUT_COMMAND = _command()
