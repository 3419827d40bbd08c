"""DAgger (Ross, Gordon & Bagnell 2011): roll out a mixture of expert and learner, label every
visited state with the expert's action, aggregate, retrain.

Round 0 is behaviour cloning on expert episodes (the mixture with beta = 1). Round r >= 1 rolls
out the mixture of the expert and the round r-1 policy: at every step, in every env copy, the
expert's action is executed with probability beta_r, the learner's otherwise (coins drawn per
episode from :func:`qbc.data.episodes.episode_rng`, stream ``MIXTURE_STREAM``). Whatever acted, the
dataset records the expert's clean action at the visited state. The rollouts run in the vector
env of :func:`qbc.data.episodes.rollout_episodes`, with one batched expert call and one batched
learner
call per step.

An output folder ``DIR`` holds::

    dagger_config.json   the resolved configuration (a re-run must match it to continue)
    round-<r>/           round r's policy: a normal `qbc train` run folder (best/, last/, ...)
    rounds.csv           one row per finished round: beta, expert labels so far, val log-loss,
                         coupled-rollout regret and divergence (no timings: it is reproducible)
    timing.csv           wall time per round: rollout + labelling, dataset write, training, eval

Round r's data is the Minari dataset ``<base>/round-<r>-v0`` (``--dataset-base``, default
``dagger/<DIR name>``; fixed when the run starts and stored in dagger_config.json, so a run
folder that was moved or renamed continues with its own datasets); round r trains on rounds
0..r together. Episode k of round r is played from seed ``seed + r * E + k`` (E = episodes per
round), so with beta = 1 in every round the aggregate equals one ``qbc collect --episodes
(r+1)E`` dataset.

Resuming: re-running the same command continues after the last row of rounds.csv (finished
rounds are kept; a round cut short is redone from its start, with the same seeds and numbers).
The run is found by its folder: ``--out`` may be spelled otherwise or name the folder after a
move; a --dataset-base other than the stored one is refused.
``--overwrite`` of an existing run is staged (:mod:`qbc.interactive.staging`): the old rounds and
datasets are replaced only when every new round has finished; a run killed while they were
being replaced is finished by the next run of its folder before anything else.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from qbc import __version__
from qbc.agents import make_expert
from qbc.data import (
    Demonstrations,
    join_dataset_ids,
    load_demonstrations,
    split_dataset_ids,
    write_dataset,
)
from qbc.data.episodes import MIXTURE_STREAM, episode_rng, rollout_episodes
from qbc.data.expert_choice import unnamed_expert
from qbc.envs.make import check_env_id, make_env
from qbc.errors import InvalidValueError
from qbc.infra.run_folder import locked_output
from qbc.interactive.config import (
    DaggerConfig,
    beta_of,
    dataset_base,
    round_dataset_id,
    round_train_config,
    validate,
)
from qbc.interactive.rounds import DaggerRound
from qbc.interactive.run_files import (
    CONFIG_NAME,
    prepare_run,
    run_entries,
    store_config,
    stored_dataset_base,
    write_rows,
)
from qbc.interactive.staging import RunPlace, finish_interrupted, needs_staging, run_place
from qbc.policy import load_policy
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.stepping.limits import cap_horizon
from qbc.tokenizer import ActionTokenizer
from qbc.training import train


# -- the mixture -----------------------------------------------------------------------------------
class ExpertLearnerMixture:
    """DAgger's behaviour policy for :func:`qbc.data.episodes.rollout_episodes`: per step and env
    copy
    the expert's label with probability ``beta``, else ``learner.act(obs)`` (argmax decoding);
    the dataset records the labels. Coin of episode k at step t:
    ``episode_rng(seed + k, MIXTURE_STREAM).random(H)[t] < beta``."""

    record_label = True

    def __init__(self, learner: Any, beta: float):
        self.learner, self.beta = learner, float(beta)
        self._coins = np.zeros((0, 0))

    def start(self, seeds: np.ndarray, horizon: int, act_dim: int) -> None:
        self._coins = np.stack([episode_rng(s, MIXTURE_STREAM).random(horizon) for s in seeds])
        if self.learner is not None and hasattr(self.learner, "reset"):
            self.learner.reset()

    def act(self, obs: np.ndarray, label: np.ndarray, t: int) -> np.ndarray:
        if self.beta >= 1.0 or self.learner is None:  # the expert acts everywhere: no learner
            return label
        learned = np.asarray(self.learner.act(obs, deterministic=True), dtype=np.float32)
        expert_acts = (self._coins[:, t] < self.beta)[:, None]
        return np.where(expert_acts, label, learned)


# -- the expert ----------------------------------------------------------------------------------
def check_expert_labels(expert: Any, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raise InvalidValueError unless ``expert.act`` labels a batch of the env's states with
    finite actions of the action space's shape."""
    env = make_env(env_id, **env_kwargs)
    try:
        obs = np.stack([env.reset(seed=s)[0] for s in range(2)]).astype(np.float32)
        shape = (2, *env.action_space.shape)
    finally:
        env.close()
    try:
        label = np.asarray(expert.act(obs, deterministic=True))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InvalidValueError(f"expert {getattr(expert, 'name', expert)!r} cannot label "
                                f"{env_id}'s states ({exc})") from None
    if label.shape != shape or not np.isfinite(label).all():
        raise InvalidValueError(
            f"expert {getattr(expert, 'name', expert)!r} cannot label {env_id}: it gave "
            f"actions of shape {label.shape} for {shape[0]} states (expected {shape}, finite)")


def env_kwargs_of(cfg: DaggerConfig) -> dict[str, Any]:
    return {} if cfg.max_episode_steps is None else {"max_episode_steps": cfg.max_episode_steps}


def make_labeller(cfg: DaggerConfig) -> Any:
    """The expert of ``cfg``, checked to label the env's states (opens --expert-path)."""
    expert = make_expert(cfg.expert, cfg.env, **cfg.expert_params)
    check_expert_labels(expert, cfg.env, env_kwargs_of(cfg))
    return expert


# -- one round -------------------------------------------------------------------------------------
def collect_round(cfg: DaggerConfig, r: int, expert: Any, learner: Any,
                  data_root: Path | None = None) -> tuple[Any, dict]:
    """Roll out round r's mixture, write its dataset (under the Minari root ``data_root``,
    default the datasets root); returns (episodes, timings in s)."""
    kwargs, beta, n = env_kwargs_of(cfg), beta_of(cfg, r), cfg.episodes_per_round
    first = cfg.seed + r * n
    t0 = time.perf_counter()
    episodes = rollout_episodes(cfg.env, expert, n, num_envs=cfg.num_envs, seed=first,
                                env_kwargs=kwargs, progress=cfg.progress,
                                behavior=ExpertLearnerMixture(learner, beta))
    t1 = time.perf_counter()
    env = make_env(cfg.env, **kwargs)
    spec = env.spec
    env.close()
    provenance = {
        "qbc_version": __version__, "env_id": cfg.env, "env_kwargs": kwargs,
        "max_episode_steps": spec.max_episode_steps,
        "expert": {"name": getattr(expert, "name", type(expert).__name__),
                   "params": getattr(expert, "params", {})},
        "expert_noise": 0.0, "seed": first, "n_episodes": n,
        "episode_seeds": f"seed + episode id ({first} .. {first + n - 1})",
        "dagger": {"round": r, "beta": beta, "out": str(cfg.out),
                   "learner": None if r == 0 else str(cfg.out / f"round-{r - 1}" / "best"),
                   "labels": "the expert's clean action at every visited state",
                   "coins": f"episode k: expert acts at step t iff SeedSequence(seed + k, "
                            f"spawn_key=({MIXTURE_STREAM},)) random(H)[t] < beta"},
    }
    write_dataset(round_dataset_id(cfg, r), episodes, env=spec, metadata=provenance,
                  config=_config_dict(cfg), overwrite=True, root=data_root,
                  algorithm_name=f"qbc dagger round {r} (beta {beta:.3g})",
                  description=f"DAgger round {r} on {cfg.env}: {n} episodes, expert "
                              f"{provenance['expert']['name']} acts with probability {beta:.3g}, "
                              "every state labelled by the expert")
    return episodes, {"rollout_label_s": t1 - t0, "dataset_write_s": time.perf_counter() - t1}


def aggregate(dataset_ids: list[str], root: Path | None = None) -> Any:
    """Rounds' datasets (under the Minari root ``root``, default the datasets root) as one
    :class:`qbc.data.Demonstrations`, episode ids made consecutive (round r's episode k gets
    id k + the episodes of rounds before it)."""
    parts = [load_demonstrations(i, root=root) for i in dataset_ids]
    offsets = np.cumsum([0] + [p.n_episodes for p in parts[:-1]])
    arrays = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in ("observations", "actions", "next_observations", "rewards",
                           "terminations", "truncations")}
    arrays["episode_ids"] = np.concatenate([p.episode_ids + o for p, o in zip(parts, offsets,
                                                                                strict=True)])
    metadata = {**parts[0].metadata, "dataset_id": join_dataset_ids(dataset_ids)}
    return Demonstrations(**arrays, env_id=parts[0].env_id, metadata=metadata)


def evaluate_round(cfg: DaggerConfig, policy: Any, expert: Any) -> dict[str, float]:
    """Coupled rollouts of the policy against the expert: regret at the eval horizon (mean and
    95% CI) and the fraction of episodes that diverged by then; for a token policy also the
    floor's (the quantized expert through the policy's own tokenizer: round 0's in every round
    unless --tokenizer refit)
    and the expert's return, for :func:`qbc.rollout.growth.floor_verdict`; where the env reports
    it,
    the success rate (95% Wilson interval)."""
    horizon = cfg.eval_horizon or cfg.max_episode_steps or check_env_id(cfg.env).max_episode_steps
    actors = {"expert": expert, "policy": policy}
    if isinstance(getattr(policy, "tokenizer", None), ActionTokenizer):
        actors["quantized_expert"] = QuantizedExpert(expert, policy.tokenizer)
    report = evaluate_actors(cfg.env, actors, cfg.eval_seed, cfg.eval_episodes, [int(horizon)],
                             num_envs=cfg.num_envs)
    per = {name: m[str(int(horizon))] for name, m in report.policies.items()}
    m, floor = per["policy"], per.get("quantized_expert")
    row = {"regret": m["regret"], "regret_ci_lo": m["regret_ci95"][0],
           "regret_ci_hi": m["regret_ci95"][1], "diverged_fraction": m["diverged_fraction"],
           "floor_regret": None if floor is None else floor["regret"],
           "floor_diverged_fraction": None if floor is None else floor["diverged_fraction"],
           "expert_return": per["expert"]["return"]}
    reported = "success" in m  # envs that report success (the detour task, Fetch, PointMaze)
    row.update(success=m["success"] if reported else None,
               success_ci_lo=m["success_ci95"][0] if reported else None,
               success_ci_hi=m["success_ci95"][1] if reported else None)
    return row


def train_round(cfg: DaggerConfig, r: int, demos: Any, place: RunPlace | None = None,
                tokenizer: Any = None) -> Any:
    """Train round r's policy on the aggregate (warm start from round r-1 with --init warm)
    into ``place.work`` (its config names ``cfg.out`` and the final dataset ids).

    With --tokenizer round-0 (the default) every round keeps round 0's tokenizer, fitted on the
    expert's own demonstrations: refitted to the actions of the states the learner visited,
    its range would widen and its bins coarsen, and the floor would rise from round to round."""
    place = place or RunPlace(Path(cfg.out), None)
    tcfg = round_train_config(cfg, r, split_dataset_ids(demos.metadata["dataset_id"]))
    init = (load_policy(place.work / f"round-{r - 1}", device=_device(cfg))
            if cfg.init == "warm" and r > 0 else None)
    if tokenizer is None and keeps_round0_tokenizer(cfg, r):
        tokenizer = round0_tokenizer(place.work)
    into = place.work / f"round-{r}" if place.staged else None
    return train(tcfg, demos, init=init, into=into, tokenizer=tokenizer)


def keeps_round0_tokenizer(cfg: DaggerConfig, r: int) -> bool:
    """Whether round r trains on round 0's tokenizer (--tokenizer round-0, --init scratch)."""
    return r > 0 and cfg.init == "scratch" and cfg.tokenizer == "round-0"


def round0_tokenizer(work: Path) -> Any:
    """The tokenizer of round 0's policy in the run folder ``work`` (None for a continuous
    policy)."""
    return load_policy(work / "round-0").tokenizer


def run_round(cfg: DaggerConfig, r: int, expert: Any, place: RunPlace
              ) -> tuple[DaggerRound, dict]:
    """Round r from start to end, written where ``place`` says; returns the round (its
    rounds.csv row) and its timing row."""
    work = place.work
    learner = (None if r == 0 else load_policy(work / f"round-{r - 1}", device=_device(cfg)))
    # every earlier file the round reads is opened (and checked) before it writes its dataset
    tokenizer = round0_tokenizer(work) if keeps_round0_tokenizer(cfg, r) else None
    episodes, timing = collect_round(cfg, r, expert, learner, place.data_root)
    ids = [round_dataset_id(cfg, i) for i in range(r + 1)]
    demos = aggregate(ids, place.data_root)
    t0 = time.perf_counter()
    result = train_round(cfg, r, demos, place, tokenizer)
    t1 = time.perf_counter()
    policy = load_policy(work / f"round-{r}", device=_device(cfg))
    scores = evaluate_round(cfg, policy, expert)
    steps = int(sum(len(ep.rewards) for ep in episodes))
    row = DaggerRound(round=r, beta=beta_of(cfg, r), episodes=len(episodes), steps=steps,
                      expert_labels=len(demos), dataset=ids[-1], val_loss=result.best_val_loss,
                      **scores, policy=str(Path(f"round-{r}") / "best"))
    timing.update(round=r, train_s=t1 - t0, eval_s=time.perf_counter() - t1)
    outside = timing["rollout_label_s"] + timing["dataset_write_s"]
    timing["outside_training_fraction"] = outside / (outside + timing["train_s"])
    return row, timing


# -- the loop --------------------------------------------------------------------------------------
def run_dagger(cfg: DaggerConfig) -> list[DaggerRound]:
    """Run (or continue) DAgger up to round ``cfg.rounds``; returns the rounds (the rows of
    rounds.csv).

    ``--overwrite`` of an existing run (or of existing round datasets) is staged
    (:mod:`qbc.interactive.staging`): the old run and its datasets stay as they are until every
    round has finished, and survive any failure."""
    if cfg.expert is None:  # sb3 for --expert-path, else the env's default expert
        cfg = dataclasses.replace(cfg, expert=unnamed_expert(cfg.env, cfg.expert_params))
    validate(cfg)
    cfg = within_time_limit(cfg)
    expert = make_labeller(cfg)
    out = Path(cfg.out)
    with locked_output(out, "dagger"):  # one writer per run folder
        finish_interrupted(out)  # an --overwrite run killed while it was being published
        cfg = with_dataset_base(cfg)
        ids = [round_dataset_id(cfg, r) for r in range(cfg.rounds + 1)]
        rows, timings = prepare_run(out, _config_dict(cfg), ids, cfg.overwrite)
        staged = cfg.overwrite and needs_staging(out, ids)
        with run_place(out, ids, dataset_base(cfg), staged, run_entries(out)) as place:
            if not (place.work / CONFIG_NAME).is_file():  # a new run
                store_config(place.work, _config_dict(cfg))
            for r in range(len(rows), cfg.rounds + 1):
                row, timing = run_round(cfg, r, expert, place)
                rows.append(row)
                timings.append(timing)
                write_rows(place.work, rows, timings)
    return rows


def within_time_limit(cfg: DaggerConfig) -> DaggerConfig:
    """``cfg`` with ``max_episode_steps`` and ``eval_horizon`` capped at a third-party env's
    time limit, each with the one-line warning of rollout horizons (qbc's own envs: as given)."""
    changes = {}
    if cfg.max_episode_steps is not None:
        changes["max_episode_steps"] = cap_horizon(cfg.env, cfg.max_episode_steps,
                                                   "--max-episode-steps")
    if cfg.eval_horizon is not None:
        changes["eval_horizon"] = cap_horizon(cfg.env, cfg.eval_horizon, "--eval-horizon")
    return dataclasses.replace(cfg, **changes)


def with_dataset_base(cfg: DaggerConfig) -> DaggerConfig:
    """``cfg`` with its dataset base spelled out: the stored run's when ``cfg.out`` holds one to
    continue (:func:`qbc.interactive.run_files.stored_dataset_base`), else --dataset-base or the
    default
    from the folder's name. New runs store it, so the round dataset ids never depend on what
    the folder is called later."""
    stored = None if cfg.overwrite else stored_dataset_base(Path(cfg.out), cfg.dataset_base)
    return dataclasses.replace(cfg, dataset_base=stored or dataset_base(cfg))


def _config_dict(cfg: DaggerConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _device(cfg: DaggerConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
