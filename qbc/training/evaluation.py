"""Evaluating a policy while and after it trains: validation loss and action error, checkpoint
selection (lowest validation loss or highest return of a short rollout), early stopping, and
the closing rollout against the dataset's expert on the same seeds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qbc.data.expert_choice import provenance, provenance_expert, rebuild_remembered_expert
from qbc.envs.make import opened_env
from qbc.errors import InvalidValueError, QbcError
from qbc.infra.validate import SEED_LIMIT
from qbc.policy import Normalizer, Policy
from qbc.rollout.coupled import quantized_experts
from qbc.rollout.evaluate import evaluate_actors
from qbc.rollout.growth import floor_verdict
from qbc.stepping.limits import cap_horizons, check_rollout_memory
from qbc.tokenizer import ActionTokenizer
from qbc.training.closing_rollout import ActorOutcome, ClosingRollout
from qbc.training.data import SplitTensors, make_batch

if TYPE_CHECKING:  # annotations only: the config module imports this one
    from qbc.training.config import TrainConfig


# -- validation ------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_split(module: torch.nn.Module, data: SplitTensors, tokenizer: ActionTokenizer | None,
                   normalizer: Normalizer, seed: int, chunk: int = 8192,
                   token_target: str = "two-hot", target_sigma: float = 0.0
                   ) -> dict[str, float]:
    """Validation log-loss (the training objective: the targets of ``token_target`` and
    ``target_sigma``, see :func:`qbc.training.data.make_batch`) and the mean squared action
    error of deterministic decoding, in action units."""
    module.eval()
    rng = np.random.default_rng(seed)  # fixed prefixes: the same numbers at every evaluation
    policy = Policy(module, normalizer, tokenizer, device=data.obs.device)
    loss_sum, sq_sum, n = 0.0, 0.0, len(data)
    for start in range(0, n, chunk):
        idx = torch.arange(start, min(n, start + chunk), device=data.obs.device)
        batch = make_batch(data, idx, tokenizer, token_target, rng, target_sigma)
        loss_sum += float(module.loss(batch)) * len(idx)
        pred = policy.act(policy_obs(data, idx, normalizer), deterministic=True)
        sq_sum += float(((pred - data.raw_actions[idx.cpu().numpy()]) ** 2).mean(1).sum())
    return {"val_loss": loss_sum / n, "val_action_mse": sq_sum / n}


def policy_obs(data: SplitTensors, idx: torch.Tensor, normalizer: Normalizer) -> np.ndarray:
    """Observation histories (B, K, obs_dim) of rows idx in observation units (un-normalised)."""
    x = data.obs[idx].cpu().numpy()
    return (x * normalizer.obs_std + normalizer.obs_mean).astype(np.float32)


# -- checkpoint selection and early stopping -----------------------------------------------------
def update_best(best: dict[str, Any], record: dict[str, Any], step: int,
                select_by: str) -> tuple[dict[str, Any], bool]:
    """The selection state after the evaluation ``record`` at ``step``, and whether this step's
    checkpoint becomes best/.

    ``best`` holds the selected checkpoint ('step', its 'val_loss', 'score' = its selection
    number) and the lowest validation loss so far ('min_val_loss' at 'min_val_step').
    'action-mse' selects the lowest validation action error of deterministic decoding
    (``record["val_action_mse"]``, ties to the lower validation loss); 'val-loss' the lowest
    validation loss; 'rollout' the highest ``record["select_return"]``, ties to the lower
    validation loss."""
    new = dict(best)
    lowest = best.get("min_val_loss", best["val_loss"])
    if lowest is None or record["val_loss"] < lowest:
        new.update(min_val_loss=record["val_loss"], min_val_step=step)
    if select_by == "rollout":
        key = (record["select_return"], -record["val_loss"])
        improved = best.get("score") is None or key > (best["score"], -best["val_loss"])
        score = record["select_return"]
    elif select_by == "action-mse":
        key = (-record["val_action_mse"], -record["val_loss"])
        improved = best.get("score") is None or key > (-best["score"], -best["val_loss"])
        score = record["val_action_mse"]
    else:
        improved = new.get("min_val_step") == step
        score = None
    if improved:
        new.update(val_loss=record["val_loss"], step=step, score=score)
    return new, improved


def should_stop(best: dict[str, Any], step: int, cfg: TrainConfig, earliest: int = 0) -> bool:
    """Early stopping: True once ``cfg.patience`` evaluations (patience x eval_interval steps)
    have passed without a better checkpoint by the watched number (the validation action error
    with --select-by action-mse, else the validation loss); never with patience 0, nor up to
    step ``earliest``."""
    if not cfg.patience or step <= earliest:
        return False
    if getattr(cfg, "select_by", None) == "action-mse":  # (chunk training keeps its own rule)
        last = best["step"]
    else:
        last = best.get("min_val_step", best["step"])
    return step - last >= cfg.patience * cfg.eval_interval


def selection_plan(cfg: TrainConfig, demos: Any) -> dict[str, Any]:
    """Env, seeds and horizon of the --select-by rollout evaluations: fixed seeds 5000 below the
    closing rollout's (disjoint from it and, by the same margin, from the data's)."""
    env_id = demos.env_id
    horizon = cfg.rollout_horizon or _default_horizon(_provenance(demos), env_id)
    (horizon,), _ = cap_horizons(env_id, [horizon])
    first = default_rollout_seed(demos) - 5000
    return {"env_id": env_id, "seeds": range(first, first + cfg.select_episodes),
            "horizon": horizon}


def selection_return(module: torch.nn.Module, normalizer: Normalizer,
                     tokenizer: ActionTokenizer | None, device: torch.device,
                     plan: dict[str, Any]) -> float:
    """Mean return of the current weights (argmax decoding) over the selection rollout of
    :func:`selection_plan`; the same seeds at every evaluation, so the comparison between
    checkpoints is coupled."""
    policy = Policy(module, normalizer, tokenizer, device=device)
    seeds = plan["seeds"]
    report = evaluate_actors(plan["env_id"], {"policy": policy}, seeds.start, len(seeds),
                             [plan["horizon"]], reference="policy")
    return float(report.result.rewards["policy"].sum(0).mean())


# -- the closing rollout ---------------------------------------------------------------------------
def _provenance(demos: Any) -> dict[str, Any]:
    return provenance(getattr(demos, "metadata", None))


def _default_horizon(prov: dict[str, Any], env_id: str) -> int:
    """The dataset's episode length (its provenance), else the env's time limit, else 500."""
    import gymnasium as gym

    return int(prov.get("max_episode_steps") or gym.spec(env_id).max_episode_steps or 500)


def default_rollout_seed(demos: Any) -> int:
    """A first seed past every episode seed the dataset was collected with."""
    prov = _provenance(demos)
    try:
        return int(prov["seed"]) + int(prov.get("n_episodes", demos.n_episodes)) + 10_000
    except (KeyError, TypeError, ValueError):
        return 1_000_000


def check_rollout_sizes(demos: Any, episodes: int, horizon: int | None, seed: int | None,
                        flags: str = "--rollout-episodes or a smaller --rollout-horizon") -> None:
    """Refuse, before any training, a rollout of ``episodes`` x ``horizon`` steps on the
    demonstrations' env (as :func:`rollout_evaluation` would run it after training) whose
    trajectories would not fit in memory, or whose seeds would pass 2^32."""
    import gymnasium as gym

    env_id = getattr(demos, "env_id", None)
    if episodes <= 0 or not env_id or env_id not in gym.registry:
        return
    if horizon is None:
        horizon = _default_horizon(_provenance(demos), env_id)
    (horizon,), _ = cap_horizons(env_id, [horizon])
    check_rollout_memory(env_id, 2, episodes, horizon, fix=f"use fewer {flags}")
    first = default_rollout_seed(demos) if seed is None else seed
    if first + episodes > SEED_LIMIT:
        raise InvalidValueError(f"the rollout seeds {first}..{first + episodes - 1} pass 2^32; "
                                f"use fewer {flags.split()[0]} or a smaller seed")


def rollout_evaluation(policy: Any, demos: Any, episodes: int, horizon: int | None = None,
                       seed: int | None = None, progress: bool = False,
                       training: dict[str, Any] | None = None,
                       companions: Any = None) -> ClosingRollout | None:
    """Roll ``policy`` out on the demonstrations' env against the dataset's expert, coupled
    (the same episode seeds, disjoint from the data's), ``episodes`` x ``horizon`` steps,
    measured by the library's evaluation (:func:`qbc.rollout.evaluate.evaluate_actors`).

    Returns and reward per step are taken over the full horizon (an episode that terminated or
    diverged earns nothing after it ends) and the fraction of failed episodes is given, as in
    :func:`qbc.rollout.metrics.horizon_metrics`; where the env reports success or modes, each
    actor's outcome holds them. The expert is rebuilt from the dataset's provenance; without
    one (e.g. an external Minari dataset) ``expert`` is None and ``no_expert`` says why. None
    when the env id is unknown here. A horizon past a third-party env's time limit is capped
    (``horizon_capped`` holds the warning).

    A token policy (per-step tokenizer) with an expert is compared with its floor too: the
    quantized expert (the expert's actions through the policy's tokenizer) on the same seeds
    gives ``floor_regret``, and ``verdict`` is :func:`qbc.rollout.growth.floor_verdict`
    (``training``: the run's best step, steps, early stopping and selection rule, for the
    likely cause of a miss).

    ``companions(expert, env_id, env_kwargs) -> {name: actor}``: more actors rolled out on the
    same seeds when there is an expert (e.g. a chunk policy's chunk floor), each with its own
    outcome and regret.

    A dataset collected on an env variant (``env_kwargs`` in its provenance, e.g. a sweep's
    noise-free env) is rolled out on that variant: the expert, the env and the companions are
    made with the same keywords.
    """
    import gymnasium as gym

    env_id = getattr(demos, "env_id", None)
    if not env_id or env_id not in gym.registry:
        return None
    prov = _provenance(demos)
    if horizon is None:
        horizon = _default_horizon(prov, env_id)
    (horizon,), capped = cap_horizons(env_id, [horizon])
    seed = default_rollout_seed(demos) if seed is None else seed
    env_kwargs, (expert, no_expert) = _variant_expert(prov, env_id, str(
        (getattr(demos, "metadata", None) or {}).get("dataset_id") or "the training dataset"))
    actors = _actors(policy, expert, env_id, companions, env_kwargs, seed)
    ref = "policy" if expert is None else "expert"
    per = evaluate_actors(env_id, actors, seed, episodes, [horizon], reference=ref,
                          env_kwargs=env_kwargs, progress=progress).policies
    out = ClosingRollout(env_id=env_id, episodes=episodes, horizon=horizon, first_seed=seed,
                         horizon_capped=capped, expert=None if expert is None else expert.name,
                         no_expert=no_expert,
                         actors={name: _outcome(m[str(horizon)], horizon, name, expert)
                                 for name, m in per.items()})
    if expert is not None:
        m = per["policy"][str(horizon)]
        out.regret, out.regret_ci95 = m["regret"], m["regret_ci95"]
    if "quantized_expert" in per:
        _add_floor(out, per["quantized_expert"][str(horizon)], training)
    return out


def _actors(policy: Any, expert: Any, env_id: str, companions: Any,
            env_kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    """The actors rolled out, by name: ``policy``; with an expert, ``expert`` first, the
    ``quantized_expert`` of a token policy (deterministic encoding: the floor of argmax
    decoding), for a stochastic (smooth) tokenizer also ``quantized_expert_stochastic`` (the
    theory's q#π*, its draws seeded by ``seed``, as ``qbc rollout`` makes it), and the
    ``companions``' actors (made for the env ``env_id`` with ``env_kwargs``)."""
    actors = {"policy": policy} if expert is None else {"expert": expert, "policy": policy}
    tokenizer = getattr(policy, "tokenizer", None)
    if expert is not None and isinstance(tokenizer, ActionTokenizer):
        actors.update(quantized_experts(expert, tokenizer, seed))
    if expert is not None and companions is not None:
        actors.update(companions(expert, env_id, env_kwargs))
    return actors


def _outcome(m: dict[str, Any], horizon: int, name: str, expert: Any) -> ActorOutcome:
    """One actor's metrics ``m`` at ``horizon`` (:func:`qbc.rollout.metrics.horizon_metrics`)
    as an :class:`ActorOutcome`: success and modes where the env reports them, the regret
    against the expert for actors other than the expert and the policy."""
    other = expert is not None and name not in ("expert", "policy")
    return ActorOutcome(mean_return=m["return"], reward_per_step=m["return"] / horizon,
                        failed_fraction=m["diverged_fraction"], success=m.get("success"),
                        success_ci95=m.get("success_ci95"), modes=m.get("modes"),
                        regret=m["regret"] if other else None)


def _add_floor(out: ClosingRollout, q: dict[str, Any], training: dict[str, Any] | None
               ) -> None:
    """The quantized expert's metrics ``q`` as the floor (``floor_regret``,
    ``floor_regret_ci95``) of ``out``, and the ``verdict`` of the policy against it."""
    out.floor_regret, out.floor_regret_ci95 = q["regret"], q["regret_ci95"]
    out.verdict = floor_verdict(
        {"regret": out.regret, "failed": out.actors["policy"].failed_fraction},
        {"regret": q["regret"], "failed": q["diverged_fraction"]},
        out.actors["expert"].mean_return, training)


def _variant_expert(prov: dict[str, Any], env_id: str, dataset: str
                    ) -> tuple[dict[str, Any], tuple[Any, str | None]]:
    """The env kwargs the data were collected with (a sweep's noise-free variant, ...; the
    time limit aside) and :func:`_dataset_expert` built on the env made with them."""
    env_kwargs = {k: v for k, v in (prov.get("env_kwargs") or {}).items()
                  if k != "max_episode_steps"}
    if not env_kwargs:
        return env_kwargs, _dataset_expert(prov, env_id, dataset)
    with opened_env(env_id, **env_kwargs) as env:
        return env_kwargs, _dataset_expert(prov, env, dataset)


def _dataset_expert(prov: dict[str, Any], env: Any,
                    dataset: str) -> tuple[Any, str | None]:
    """The expert named in a qbc dataset's provenance, or (None, why there is none). It is
    rebuilt by the same checked path as every other remembered expert: a model file whose
    SHA-256 is not the one recorded at collection is not loaded (SB3 zips hold pickles)."""
    spec = provenance_expert(prov)
    if spec is None:
        return None, "the dataset does not name a qbc expert (not collected by qbc collect)"
    try:
        return rebuild_remembered_expert(spec, env, dataset), None
    except (QbcError, ImportError) as exc:
        return None, f"its expert {spec['name']!r} cannot be rebuilt here ({exc})"
