"""The ``qbc rollout`` command: coupled rollouts of a trained policy (or any importable actor),
its quantized expert and the expert; metrics.json, per_step.csv, PNG plots and a summary table."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbc.chunking.execution import ChunkExecutor, execute_policy, execution_metrics, parse_execute
from qbc.chunking.floor import FLOOR_NAMES, QuantizedChunkExpert, make_planner
from qbc.cli import Command
from qbc.cli.collect import mode_line
from qbc.cli.flag_types import KeyValues, expert_params
from qbc.cli.lists import parse_horizons
from qbc.data.expert_choice import build_expert, choose_expert, policy_dataset
from qbc.envs.make import make_env
from qbc.errors import ClippedActionsWarning, InvalidValueError, QbcWarning
from qbc.infra.files import atomic_write_csv, atomic_write_json, json_safe
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    SEED_LIMIT,
    check_all,
    check_config,
)
from qbc.policy import load_policy
from qbc.policy.wrapper import Policy
from qbc.rollout.augment import ModelAugmentedPolicy, load_transition_model
from qbc.rollout.coupled import (
    QuantizedExpert,
    RolloutResult,
    check_coupling,
    coupled_rollout,
    coupling_line,
    floor_labels,
)
from qbc.rollout.growth import fit_growth, floor_verdict
from qbc.rollout.metrics import horizon_metrics, per_step_table
from qbc.rollout.plots import plot_regret_vs_horizon, plot_state_deviation
from qbc.rollout.video import video_backend, write_rollout_videos
from qbc.stepping.actor import UserActor, is_module_object, load_actor, reset_actor
from qbc.stepping.limits import cap_horizons, check_rollout_memory
from qbc.tokenizer import ActionTokenizer, clipped_message


@dataclass
class RolloutConfig:
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
    """expert: lqr, linear, arctan (qbc's own envs), sb3 (--expert-path ZIP), zoo:ENV (a
    trained actor shipped with qbc, e.g. zoo:Pendulum-v1; `qbc expert list`) or actor
    (--expert-path FOLDER, an actor folder from `qbc expert train` / `qbc expert export`);
    default: the expert that collected the policy's training dataset (recorded in its
    metadata, or given later with `qbc data set-expert`), else zoo:ENV when the zoo has the
    env, else lqr."""
    expert_path: Path | None = None
    """saved model for an sb3 expert (also replaces the path of the dataset's sb3 expert)."""
    expert_params: KeyValues = ()
    """expert parameters as KEY=VALUE pairs, e.g. gain_scale=0.8, or a JSON object (replace the
    dataset expert's parameters of the same name)."""
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
    per position: the mean of the modes, as a regressor)."""
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
DECODES = ("argmax", "sample", "mean")


def validate(cfg: RolloutConfig) -> list[int]:
    """Check every flag (before anything is loaded or written); returns the horizons."""
    check_config(cfg, RULES)
    check_all([(cfg.decode in DECODES,
                f"--decode must be one of {', '.join(DECODES)}, got {cfg.decode!r}"),
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
    return parse_horizons(cfg.horizons)


def _load_policy(cfg: RolloutConfig) -> tuple[Any, bool]:
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
    policy.decode_mode = cfg.decode
    policy.temperature = cfg.temperature
    return execute_policy(policy, cfg.execute), True


def load_actors(cfg: RolloutConfig) -> tuple[str, dict[str, Any], str | None, list[int], Any]:
    """Open every input: (env id, actors by name, horizon-cap warning, horizons, expert choice)."""
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
    choice = choose_expert(cfg.expert, cfg.expert_path,
                           expert_params(cfg.expert_params),
                           policy_dataset(cfg.policy) if checkpoint else None, env_id)
    expert = build_expert(choice, env_id)
    actors: dict[str, Any] = {"expert": expert}
    if policy is not None:
        actors["policy"] = policy
    if cfg.quantized_expert and tokenizer is not None:
        actors["quantized_expert"] = QuantizedExpert(expert, tokenizer)
        if tokenizer.stochastic:
            actors["quantized_expert_stochastic"] = QuantizedExpert(
                expert, tokenizer, rng=np.random.default_rng(cfg.seed))
    if cfg.quantized_expert and hasattr(policy, "chunk_len"):
        name, floor = chunk_floor(env_id, expert, policy)
        actors[name] = floor
    if cfg.augment == "model":
        actors["policy_model_based"] = _model_based(cfg, policy)
    if len(actors) == 1:
        raise InvalidValueError("nothing to compare with the expert: give --policy or --tokenizer")
    check_rollout_memory(env_id, len(actors), cfg.episodes, horizons[-1],
                         "use fewer --episodes or smaller --horizons")
    return env_id, actors, capped, horizons, choice


def chunk_floor(env_id: str, expert: Any, executor: Any) -> tuple[str, Any]:
    """The chunk floor of a chunk policy's executor: (its rollout name, the expert's plans
    through the policy's chunk tokenizer executed in the same mode), see
    :mod:`qbc.chunking.floor`."""
    policy = executor.policy
    floor = QuantizedChunkExpert(make_planner(env_id, expert), executor.chunk_len,
                                 getattr(policy, "chunk_tokenizer", None), env_id=env_id)
    return floor.name, ChunkExecutor(floor, executor.spec)


def floor_ratios(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """Per horizon, the chunk learner's regret and divergence beside its chunk floor's, and the
    regret ratio learner / floor (None where the floor's regret is 0); None without a floor."""
    pols = metrics["policies"]
    name = next((n for n in FLOOR_NAMES if n in pols), None)
    if name is None or "policy" not in pols:
        return None
    out = {"floor": name, "horizons": {}}
    for h in metrics["horizons"]:
        p, f = pols["policy"][str(h)], pols[name][str(h)]
        out["horizons"][str(h)] = {
            "regret": p["regret"], "floor_regret": f["regret"],
            "ratio": p["regret"] / f["regret"] if f["regret"] else None,
            "diverged": p["diverged_fraction"], "floor_diverged": f["diverged_fraction"]}
    return out


def seed_sampling(actors: dict[str, Any], seed: int) -> None:
    """Give the qbc policy among ``actors`` (inside a chunk executor too) a fresh CPU
    ``torch.Generator`` seeded with ``seed``: sampled decoding (--decode sample) draws from it,
    the same draws on every run and device. The model-based actor wraps the same policy, so
    its draws continue that stream."""
    if "policy" not in actors:
        return
    import torch

    policy = actors["policy"]
    policy = policy if isinstance(policy, Policy) else getattr(policy, "policy", None)
    if isinstance(policy, Policy):
        policy.generator = torch.Generator().manual_seed(seed)


def run_rollout(cfg: RolloutConfig) -> dict[str, Any]:
    env_id, actors, capped, horizons, choice = load_actors(cfg)
    with output_dir(cfg.out, cfg.overwrite, "rollout") as out:
        if capped:
            warnings.warn(capped, QbcWarning, stacklevel=2)
        coupling = check_coupling(env_id, actors["expert"], seed=cfg.seed)
        print(coupling_line(env_id, coupling))
        print(f"expert: {choice.name}" + (f" {json.dumps(choice.params)}" if choice.params
                                          else "") + f" (from {choice.source})")
        seeds = np.arange(cfg.seed, cfg.seed + cfg.episodes)
        seed_sampling(actors, cfg.seed)
        start = time.perf_counter()
        result = coupled_rollout(env_id, actors, seeds, horizons[-1], num_envs=cfg.num_envs,
                                 progress=cfg.progress)
        seconds = time.perf_counter() - start
        metrics = horizon_metrics(result, horizons,
                                  divergence_threshold=cfg.divergence_threshold)
        n_actions = sum(a.shape[0] * a.shape[1] for a in result.actions.values())
        metrics.update(env_id=env_id, coupling=coupling, expert=choice.to_dict(),
                       horizons_capped=capped)
        metrics["growth"] = {
            name: fit_growth(horizons, [per_h[str(h)]["regret"] for h in horizons])
            for name, per_h in metrics["policies"].items() if name != "expert"
        }
        metrics["timing"] = {"seconds": seconds, "actions_per_second": n_actions / seconds}
        metrics["clipped_actions"] = clipped_counts(actors)
        metrics["floors"] = floor_labels(actors, cfg.decode if "policy" in actors else None)
        metrics["execution"] = execution_metrics(actors)  # chunk policies: mode, decode failures
        metrics["verdict"] = learner_verdict(metrics)
        metrics["chunk_floor"] = floor_ratios(metrics)
        if cfg.video:
            metrics["videos"] = write_videos(env_id, actors, seeds[:cfg.video], horizons[-1],
                                             out, cfg.seed)
        config = {**asdict(cfg), "env": env_id, "expert_params": expert_params(cfg.expert_params)}
        write_rollout_outputs(out, result, metrics, config)
    print(format_summary(metrics))
    if metrics["verdict"]:
        print(metrics["verdict"]["text"])
    for name, e in metrics["execution"].items():
        print(f"{name}: executed {e['execute']} (k = {e['chunk_len']}): {e['chunks']} chunks "
              f"predicted, {e['decode_failures']} decode failures (repaired)")
    if metrics["chunk_floor"]:
        cf = metrics["chunk_floor"]
        ratios = ", ".join(f"H={h}: " + ("n/a" if r["ratio"] is None else f"{r['ratio']:.3g}x")
                           for h, r in cf["horizons"].items())
        print(f"learner / chunk floor ({cf['floor']}) regret: {ratios}")
    print(f"{n_actions} actions in {seconds:.1f} s ({n_actions / seconds:,.0f} actions/s); "
          f"outputs in {cfg.out}")
    return metrics


def write_videos(env_id: str, actors: dict[str, Any], seeds: np.ndarray, horizon: int,
                 out: Path, seed: int) -> list[str]:
    """:func:`qbc.rollout.video.write_rollout_videos` into ``out/videos``; paths relative to
    ``out``."""
    seed_sampling(actors, seed)  # --decode sample: the same draws as in the rollout
    paths = write_rollout_videos(env_id, actors, seeds, horizon, out / "videos")
    print(f"videos: {', '.join(str(p) for p in paths)}")
    return [str(p.relative_to(out)) for p in paths]


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


def clipped_counts(actors: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per quantized expert: action values outside its tokenizer's range (clipped to the edge
    cells) out of all it quantized; each non-zero count is also a ClippedActionsWarning."""
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
    atomic_write_json(out / "config.json", json_safe(config))
    atomic_write_json(out / "metrics.json", metrics)
    rows = per_step_table(result)
    atomic_write_csv(out / "per_step.csv", rows, lineterminator="\r\n")
    plot_regret_vs_horizon(metrics, out / "regret_vs_horizon.png", title=result.env_id)
    plot_state_deviation(rows, out / "state_deviation.png", reference="expert",
                         title=result.env_id)


def learner_verdict(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`qbc.rollout.growth.floor_verdict` of the policy at the largest horizon against the
    floor
    of its decoding (``metrics["floors"]``: the stochastic q#pi* for sampled decoding of a
    smooth tokenizer, else the deterministic one); None without a policy, an expert and a
    quantized expert. The text names the horizon and the floor."""
    per = metrics["policies"]
    floors = metrics.get("floors") or {}
    matching = [name for name, f in floors.items() if f.get("floor_of_decoding") and name in per]
    floor = matching[-1] if matching else "quantized_expert"
    if "policy" not in per or floor not in per or "expert" not in per:
        return None
    h = str(metrics["horizons"][-1])
    verdict = floor_verdict(
        {"regret": per["policy"][h]["regret"], "failed": per["policy"][h]["diverged_fraction"]},
        {"regret": per[floor][h]["regret"], "failed": per[floor][h]["diverged_fraction"]},
        per["expert"][h]["return"])
    return {**verdict, "horizon": int(h), "floor": floor,
            "text": f"H = {h}, floor {floor}: {verdict['text']}"}


def format_summary(metrics: dict[str, Any]) -> str:
    """The one-screen table: return, regret (95% CI), state deviation and divergence per policy
    and H (the expert's return first), plus the success rate (95% interval) and the mode
    coverage where the env reports them."""
    policies = metrics["policies"]
    ref = metrics["reference"]
    first = policies[ref][str(metrics["horizons"][0])]
    success = "success" in first
    lines = [f"coupled rollouts on {metrics.get('env_id', '?')} (reference: expert)",
             f"{'policy':<28}{'H':>6}{'return':>10}{'regret':>11}{'95% CI':>24}{'dev mean':>10}"
             f"{'div':>6}" + (f"{'success [95% CI]':>24}" if success else "")]
    for name in [ref] + [n for n in policies if n != ref]:
        per_h = policies[name]
        for h in metrics["horizons"]:
            m = per_h[str(h)]
            lo, hi = m["regret_ci95"]
            regret, ci = ((f"{m['regret']:.4g}", f"[{lo:.3g}, {hi:.3g}]") if name != ref
                          else ("-", "-"))
            line = (f"{name:<28}{h:>6}{m['return']:>10.4g}{regret:>11}{ci:>24}"
                    f"{m['state_dev_mean']:>10.3g}{m['diverged_fraction']:>6.0%}")
            if "success" in m:
                s_lo, s_hi = m["success_ci95"]
                cell = f"{m['success']:.0%} [{s_lo:.0%}, {s_hi:.0%}]"
                line += f"{cell:>24}"
            lines.append(line)
        last = per_h[str(metrics["horizons"][-1])]
        if "modes" in last:
            lines.append(f"{'':<28}{mode_line(last['modes'])}")
        fit = metrics.get("growth", {}).get(name)
        if fit:
            lines.append(f"{'':<28}{growth_line(fit)}")
    return "\n".join(lines + floor_lines(metrics.get("floors", {})))


def floor_lines(floors: dict[str, dict[str, Any]]) -> list[str]:
    """One line per quantized expert: its rounding and whether it is the policy's floor."""
    lines = []
    for name, f in floors.items():
        match = {True: " — the floor of this policy's decoding",
                 False: " — not the floor of this policy's decoding", None: ""}
        lines.append(f"{name}: {f['what']}{match[f['floor_of_decoding']]}")
    return lines


def growth_line(fit: dict[str, Any]) -> str:
    """One line on how regret grows with H, from :func:`qbc.rollout.growth.fit_growth`: the fitted
    power law and exponential rate, then the better fit only when growth is detected."""
    if not fit.get("power"):
        return f"growth: {fit['verdict']}"
    p = fit["power"]
    text = (f"growth: regret ~ H^{p['slope']:.2f} [{p['ci95'][0]:.2f}, {p['ci95'][1]:.2f}]; "
            f"exponential rate {fit['exponential']['rate']:.3g}/step; ")
    if fit["growth_detected"]:
        return text + f"better fit: {fit['better']}"
    return text + f"no growth detected ({fit['no_growth_reason']})"


COMMAND = Command(RolloutConfig, run_rollout,
                  "coupled rollouts vs the expert: regret and state deviation against H")
