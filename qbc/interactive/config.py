"""DAgger's settings (:class:`DaggerConfig`, also the ``qbc dagger`` command's config): the
beta schedule, the checks run before anything is written, each round's `qbc train` settings
and the ids of the round datasets. :mod:`qbc.interactive.dagger` runs the rounds."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.data import join_dataset_ids, validate_dataset_id
from qbc.envs.make import check_env_id, opened_env
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.validate import SEED_LIMIT, check_config
from qbc.policy import ModelConfig, needs_tokenizer
from qbc.stepping.limits import check_rollout_memory
from qbc.training import TrainConfig
from qbc.training import validate_config as validate_train
from qbc.training.settings import check_head_settings

BETA_SCHEDULES = ("linear", "exp", "constant")
INITS = ("scratch", "warm")
TOKENIZERS = ("round-0", "refit")
_TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not MISSING}
#: TrainConfig fields that DAgger sets itself (not allowed in --train-overrides).
_TRAIN_OWN = {"dataset", "out", "resume", "overwrite", "progress", "rollout_episodes",
              "rollout_horizon", "rollout_seed", "model"}


@dataclass
class DaggerConfig:
    """DAgger: round 0 = BC on expert episodes; each later round rolls out the expert/learner
    mixture, labels every visited state with the expert's action, aggregates and retrains."""

    env: str
    """Gymnasium env id, e.g. qbc/ScalarUnstable-v0 or Pendulum-v1."""
    out: Path
    """output folder: dagger_config.json, rounds.csv, timing.csv, round-<r>/ run folders."""
    expert: str | None = None
    """the expert that labels every visited state: lqr, linear, arctan, detour (qbc's own
    envs), fetch-push, fetch-pick-and-place, maze-planner (the Gymnasium-Robotics tasks), sb3
    (--expert-path ZIP), zoo:ENV (a trained actor shipped with qbc, e.g. zoo:Pendulum-v1;
    `qbc expert list`) or actor (--expert-path FOLDER, an actor folder from `qbc expert train`
    / `qbc expert export`); default: sb3 when only --expert-path is given, zoo:ENV when the
    zoo has the env, the env's scripted expert for the robotics tasks (one line says so), else
    lqr."""
    expert_params: dict[str, Any] = field(default_factory=dict)
    """``make_expert`` keywords, e.g. ``{"algo": "td3", "path": "experts/x.zip"}``."""
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
    """each round's training: 'scratch' (new weights, normaliser fitted on the aggregate: the
    round's policy depends on the aggregated data alone, as DAgger is analysed; the tokenizer
    as --tokenizer says) or 'warm' (continue from the previous round's weights, keeping round
    0's tokenizer and normaliser; cheaper with fewer --steps)."""
    tokenizer: str = "round-0"
    """the token range of rounds >= 1: 'round-0' (round 0's tokenizer, fitted on the expert's
    demonstrations, kept in every round, so all rounds share one quantization floor) or
    'refit' (with --init scratch, refitted to each aggregate: its range widens to the actions
    of the states the learner visited, its bins coarsen and its floor rises)."""
    dataset_base: str | None = None
    """Minari namespace of the round datasets (<base>/round-<r>-v0); default dagger/<out name>
    when the run starts (a continued run keeps the base it stored, also after a move)."""
    num_envs: int = 64
    """env copies stepped together in the round rollouts (speed only)."""
    seed: int = 0
    """episode k of round r is reset with seed + r * episodes_per_round + k."""
    max_episode_steps: int | None = None
    """episode horizon; default: the env's registered max_episode_steps. A third-party env's
    time limit caps it (one warning); qbc's own envs take any length."""
    eval_episodes: int = 100
    """coupled rollouts (policy vs expert, same seeds) after every round for rounds.csv."""
    eval_horizon: int | None = None
    """steps of those rollouts; default: the episode horizon. A third-party env's time limit
    caps it (one warning)."""
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
    (`qbc train`'s --epochs passes; epochs=N in --train-overrides sets them) with early
    stopping."""
    batch_size: int = _TRAIN["batch_size"]
    """samples per step."""
    lr: float = _TRAIN["lr"]
    """peak learning rate (AdamW)."""
    val_fraction: float = _TRAIN["val_fraction"]
    """fraction of the aggregated episodes held out for validation (checkpoint selection and
    early stopping, as in `qbc train`)."""
    device: str = _TRAIN["device"]
    """'auto', 'cpu', 'cuda', ... (training and the learner's actions)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """any other `qbc train` setting, e.g. ``{"warmup_steps": 50}``."""
    progress: bool = True
    """show progress bars."""
    overwrite: bool = False
    """start again: replace the rounds in out and the round datasets (once the new run has
    finished every round; the old run survives a failure)."""


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
    if cfg.tokenizer not in TOKENIZERS:
        raise UnknownNameError("tokenizer rule", cfg.tokenizer, TOKENIZERS)
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
    check_schedule_settings(cfg)
    validate_train(round_train_config(cfg, 0, ["x-v0"]))
    with opened_env(cfg.env) as env:  # the head's settings against the env's action dimension
        check_head_settings(round_train_config(cfg, 0, ["x-v0"]),
                            int(np.prod(env.action_space.shape)))
    if cfg.tokenizer != TOKENIZERS[0] and not needs_tokenizer(cfg.policy):
        raise InvalidValueError(f"--tokenizer chooses the token range of the rounds; --policy "
                                f"{cfg.policy} has no tokens and would ignore it: leave "
                                "--tokenizer out or train a token policy")
    if cfg.tokenizer == "refit" and cfg.init == "warm":
        raise InvalidValueError("--tokenizer refit refits the tokenizer of rounds trained from "
                                "scratch; --init warm keeps round 0's and would ignore it: use "
                                "--init scratch, or leave --tokenizer out")
    round_dataset_id(cfg, cfg.rounds)
    check_sizes(cfg)


#: The setting each --beta schedule reads.
_SCHEDULE_SETTING = {"linear": "beta_step", "exp": "beta_decay", "constant": "beta_value"}


def check_schedule_settings(cfg: DaggerConfig) -> None:
    """Refuse the setting of a schedule other than --beta given a value other than its default
    (``--beta-value 0.3`` with the linear schedule was ignored without a word)."""
    for schedule, name in _SCHEDULE_SETTING.items():
        default = DaggerConfig.__dataclass_fields__[name].default
        if schedule != cfg.beta and getattr(cfg, name) != default:
            flag = "--" + name.replace("_", "-")
            raise InvalidValueError(
                f"{flag} sets the '{schedule}' schedule; --beta {cfg.beta} reads only "
                f"--{_SCHEDULE_SETTING[cfg.beta].replace('_', '-')} and would ignore it: leave "
                f"{flag} out or pass --beta {schedule}")


def check_sizes(cfg: DaggerConfig) -> None:
    """Refuse, before the first round, a round's collection or the evaluation whose episodes x
    horizon would not fit in memory, and episode seeds past 2^32 (they would fail after rounds
    were collected and trained)."""
    horizon = cfg.max_episode_steps or check_env_id(cfg.env).max_episode_steps
    if horizon is not None:
        check_rollout_memory(cfg.env, 1, cfg.episodes_per_round, horizon,
                             "use fewer --episodes-per-round or a smaller --max-episode-steps")
    if cfg.eval_horizon or horizon:
        check_rollout_memory(cfg.env, 2, cfg.eval_episodes, cfg.eval_horizon or horizon,
                             "use fewer --eval-episodes or a smaller --eval-horizon")
    last = max(cfg.seed + (cfg.rounds + 1) * cfg.episodes_per_round,
               cfg.eval_seed + cfg.eval_episodes)
    if last > SEED_LIMIT:
        raise InvalidValueError(f"the episode seeds of the rounds and the evaluation reach "
                                f"{last - 1}, past 2^32; use fewer --rounds, "
                                "--episodes-per-round or --eval-episodes, or smaller seeds")


def train_overrides(cfg: DaggerConfig) -> dict[str, Any]:
    """``cfg.train_overrides`` as TrainConfig keywords (unknown or DAgger-owned keys refused)."""
    extra = dict(cfg.train_overrides)
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

    return TrainConfig(dataset=join_dataset_ids(dataset_ids), out=cfg.out / f"round-{r}",
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
    """The Minari id of round ``r``'s dataset; a --dataset-base that cannot prefix one is
    refused naming the flag."""
    try:
        return validate_dataset_id(f"{dataset_base(cfg)}/round-{r}-v0")
    except InvalidValueError:
        if cfg.dataset_base is None:
            raise
        raise InvalidValueError(
            f"--dataset-base {cfg.dataset_base!r} cannot begin a Minari dataset id "
            f"('{dataset_base(cfg)}/round-{r}-v0'): use letters, digits, '-', '_' and '/'"
        ) from None
