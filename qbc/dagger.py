"""DAgger (Ross, Gordon & Bagnell 2011): roll out a mixture of expert and learner, label every
visited state with the expert's action, aggregate, retrain.

Round 0 is behaviour cloning on expert episodes (the mixture with beta = 1). Round r >= 1 rolls
out the mixture of the expert and the round r-1 policy: at every step, in every env copy, the
expert's action is executed with probability beta_r, the learner's otherwise (coins drawn per
episode from :func:`qbc.collect.episode_rng`, stream ``MIXTURE_STREAM``). Whatever acted, the
dataset records the expert's clean action at the visited state. The rollouts run in the vector
env of :func:`qbc.collect.rollout_episodes`, with one batched expert call and one batched learner
call per step.

An output folder ``DIR`` holds::

    dagger_config.json   the resolved configuration (a re-run must match it to continue)
    round-<r>/           round r's policy: a normal `qbc train` run folder (best/, last/, ...)
    rounds.csv           one row per finished round: beta, expert labels so far, val log-loss,
                         coupled-rollout regret and divergence (no timings: it is reproducible)
    timing.csv           wall time per round: rollout + labelling, dataset write, training, eval

Round r's data is the Minari dataset ``<base>/round-<r>-v0`` (``--dataset-base``, default
``dagger/<DIR name>``); round r trains on rounds 0..r together. Episode k of round r is played
from seed ``seed + r * E + k`` (E = episodes per round), so with beta = 1 in every round the
aggregate equals one ``qbc collect --episodes (r+1)E`` dataset.

Resuming: re-running the same command continues after the last row of rounds.csv (finished
rounds are kept; a round cut short is redone from its start, with the same seeds and numbers).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
import time
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.collect import MIXTURE_STREAM, episode_rng, expert_params_from, rollout_episodes
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError, UnknownNameError
from qbc.io import atomic_write_json, atomic_write_text, locked_output, read_json
from qbc.policy import ModelConfig
from qbc.train import TrainConfig
from qbc.validate import check_config

BETA_SCHEDULES = ("linear", "exp", "constant")
INITS = ("scratch", "warm")
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not MISSING}
#: TrainConfig fields that DAgger sets itself (not allowed in --train-overrides).
_TRAIN_OWN = {"dataset", "out", "resume", "overwrite", "progress", "rollout_episodes",
              "rollout_horizon", "rollout_seed", "model"}
#: settings that may change when a run is continued.
_RESUMABLE = {"rounds", "progress", "overwrite", "device"}
ROUND_FIELDS = ["round", "beta", "episodes", "steps", "expert_labels", "dataset", "val_loss",
                "regret", "regret_ci_lo", "regret_ci_hi", "diverged_fraction", "policy"]
_RUN_FILES = ("dagger_config.json", "rounds.csv", "timing.csv")
TIMING_FIELDS = ["round", "rollout_label_s", "dataset_write_s", "train_s", "eval_s",
                 "outside_training_fraction"]


@dataclass
class DaggerConfig:
    """DAgger: round 0 = BC on expert episodes; each later round rolls out the expert/learner
    mixture, labels every visited state with the expert's action, aggregates and retrains."""

    env: str
    """Gymnasium env id, e.g. qbc/ScalarUnstable-v0 or Pendulum-v1."""
    out: Path
    """output folder: dagger_config.json, rounds.csv, timing.csv, round-<r>/ run folders."""
    expert: str = "lqr"
    """expert name in qbc.agents: lqr, linear, arctan, sb3 (it labels every visited state)."""
    expert_path: str | None = None
    """saved model for the sb3 expert (a stable-baselines3 .zip)."""
    expert_params: str = "{}"
    """extra expert parameters as a JSON object, e.g. '{"algo": "td3"}'."""
    rounds: int = 3
    """DAgger rounds after the BC round 0 (rounds.csv gets rounds + 1 rows); raise it and re-run
    to add rounds."""
    episodes_per_round: int = 100
    """episodes rolled out (and labelled) in every round, round 0 included."""
    beta: str = "linear"
    """probability that the expert acts in round r >= 1 (round 0: 1): 'linear'
    max(0, 1 - beta_step * r), 'exp' beta_decay**r, 'constant' beta_value. No schedule
    depends on --rounds, so adding rounds later continues the same schedule."""
    beta_step: float = 0.25
    """the 'linear' schedule's decrease per round."""
    beta_decay: float = 0.5
    """the 'exp' schedule's factor per round."""
    beta_value: float = 0.0
    """the 'constant' schedule's beta (1 = expert only: BC on the aggregate)."""
    init: str = "scratch"
    """each round's training: 'scratch' (new weights; tokenizer and normaliser refitted on the
    aggregate: the round's policy depends on the aggregated data alone, as DAgger is analysed,
    and its token range covers the newly visited states) or 'warm' (continue from the previous
    round's weights, keeping round 0's tokenizer and normaliser; cheaper with fewer --steps)."""
    dataset_base: str | None = None
    """Minari namespace of the round datasets (<base>/round-<r>-v0); default dagger/<out name>."""
    num_envs: int = 64
    """env copies stepped together in the round rollouts (speed only)."""
    seed: int = 0
    """episode k of round r is reset with seed + r * episodes_per_round + k."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps."""
    eval_episodes: int = 100
    """coupled rollouts (policy vs expert, same seeds) after every round for rounds.csv."""
    eval_horizon: int | None = None
    """steps of those rollouts; default: the episode horizon."""
    eval_seed: int = 1_000_000
    """first seed of those rollouts (keep it apart from the training seeds)."""
    policy: str = _TRAIN["policy"]
    """policy kind: ar-transformer, independent-categorical, mlp-mse or mlp-gaussian."""
    quantizer: str = _TRAIN["quantizer"]
    """token policies: quantizer registry name (uniform, smooth, kmeans, ...)."""
    bins: int = _TRAIN["bins"]
    """token policies: tokens per position (vocabulary size)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings."""
    steps: int | None = _TRAIN["steps"]
    """optimisation steps per round; default: as `qbc train`, a budget from the aggregated data
    (--epochs passes) with early stopping."""
    batch_size: int = _TRAIN["batch_size"]
    """samples per step."""
    lr: float = _TRAIN["lr"]
    """peak learning rate (AdamW)."""
    val_fraction: float = _TRAIN["val_fraction"]
    """fraction of the aggregated episodes held out for the validation log-loss."""
    device: str = _TRAIN["device"]
    """'auto', 'cpu', 'cuda', ... (training and the learner's actions)."""
    train_overrides: str = "{}"
    """any other `qbc train` setting as a JSON object, e.g. '{"warmup_steps": 50}'."""
    progress: bool = True
    """show progress bars."""
    overwrite: bool = False
    """start again: replace the rounds in out and the round datasets."""


# -- the mixture -----------------------------------------------------------------------------------
class ExpertLearnerMixture:
    """DAgger's behaviour policy for :func:`qbc.collect.rollout_episodes`: per step and env copy
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


def beta_of(cfg: DaggerConfig, r: int) -> float:
    """Probability that the expert acts in round r (1 in round 0)."""
    if r == 0:
        return 1.0
    if cfg.beta == "linear":
        return max(0.0, 1.0 - cfg.beta_step * r)
    if cfg.beta == "exp":
        return float(cfg.beta_decay ** r)
    return float(cfg.beta_value)


# -- checks ----------------------------------------------------------------------------------------
def validate(cfg: DaggerConfig) -> None:
    """Every check on the settings alone; raises one-line QbcErrors."""
    check_config(cfg)  # every float finite, every seed in [0, 2^32)
    if cfg.beta not in BETA_SCHEDULES:
        raise UnknownNameError("beta schedule", cfg.beta, BETA_SCHEDULES)
    if cfg.init not in INITS:
        raise UnknownNameError("init", cfg.init, INITS)
    checks = [
        (cfg.rounds >= 1, f"--rounds must be at least 1 (DAgger rounds after the BC round 0), "
                          f"got {cfg.rounds}; plain BC is `qbc train`"),
        (cfg.episodes_per_round >= 1,
         f"--episodes-per-round must be at least 1, got {cfg.episodes_per_round}"),
        (0.0 <= cfg.beta_step <= 1.0, f"--beta-step must be in [0, 1], got {cfg.beta_step}"),
        (0.0 <= cfg.beta_decay <= 1.0, f"--beta-decay must be in [0, 1], got {cfg.beta_decay}"),
        (0.0 <= cfg.beta_value <= 1.0, f"--beta-value must be in [0, 1], got {cfg.beta_value}"),
        (cfg.num_envs >= 1, f"--num-envs must be at least 1, got {cfg.num_envs}"),
        (cfg.seed >= 0, f"--seed must be a non-negative integer, got {cfg.seed}"),
        (cfg.max_episode_steps is None or cfg.max_episode_steps >= 1,
         f"--max-episode-steps must be at least 1, got {cfg.max_episode_steps}"),
        (cfg.eval_episodes >= 1, f"--eval-episodes must be at least 1, got {cfg.eval_episodes}"),
        (cfg.eval_horizon is None or cfg.eval_horizon >= 1,
         f"--eval-horizon must be at least 1, got {cfg.eval_horizon}"),
        (cfg.eval_seed >= cfg.seed + (cfg.rounds + 1) * cfg.episodes_per_round
         or cfg.eval_seed + cfg.eval_episodes <= cfg.seed,
         f"--eval-seed {cfg.eval_seed} overlaps the training seeds {cfg.seed} .. "
         f"{cfg.seed + (cfg.rounds + 1) * cfg.episodes_per_round - 1}; move it past them"),
    ]
    for ok, message in checks:
        if not ok:
            raise InvalidValueError(message)
    from qbc.train import validate_config as validate_train  # the settings; data comes later

    validate_train(round_train_config(cfg, 0, ["x-v0"]))
    round_dataset_id(cfg, cfg.rounds)


def train_overrides(cfg: DaggerConfig) -> dict[str, Any]:
    """``--train-overrides`` as TrainConfig keywords (unknown or DAgger-owned keys refused)."""
    try:
        extra = json.loads(cfg.train_overrides)
    except json.JSONDecodeError as exc:
        raise InvalidValueError(f"--train-overrides is not valid JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise InvalidValueError("--train-overrides must be a JSON object")
    own = {f.name for f in dataclasses.fields(DaggerConfig)}
    allowed = set(_TRAIN) - _TRAIN_OWN - own
    bad = sorted(set(extra) - allowed)
    if bad:
        raise InvalidValueError(
            f"--train-overrides cannot set {', '.join(bad)} (DAgger's own flags set some; the "
            f"others are not train settings); allowed keys: {', '.join(sorted(allowed))}")
    return extra


def round_train_config(cfg: DaggerConfig, r: int, dataset_ids: list[str]) -> TrainConfig:
    """Round r's `qbc train` settings: DAgger's train flags plus --train-overrides."""
    keys = ("policy", "quantizer", "bins", "steps", "batch_size", "lr", "val_fraction", "device",
            "seed")
    return TrainConfig(dataset="+".join(dataset_ids), out=cfg.out / f"round-{r}",
                       model=dataclasses.replace(cfg.model), rollout_episodes=0, overwrite=True,
                       progress=cfg.progress, **{k: getattr(cfg, k) for k in keys},
                       **train_overrides(cfg))


def dataset_base(cfg: DaggerConfig) -> str:
    """Minari namespace of the round datasets."""
    if cfg.dataset_base is not None:
        return cfg.dataset_base.strip("/")
    name = re.sub(r"[^-\w]+", "-", Path(cfg.out).resolve().name).strip("-_") or "run"
    return f"dagger/{name}"


def round_dataset_id(cfg: DaggerConfig, r: int) -> str:
    from qbc.data import validate_dataset_id

    return validate_dataset_id(f"{dataset_base(cfg)}/round-{r}-v0")


def check_expert_labels(expert: Any, env_id: str, env_kwargs: dict[str, Any]) -> None:
    """Raise InvalidValueError unless ``expert.act`` labels a batch of the env's states with
    finite actions of the action space's shape."""
    from qbc.gym_utils import make_env

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
    from qbc.agents import make_expert

    expert = make_expert(cfg.expert, cfg.env, **expert_params_from(cfg.expert_params,
                                                                    cfg.expert_path))
    check_expert_labels(expert, cfg.env, env_kwargs_of(cfg))
    return expert


# -- one round -------------------------------------------------------------------------------------
def collect_round(cfg: DaggerConfig, r: int, expert: Any, learner: Any) -> tuple[Any, dict]:
    """Roll out round r's mixture, write its dataset; returns (episodes, timings in s)."""
    from qbc import __version__
    from qbc.data import write_dataset
    from qbc.gym_utils import make_env

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
                  config=_config_dict(cfg), overwrite=True,
                  algorithm_name=f"qbc dagger round {r} (beta {beta:.3g})",
                  description=f"DAgger round {r} on {cfg.env}: {n} episodes, expert "
                              f"{provenance['expert']['name']} acts with probability {beta:.3g}, "
                              "every state labelled by the expert")
    return episodes, {"rollout_label_s": t1 - t0, "dataset_write_s": time.perf_counter() - t1}


def aggregate(dataset_ids: list[str]) -> Any:
    """Rounds' datasets as one :class:`qbc.data.Demonstrations`, episode ids made consecutive
    (round r's episode k gets id k + the episodes of rounds before it)."""
    from qbc.data import Demonstrations, load_demonstrations

    parts = [load_demonstrations(i) for i in dataset_ids]
    offsets = np.cumsum([0] + [p.n_episodes for p in parts[:-1]])
    arrays = {name: np.concatenate([getattr(p, name) for p in parts])
              for name in ("observations", "actions", "next_observations", "rewards",
                           "terminations", "truncations")}
    arrays["episode_ids"] = np.concatenate([p.episode_ids + o for p, o in zip(parts, offsets,
                                                                                strict=True)])
    metadata = {**parts[0].metadata, "dataset_id": "+".join(dataset_ids)}
    return Demonstrations(**arrays, env_id=parts[0].env_id, metadata=metadata)


def evaluate_round(cfg: DaggerConfig, policy: Any, expert: Any) -> dict[str, float]:
    """Coupled rollouts of the policy against the expert: regret at the eval horizon (mean and
    95% CI) and the fraction of episodes that diverged by then."""
    from qbc.gym_utils import check_env_id
    from qbc.rollout import coupled_rollout, horizon_metrics

    horizon = cfg.eval_horizon or cfg.max_episode_steps or check_env_id(cfg.env).max_episode_steps
    seeds = range(cfg.eval_seed, cfg.eval_seed + cfg.eval_episodes)
    result = coupled_rollout(cfg.env, {"expert": expert, "policy": policy}, seeds, int(horizon),
                             num_envs=cfg.num_envs)
    m = horizon_metrics(result, [int(horizon)])["policies"]["policy"][str(int(horizon))]
    return {"regret": m["regret"], "regret_ci_lo": m["regret_ci95"][0],
            "regret_ci_hi": m["regret_ci95"][1], "diverged_fraction": m["diverged_fraction"]}


def train_round(cfg: DaggerConfig, r: int, demos: Any) -> Any:
    """Train round r's policy on the aggregate (warm start from round r-1 with --init warm)."""
    from qbc.policy import load_policy
    from qbc.train import train

    tcfg = round_train_config(cfg, r, demos.metadata["dataset_id"].split("+"))
    init = (load_policy(cfg.out / f"round-{r - 1}", device=_device(cfg))
            if cfg.init == "warm" and r > 0 else None)
    return train(tcfg, demos, init=init)


def run_round(cfg: DaggerConfig, r: int, expert: Any, rows: list[dict]) -> tuple[dict, dict]:
    """Round r from start to end; returns its rounds.csv row and timing row."""
    from qbc.policy import load_policy

    learner = (None if r == 0 else load_policy(cfg.out / f"round-{r - 1}", device=_device(cfg)))
    episodes, timing = collect_round(cfg, r, expert, learner)
    ids = [round_dataset_id(cfg, i) for i in range(r + 1)]
    demos = aggregate(ids)
    t0 = time.perf_counter()
    result = train_round(cfg, r, demos)
    t1 = time.perf_counter()
    policy = load_policy(cfg.out / f"round-{r}", device=_device(cfg))
    scores = evaluate_round(cfg, policy, expert)
    steps = int(sum(len(ep.rewards) for ep in episodes))
    row = {"round": r, "beta": beta_of(cfg, r), "episodes": len(episodes), "steps": steps,
           "expert_labels": len(demos), "dataset": ids[-1], "val_loss": result.best_val_loss,
           **scores, "policy": str(Path(f"round-{r}") / "best")}
    timing.update(round=r, train_s=t1 - t0, eval_s=time.perf_counter() - t1)
    outside = timing["rollout_label_s"] + timing["dataset_write_s"]
    timing["outside_training_fraction"] = outside / (outside + timing["train_s"])
    return row, timing


# -- the loop --------------------------------------------------------------------------------------
def run_dagger(cfg: DaggerConfig) -> list[dict[str, Any]]:
    """Run (or continue) DAgger up to round ``cfg.rounds``; returns the rows of rounds.csv."""
    validate(cfg)
    expert = make_labeller(cfg)
    with locked_output(cfg.out, "dagger"):  # one writer per run folder
        rows, timings = _prepare_out(cfg)
        for r in range(len(rows), cfg.rounds + 1):
            row, timing = run_round(cfg, r, expert, rows)
            rows.append(row)
            timings.append(timing)
            atomic_write_text(cfg.out / "timing.csv", _csv(timings, TIMING_FIELDS))
            atomic_write_text(cfg.out / "rounds.csv", _csv(rows, ROUND_FIELDS))
    return rows


def _prepare_out(cfg: DaggerConfig) -> tuple[list[dict], list[dict]]:
    """Check the output folder and the round datasets; the finished rounds (rows of rounds.csv
    and timing.csv) of a run to continue, or empty lists for a new run."""
    from qbc.data import dataset_exists

    out, conf = Path(cfg.out), _config_dict(cfg)
    stored_path = out / "dagger_config.json"
    if stored_path.is_file() and not cfg.overwrite:
        stored = read_json(stored_path, what="DAgger config")
        diff = sorted(k for k in set(stored) | set(conf)
                      if k not in _RESUMABLE and stored.get(k) != conf.get(k))
        if diff:
            detail = ", ".join(f"{k}: {stored.get(k)!r} -> {conf.get(k)!r}" for k in diff)
            raise InvalidValueError(
                f"{out} holds a DAgger run with other settings ({detail}); re-run it with the "
                "same settings to continue, or pass --overwrite / another --out")
        rows = _read_csv(out / "rounds.csv")[: cfg.rounds + 1]
        missing = [i for i in range(len(rows)) if not dataset_exists(round_dataset_id(cfg, i))]
        if missing:
            raise CorruptFileError(
                f"the datasets of finished rounds {missing} of {out} are gone (MINARI_DATASETS_"
                "PATH changed?); point it back, or start again with --overwrite")
        return rows, _read_csv(out / "timing.csv")[: len(rows)]
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise OutputExistsError(f"{out} is not empty and holds no DAgger run; pass --overwrite "
                                "to replace it or choose another --out")
    taken = [round_dataset_id(cfg, r) for r in range(cfg.rounds + 1)
             if dataset_exists(round_dataset_id(cfg, r))]
    if taken and not cfg.overwrite:
        raise OutputExistsError(f"Minari datasets {', '.join(taken)} already exist; pass "
                                "--overwrite to replace them or choose another --dataset-base")
    for old in [*out.glob("round-*"), *(out / n for n in _RUN_FILES)] if out.exists() else []:
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored_path, conf)
    return [], []


def _config_dict(cfg: DaggerConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def _device(cfg: DaggerConfig) -> str:
    if cfg.device != "auto":
        return cfg.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in rows)
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows written by :func:`_csv`, numbers parsed back (exactly: floats were written by repr)."""
    if not path.is_file():
        return []
    rows = []
    for raw in csv.DictReader(path.read_text(encoding="utf-8").splitlines()):
        rows.append({k: _number(v) for k, v in raw.items()})
    return rows


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text == "" else text


def read_timing(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/timing.csv`` (wall time per round)."""
    return _read_csv(Path(out) / "timing.csv")
