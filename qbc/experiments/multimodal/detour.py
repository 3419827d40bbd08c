"""Why tokens at all (issue 33), the preliminary run (docs/results/multimodal): on the detour
task, where the demonstrator passes the obstacle on the left or on the right with probability
1/2, does a policy commit to a side?

For each detour variant: collect demonstrations with the ``detour`` expert, train each learner
of ``learners`` on them with the default training budget, and roll every learner out against
the expert on the same seeds (coupled), token policies once per decoding in ``decodings``
(``sample:T``: sampled at temperature T; every sampled decoding draws from a generator seeded
with ``seed``, so the compared policies' draws are coupled too), with the quantized expert of
each tokenizer as the floor.
Writes results.json and a markdown table (success rate with its 95% interval, mode coverage,
return, regret) into ``out``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qbc.agents import make_expert
from qbc.data import load_demonstrations
from qbc.data.collect import CollectConfig, collect
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.experiments.multimodal.learners import decoded_view
from qbc.infra.environ import scoped_threads
from qbc.infra.files import atomic_write_json, atomic_write_text, read_json
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, Rule, check_config
from qbc.policy.decoding import parse_decoding
from qbc.policy.registry import check_policy_kind, needs_tokenizer
from qbc.quantizers import available_quantizers
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.training import TrainConfig, train


@dataclass
class MultimodalConfig:
    """Train mlp-mse and token policies on the detour task's two-sided demonstrations and
    measure success, mode coverage and regret of each (coupled rollouts)."""

    out: Path = Path("runs/multimodal")
    """run directory (datasets, policies, results.json, results.md)."""
    envs: tuple[str, ...] = ("qbc/DetourStable-v0", "qbc/DetourUnstable-v0")
    """detour variants."""
    learners: tuple[str, ...] = ("mlp-mse", "ar-transformer:uniform", "ar-transformer:smooth")
    """policies: a policy kind, or 'kind:quantizer' for token policies."""
    decodings: tuple[str, ...] = ("sample", "sample:0.5", "argmax", "mean")
    """decodings of the token policies: argmax, mean, sample (temperature 1) or sample:T."""
    bins: int = 64
    """tokens per action dimension."""
    n_demos: int = 100
    """demonstrations per env."""
    steps: int | None = 2000
    """training steps (None: qbc train's default budget, 30 epochs with early stopping, about
    10,000 steps on 100 demonstrations)."""
    episodes: int = 100
    """coupled evaluation episodes (seeds 1_000_000, ...)."""
    seed: int = 0
    """seed of the data, the training and the sampled decoding."""
    threads: int = 1
    """torch CPU threads."""
    overwrite: bool = False
    """replace an existing run directory."""


def run_multimodal(cfg: MultimodalConfig) -> dict[str, Any]:
    """Run every (env, learner) cell; returns the results (as in results.json)."""
    check_config(cfg, {"bins": Rule(lo=2, integer=True), "n_demos": AT_LEAST_ONE,
                       "episodes": AT_LEAST_ONE,
                       "steps": Rule(lo=1, integer=True, optional=True),
                       "threads": Rule(lo=0, integer=True)})

    for learner in cfg.learners:
        kind, _, quantizer = learner.partition(":")
        check_policy_kind(kind)
        if quantizer and not needs_tokenizer(kind):
            raise InvalidValueError(f"learner {learner!r}: {kind} has no tokens, so no "
                                    f"quantizer; write {kind!r}")
        if quantizer and quantizer not in available_quantizers():
            raise UnknownNameError("quantizer", quantizer, available_quantizers())
    for decoding in cfg.decodings:
        parse_decoding(decoding)
    for env_id in cfg.envs:
        if not env_id.startswith("qbc/Detour"):
            raise InvalidValueError(f"--envs takes detour variants (qbc/DetourStable-v0, "
                                    f"qbc/DetourUnstable-v0), got {env_id!r}")
    start = time.perf_counter()
    with scoped_threads(cfg.threads), output_dir(cfg.out, cfg.overwrite, "multimodal") as work:
        rows = [row for env_id in cfg.envs for row in _run_env(env_id, cfg, work)]
        result = {"config": {k: (str(v) if isinstance(v, Path) else v)
                             for k, v in asdict(cfg).items()},
                  "rows": rows, "seconds": time.perf_counter() - start}
        atomic_write_json(work / "results.json", result)
        atomic_write_text(work / "results.md", format_table(rows))
    return result


def _run_env(env_id: str, cfg: MultimodalConfig, work: Path) -> list[dict[str, Any]]:
    """Collect, train every learner, roll everything out coupled: one row per actor."""
    name = env_id.split("/")[-1].lower().replace("-v0", "")
    dataset_id, root = f"multimodal/{name}-v0", work / "datasets"
    collect(CollectConfig(env=env_id, dataset_id=dataset_id, expert="detour",
                          episodes=cfg.n_demos, num_envs=cfg.n_demos, seed=cfg.seed,
                          progress=False), root=root)
    demos = load_demonstrations(dataset_id, root=root)
    expert = make_expert("detour", env_id)
    actors: dict[str, Any] = {"expert": expert}
    for learner in cfg.learners:
        kind, _, quantizer = learner.partition(":")
        token = ({"quantizer": quantizer or "uniform", "bins": cfg.bins}
                 if needs_tokenizer(kind) else {})  # a continuous policy has no tokens
        tcfg = TrainConfig(dataset=dataset_id, out=work / "policies" / name / learner.replace(
            ":", "-"), policy=kind, **token, steps=cfg.steps, seed=cfg.seed,
            rollout_episodes=0, progress=False, tensorboard=False)
        policy = train(tcfg, demos).policy
        if policy.tokenizer is None:
            actors[learner] = policy
            continue
        actors[f"q#pi* ({quantizer or 'uniform'})"] = QuantizedExpert(expert, policy.tokenizer)
        for decoding in cfg.decodings:  # every sampled view draws from the same seeded stream
            actors[f"{learner} {decoding}"] = decoded_view(policy, decoding, cfg.seed)
    horizon = demos.episode_lengths().max()
    metrics = evaluate_actors(env_id, actors, 1_000_000, cfg.episodes, [int(horizon)]).policies
    rows = []
    for actor, per_h in metrics.items():
        m = per_h[str(int(horizon))]
        rows.append({"env": env_id, "policy": actor, "success": m["success"],
                     "success_ci95": m["success_ci95"], "modes": m["modes"],
                     "ended_early": m["diverged_fraction"],
                     "return": m["return"], "regret": m["regret"],
                     "regret_ci95": m["regret_ci95"], "horizon": int(horizon),
                     "episodes": cfg.episodes, "n_demos": cfg.n_demos})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table: success [95% CI], modes left/right/none, episodes
    ended early (a collision), return, regret [95% CI], per env and policy."""
    lines = ["| env | policy | success [95% CI] | left / right / none | collided | return "
             "| regret [95% CI] |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["success_ci95"]
        m = r["modes"]
        rlo, rhi = r["regret_ci95"]
        regret = "-" if r["policy"] == "expert" else f"{r['regret']:.2f} [{rlo:.2f}, {rhi:.2f}]"
        lines.append(f"| {r['env']} | {r['policy']} | {r['success']:.0%} [{lo:.0%}, {hi:.0%}] "
                     f"| {m['left']:.0%} / {m['right']:.0%} / {m['none']:.0%} "
                     f"| {r['ended_early']:.0%} | {r['return']:.2f} | {regret} |")
    return "\n".join(lines) + "\n"


def multimodal_headline(out: Path) -> dict[str, float]:
    """Per (env, policy) row of results.json (:func:`run_multimodal`): success rate and the
    fraction of episodes that passed the obstacle on the left (reproduce's headline)."""
    values = {}
    for r in read_json(out / "results.json", what="multimodal results")["rows"]:
        tag = f"{r['env'].removeprefix('qbc/')},{r['policy']}"
        values[f"success[{tag}]"] = r["success"]
        values[f"left[{tag}]"] = r["modes"]["left"]
    return values
