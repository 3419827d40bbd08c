"""What an evaluation rolls out: its settings (:class:`EvalConfig`, the flags of ``qbc
rollout``), checked whole before anything is loaded (:func:`validate`), and the actors they name,
opened and checked before any output exists (:func:`open_inputs`): the policy (a qbc
checkpoint, decoded and executed as asked, or any importable actor), the expert, the quantized
expert(s) or chunk floor, and the model-based deployment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.chunking.execution import execute_policy, parse_execute
from qbc.chunking.floor import chunk_floor_actor
from qbc.data.expert_choice import ExpertChoice, build_expert, choose_expert, policy_dataset
from qbc.envs.make import make_env
from qbc.errors import InvalidValueError
from qbc.infra.validate import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    SEED_LIMIT,
    check_all,
    check_config,
    positive_ints,
)
from qbc.policy import load_policy
from qbc.policy.decoding import parse_decoding
from qbc.rollout.augment import ModelAugmentedPolicy, load_transition_model
from qbc.rollout.coupled import quantized_experts
from qbc.rollout.video import video_backend
from qbc.stepping.actor import UserActor, is_module_object, load_actor, reset_actor
from qbc.stepping.limits import cap_horizons, check_rollout_memory
from qbc.tokenizer import ActionTokenizer


@dataclass
class EvalConfig:
    """Roll a policy out against the expert from the same seeds (coupled) and measure how the
    regret and the state deviation grow with the horizon."""

    out: Path
    """output directory (metrics.json, per_step.csv, plots)."""
    policy: str | None = None
    """policy checkpoint directory (from `qbc train`), or any importable actor as
    'module:object' (an object with act(obs (N, obs_dim)) -> (N, act_dim), or a zero-argument
    factory returning one; needs --env), e.g. another library's policy to compare with; without
    it only the expert and the quantized expert (needs --tokenizer) are rolled out."""
    env: str | None = None
    """env id; default: the env of the policy's training dataset."""
    expert: str | None = None
    """expert: lqr, linear, arctan, detour (qbc's own envs), fetch-push, fetch-pick-and-place,
    maze-planner (the Gymnasium-Robotics tasks), sb3 (--expert-path ZIP), zoo:ENV (a trained
    actor shipped with qbc, e.g. zoo:Pendulum-v1; `qbc expert list`) or actor (--expert-path
    FOLDER, an actor folder from `qbc expert train` / `qbc expert export`);
    default: the expert that collected the policy's training dataset (recorded in its
    metadata, or given later with `qbc data set-expert`), else sb3 when only --expert-path
    is given, else the env's default: zoo:ENV when the zoo has the env, the env's scripted
    expert for the robotics tasks, else lqr."""
    expert_path: Path | None = None
    """the expert's model: an SB3 zip (sb3) or an actor folder (actor); also replaces the path
    of the dataset's expert."""
    expert_params: Mapping[str, Any] = field(default_factory=dict)
    """expert parameters (``make_expert`` keywords), e.g. {"gain_scale": 0.8}; they replace
    the dataset expert's parameters of the same name."""
    tokenizer: Path | None = None
    """tokenizer JSON for the quantized expert; default: the policy's own tokenizer."""
    episodes: int = 100
    """number of coupled episodes (seeds seed, seed+1, ...)."""
    horizons: tuple[int, ...] = (10, 20, 50, 100, 200, 500)
    """horizons H, space- or comma-separated (--horizons 10 50 200, or 10,50,200); the rollout
    runs to the largest. On a third-party env, horizons above its time limit (Pendulum-v1: 200)
    are capped there, with a warning."""
    num_envs: int = 100
    """episodes stepped together in one vector env."""
    seed: int = 1_000_000
    """first episode seed (keep it apart from the seeds of the training data)."""
    decode: str = "argmax"
    """policy decoding: argmax (the most likely token per position: right for a unimodal
    expert), sample (draw each token from the policy, seeded by --seed, the same draws on
    every run: commits to one mode of multimodal demonstrations) or mean (the expected codeword
    per position: the mean of the modes, as a regressor); sample:T samples at temperature T
    (the ledger's spelling of --decode sample --temperature T)."""
    temperature: float = 1.0
    """with --decode sample: divide the logits by T (T < 1 sharpens towards argmax, 1 draws
    from the learned distribution)."""
    quantized_expert: bool = True
    """also roll out the quantized expert: deterministic (for smooth tokenizers nearest rounding,
    the floor of --decode argmax) and, for smooth tokenizers, stochastic rounding too
    (quantized_expert_stochastic: the theory's q#pi*, the floor of --decode sample); for a chunk
    policy, its chunk floor: the expert's noise-free plans through the policy's chunk tokenizer,
    executed by the same --execute (docs/chunking.md)."""
    augment: str = "none"
    """'model': also deploy the policy on a learned model's state (Algorithm 1 with
    --model-sample; by default the state advances by the model's mean, qbc's variant), using the
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
    progress: bool = True
    """show progress (a bar on a terminal, a plain line every ~10 s in a log)."""
    video: int = 0
    """write a video of each of the first N coupled episodes to out/videos/: expert, policy and
    quantized expert side by side, with step and cumulative regret (MP4; GIF without
    imageio-ffmpeg; pip install 'qbc[video]'). Envs without rgb_array rendering (the qbc/ envs)
    get a drawn state/action trace."""


#: Ranges of the numeric flags (floats are also checked finite, seeds in [0, 2^32)).
RULES = {"episodes": AT_LEAST_ONE, "num_envs": AT_LEAST_ONE, "resync_every": NON_NEGATIVE,
         "temperature": POSITIVE,
         "divergence_threshold": POSITIVE, "video": NON_NEGATIVE}


def validate(cfg: EvalConfig) -> list[int]:
    """Check every flag (before anything is loaded or written); returns the horizons."""
    check_config(cfg, RULES)
    mode, _ = parse_decoding(cfg.decode)
    check_all([(":" not in cfg.decode or cfg.temperature == 1.0,
                f"--decode {cfg.decode} sets the temperature; leave --temperature out"),
               (mode == "sample" or cfg.temperature == 1.0,  # it was ignored without a word
                f"--temperature {cfg.temperature:g} applies to --decode sample; --decode "
                f"{mode} would ignore it: leave --temperature out or use --decode sample"),
               (cfg.augment == "model" or (cfg.resync_every == 0 and not cfg.model_sample),
                "--resync-every and --model-sample apply to --augment model, which is not "
                "given: they would be ignored; leave them out or pass --augment model"),
               (cfg.augment in ("none", "model"),
                f"--augment must be 'none' or 'model', got {cfg.augment!r}"),
               (cfg.seed + cfg.episodes <= SEED_LIMIT,
                f"--seed + --episodes must stay below 2^32 (episode seeds), got {cfg.seed} + "
                f"{cfg.episodes}"),
               (cfg.video <= cfg.episodes,
                f"--video must be between 0 and --episodes ({cfg.episodes}), got {cfg.video}")])
    if cfg.video:
        video_backend()  # refuse a missing imageio before any output
    if cfg.execute is not None:
        parse_execute(cfg.execute)
    return positive_ints(cfg.horizons, "--horizons")


def _load_policy(cfg: EvalConfig) -> tuple[Any, bool]:
    """The actor of ``--policy`` (None without it) and whether it is a qbc checkpoint: a
    directory is loaded as one (decoded by --decode, chunks executed by --execute), a
    'module:object' is imported (:func:`qbc.stepping.actor.load_actor`)."""
    if cfg.policy is None:
        if cfg.execute is not None:
            raise InvalidValueError("--execute needs a chunk --policy")
        return None, False
    if is_module_object(cfg.policy) and not Path(cfg.policy).exists():
        if cfg.execute is not None or cfg.augment != "none":
            raise InvalidValueError("--execute and --augment need a qbc policy checkpoint, not "
                                    f"the actor {cfg.policy!r}")
        return load_actor(cfg.policy), False

    policy = load_policy(cfg.policy)
    policy.decode_mode, temperature = parse_decoding(cfg.decode)  # sample:T, or --temperature
    policy.temperature = temperature if ":" in cfg.decode else cfg.temperature
    return execute_policy(policy, cfg.execute), True


@dataclass
class EvalInputs:
    """The opened inputs of an evaluation (:func:`open_inputs`)."""

    env_id: str
    actors: dict[str, Any]
    """by rollout name: 'expert', 'policy', 'quantized_expert', ... (the expert first)."""
    horizons: list[int]
    """ascending, capped at a third-party env's time limit."""
    expert: ExpertChoice | None
    """how the expert was chosen (None for actors handed over in memory)."""
    horizons_capped: str | None = None
    """the warning to give when horizons were capped, else None."""
    reference: str = "expert"
    """the actor regret and deviations are measured against."""
    standalone: bool = True
    """an evaluation of its own (``qbc rollout``): check the coupling, seed the policy's
    sampling from the first episode seed and warn of clipped expert actions. False for actors
    a run holds in memory (:func:`actor_inputs`): the run seeds them and reports on its own."""
    env_kwargs: dict[str, Any] | None = None
    """extra keyword arguments of the env (e.g. ``{"x0_std": 0.1}``), None for none."""


def actor_inputs(env_id: str, actors: dict[str, Any], horizons: list[int],
                 reference: str = "expert", env_kwargs: dict[str, Any] | None = None
                 ) -> EvalInputs:
    """The inputs of an evaluation of ``actors`` already in memory (by rollout name, the
    ``reference`` among them) on ``env_id`` (made with ``env_kwargs``) at ``horizons``
    (ascending, within the env's time limit): nothing is opened or checked here, the run that
    holds them did that."""
    return EvalInputs(env_id, dict(actors), list(horizons), None, reference=reference,
                      standalone=False, env_kwargs=env_kwargs)


def open_inputs(cfg: EvalConfig, datasets_root: str | Path | None = None) -> EvalInputs:
    """Check ``cfg`` and open every input it names, before any output exists; a policy's
    remembered expert is read from its dataset under ``datasets_root`` (default: the Minari
    root of :func:`qbc.data.store.minari_root`)."""
    horizons = validate(cfg)
    policy, checkpoint = _load_policy(cfg)
    env_id = cfg.env or getattr(policy, "env_id", None)
    if env_id is None:
        raise InvalidValueError("give --env (the policy does not record its env)")
    tokenizer = (ActionTokenizer.load(cfg.tokenizer) if cfg.tokenizer is not None
                 else getattr(policy, "tokenizer", None))
    check_fits_env(env_id, policy, tokenizer)
    probe_user_actor(policy, env_id, cfg.seed)
    horizons, capped = cap_horizons(env_id, horizons)
    if cfg.augment == "model" and hasattr(policy, "chunk_len"):
        raise InvalidValueError("--augment model deploys per-step token policies, not chunks")
    choice = choose_expert(cfg.expert, cfg.expert_path, dict(cfg.expert_params),
                           policy_dataset(cfg.policy) if checkpoint else None, env_id,
                           root=datasets_root)
    expert = build_expert(choice, env_id)
    actors: dict[str, Any] = {"expert": expert}
    if policy is not None:
        actors["policy"] = policy
    if cfg.quantized_expert and tokenizer is not None:
        actors.update(quantized_experts(expert, tokenizer, cfg.seed))
    if cfg.quantized_expert and hasattr(policy, "chunk_len"):
        floor = chunk_floor(env_id, expert, policy)
        if floor is not None:  # None: an env without a chunk floor (the robotics tasks)
            actors[floor[0]] = floor[1]
    if cfg.augment == "model":
        actors["policy_model_based"] = _model_based(cfg, policy)
    if len(actors) == 1:
        raise InvalidValueError("nothing to compare with the expert: give --policy or --tokenizer")
    check_rollout_memory(env_id, len(actors), cfg.episodes, horizons[-1],
                         "use fewer --episodes or smaller --horizons")
    return EvalInputs(env_id, actors, horizons, choice, capped)


def chunk_floor(env_id: str, expert: Any, executor: Any) -> tuple[str, Any] | None:
    """The chunk floor of a chunk policy's executor: (its rollout name, the expert's plans
    through the policy's chunk tokenizer executed in the same mode), see
    :mod:`qbc.chunking.floor`; None on an env without one."""
    floor = chunk_floor_actor(env_id, expert, executor.chunk_len,
                              getattr(executor.policy, "chunk_tokenizer", None), executor.spec,
                              env_name=env_id)
    return None if floor is None else (floor.policy.name, floor)


def check_fits_env(env_id: str, policy: Any = None, tokenizer: Any = None) -> None:
    """Raise InvalidValueError unless the policy's observation / action sizes and the
    tokenizer's action size equal those of the env ``env_id`` (an unknown id raises
    UnknownNameError)."""
    env = make_env(env_id)
    try:
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    finally:
        env.close()
    problems = []
    dims = (getattr(policy, "obs_dim", None), getattr(policy, "act_dim", None))
    if None not in dims and (obs_shape, act_shape) != ((dims[0],), (dims[1],)):
        problems.append(f"the policy takes {policy.obs_dim}-dimensional observations and gives "
                        f"{policy.act_dim}-dimensional actions")
    if tokenizer is not None and act_shape != (tokenizer.action_dim_,):
        problems.append(f"the tokenizer is for {tokenizer.action_dim_}-dimensional actions")
    if problems:
        raise InvalidValueError(
            f"{env_id} has observations of shape {obs_shape} and actions of shape {act_shape}, "
            "but " + " and ".join(problems) + "; pass the --env the policy was trained on (or a "
            "policy / tokenizer made for this env)")


def probe_user_actor(actor: Any, env_id: str, seed: int) -> None:
    """Call an imported actor (:class:`qbc.stepping.actor.UserActor`) once on two starting
    observations
    of ``env_id`` before any output exists: an actor that raises or returns actions of the
    wrong shape, type or finiteness is refused (UserCodeError) with nothing written. Its actions
    are checked on every later call too."""
    if not isinstance(actor, UserActor):
        return
    env = make_env(env_id)
    try:
        actor.expect(int(np.prod(env.action_space.shape)))
        obs = np.stack([env.reset(seed=seed + i)[0] for i in range(2)])
    finally:
        env.close()
    reset_actor(actor)
    actor.act(obs)


def _model_based(cfg: EvalConfig, policy: Any) -> Any:
    """The policy deployed on the state of the transition model saved beside it."""
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
