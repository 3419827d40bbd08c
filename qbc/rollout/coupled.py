"""Coupled rollouts: the expert and other policies from the same initial states, same noise.

Every policy is rolled out on its own copy of the native vector env, reset with the same
per-episode seeds; qbc envs draw the initial state and the whole process-noise sequence from the
seed alone, so the only difference between two rollouts is the policies' actions. The gap between
a policy's trajectory and the expert's is then exactly the error that the policy introduces.

>>> result = coupled_rollout("qbc/ScalarStable-v0", {"expert": expert, "learner": policy},
...                          seeds=range(100), horizon=500)
>>> metrics = horizon_metrics(result, horizons=[10, 100, 500])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qbc.envs.make import make_vector_env
from qbc.errors import InvalidValueError
from qbc.infra.progress import progress_bar
from qbc.stepping.actor import Actor, reset_actor
from qbc.stepping.limits import is_keyed_env
from qbc.stepping.loop import run_steps


@dataclass
class RolloutResult:
    """Trajectories of several policies on the same episode seeds.

    observations[name]: (H+1, N, obs_dim) float64 — x_0 .. x_H (frozen after termination);
    actions[name]: (H, N, act_dim) float64 — the actions handed to the env;
    rewards[name]: (H, N) float64 — 0 once an episode has terminated;
    alive[name]: (H, N) bool — False for steps after the episode terminated (e.g. diverged);
    success[name]: (H, N) bool — the env's ``info["success"]`` (or Fetch's
        ``info["is_success"]``) at each step, held at its final value after a termination;
        only for envs that report one;
    modes[name]: (H, N) int — the env's ``info["mode"]`` (the detour task's side of the
        obstacle, at the step it is passed), held likewise; only for envs that report one.
    """

    env_id: str
    seeds: np.ndarray
    horizon: int
    observations: dict[str, np.ndarray]
    actions: dict[str, np.ndarray]
    rewards: dict[str, np.ndarray]
    alive: dict[str, np.ndarray]
    success: dict[str, np.ndarray] = field(default_factory=dict)
    modes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.rewards)


#: What each rounding of q#π* is, and which learner decoding it is the floor of.
FLOOR_ROUNDINGS = {
    "stochastic": ("stochastic rounding between the two nearest centres: the theory's q#π* for "
                   "smooth binning (TV-continuous, unbiased, error below a bin width)"),
    "nearest": ("nearest rounding (deterministic): on smooth's grid a hard binning, what an argmax "
                "two-hot learner reproduces"),
    "deterministic": "the quantizer's deterministic encoding",
}


class QuantizedExpert:
    """The quantized expert q#π*: the expert's action passed through a tokenizer.

    With ``rng`` and a stochastic (smooth) tokenizer the tokens are drawn by stochastic rounding
    (the theory's q#π* for smooth binning); otherwise the deterministic encoding is used (for
    smooth, nearest rounding). :attr:`rounding` says which.
    """

    def __init__(self, expert: Any, tokenizer: Any, rng: np.random.Generator | None = None):
        self.expert, self.tokenizer, self.rng = expert, tokenizer, rng
        self.n_clipped = 0  # action values outside the tokenizer's range (encode clips them)
        self.n_values = 0  # action values quantized so far

    @property
    def rounding(self) -> str:
        """'stochastic', 'nearest' (a stochastic tokenizer encoded without rng) or
        'deterministic' (any other tokenizer): a key of :data:`FLOOR_ROUNDINGS`."""
        if not self.tokenizer.stochastic:
            return "deterministic"
        return "stochastic" if self.rng is not None else "nearest"

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = self.expert.act(obs)
        clipped = self.tokenizer.clipped_mask(actions)
        self.n_clipped += int(clipped.sum())
        self.n_values += int(clipped.size)
        rng = self.rng if self.tokenizer.stochastic else None
        return self.tokenizer.decode(self.tokenizer.encode(actions, rng=rng))

    # An expert with per-episode state (a scripted phase, a history, a planner bound to the
    # env) must see the same episode starts under quantization as it does alone.
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forward the start of episodes (all rows, or those of ``mask``) to the expert."""
        reset_actor(self.expert, mask)

    def bind_env(self, env: Any) -> None:
        """Forward the env to an expert that reads its state (when it has ``bind_env``)."""
        bind = getattr(self.expert, "bind_env", None)
        if callable(bind):
            bind(env)


def quantized_experts(expert: Any, tokenizer: Any, seed: int) -> dict[str, QuantizedExpert]:
    """The floors of a per-step token policy, by actor name: ``quantized_expert`` (the
    deterministic encoding, the floor of argmax decoding) and, for a stochastic (smooth)
    tokenizer, ``quantized_expert_stochastic`` (the theory's q#π*, its draws seeded by
    ``seed``)."""
    floors = {"quantized_expert": QuantizedExpert(expert, tokenizer)}
    if tokenizer.stochastic:
        floors["quantized_expert_stochastic"] = QuantizedExpert(
            expert, tokenizer, rng=np.random.default_rng(seed))
    return floors


def matching_floor(rounding: str, decode: str | None) -> bool | None:
    """Whether the q#π* of ``rounding`` is the floor a learner decoded by ``decode`` ('argmax',
    'sample', 'mean'; None: no token learner) reproduces when it fits its targets exactly:
    argmax -> the deterministic / nearest-rounding one, sample -> the stochastic one (or the
    deterministic one, which a one-hot target makes the same), mean -> none (a mean of codewords
    is not a quantized actor). None when ``decode`` is None."""
    if decode is None:
        return None
    if decode == "argmax":
        return rounding in ("nearest", "deterministic")
    if decode == "sample":
        return rounding in ("stochastic", "deterministic")
    return False


def floor_labels(actors: Mapping[str, Any], decode: str | None) -> dict[str, dict[str, Any]]:
    """Per quantized expert among ``actors``: its rounding, what that is, and whether it is the
    floor of the learner's ``decode`` (:func:`matching_floor`)."""
    return {name: {"rounding": a.rounding, "what": FLOOR_ROUNDINGS[a.rounding],
                   "floor_of_decoding": matching_floor(a.rounding, decode)}
            for name, a in actors.items() if isinstance(a, QuantizedExpert)}


def coupled_rollout(env_id: str, policies: Mapping[str, Actor], seeds: Iterable[int],
                    horizon: int, num_envs: int | None = None,
                    env_kwargs: dict[str, Any] | None = None,
                    progress: bool = False) -> RolloutResult:
    """Roll every policy out for ``horizon`` steps from each seed; coupled across policies.

    Args:
        env_id: a registered Gymnasium id (qbc envs give exact coupling of the noise).
        policies: name -> actor; batched ``act(obs (B, obs_dim)) -> (B, act_dim)``.
        seeds: one seed per episode (N of them).
        horizon: steps per episode H (the env's time limit is set to H).
        num_envs: episodes stepped together (default: all N at once).
        env_kwargs: extra keyword arguments for the env.
    """
    seeds = np.asarray(list(seeds), dtype=np.int64)
    if len(seeds) == 0:
        raise InvalidValueError("need at least one episode seed")
    if horizon < 1:
        raise InvalidValueError(f"horizon must be >= 1, got {horizon}")
    if not policies:
        raise InvalidValueError("need at least one policy to roll out")
    batch = int(num_envs or len(seeds))
    if batch < 1:
        raise InvalidValueError(f"num_envs must be >= 1, got {num_envs}")
    kwargs = {"max_episode_steps": horizon, **(env_kwargs or {})}
    parts: dict[str, list[tuple[np.ndarray, ...]]] = {name: [] for name in policies}
    chunks = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
    bar = progress_bar(total=len(chunks) * len(policies) * horizon, desc="rollout", unit="step",
                       disable=not progress, leave=False)
    for chunk in chunks:
        for name, policy in policies.items():
            parts[name].append(_rollout_one(env_id, policy, chunk, horizon, kwargs, bar))
    bar.close()
    cat = {name: [np.concatenate(x, axis=1) for x in zip(*(part[:4] for part in p), strict=True)]
           for name, p in parts.items()}
    outcome = {name: _cat_outcomes([part[4] for part in p]) for name, p in parts.items()}
    return RolloutResult(
        env_id=env_id, seeds=seeds, horizon=horizon,
        observations={n: c[0] for n, c in cat.items()}, actions={n: c[1] for n, c in cat.items()},
        rewards={n: c[2] for n, c in cat.items()}, alive={n: c[3] for n, c in cat.items()},
        success={n: o["success"].astype(bool) for n, o in outcome.items() if "success" in o},
        modes={n: o["mode"].astype(np.int64) for n, o in outcome.items() if "mode" in o},
    )


def _cat_outcomes(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The per-chunk outcome arrays (H, n) of one policy joined along the episodes; a key
    only when every chunk has it."""
    keys = set.intersection(*(set(c) for c in chunks))
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in keys}


def _rollout_one(env_id, policy, seeds, horizon, kwargs, bar):
    """One policy on one vector env for ``horizon`` steps from ``seeds``: (observations,
    actions, rewards, alive, outcomes) as in :class:`RolloutResult` (outcomes: "success",
    "mode" -> (H, N), where the env reports them), each copy frozen after its episode
    terminates (the vector env autoresets it; that second episode is not recorded)."""
    env = make_vector_env(env_id, len(seeds), **kwargs)
    try:
        steps = run_steps(env, policy, seeds, steps=horizon, on_step=lambda _: bar.update(1))
    finally:
        env.close()
    alive = steps.running(ends="terminated")                       # (H, N)
    n_alive = alive.sum(axis=0)                                    # steps up to the termination
    observations = steps.observations.astype(np.float64)
    # x_t for t past the termination stays the final observation x_{n_alive}.
    frozen = np.minimum(np.arange(horizon + 1)[:, None], n_alive[None, :])
    observations = np.take_along_axis(observations, _expand(frozen, observations), axis=0)
    actions = np.where(_expand(alive, steps.actions), steps.actions, 0.0).astype(np.float64)
    rewards = np.where(alive, steps.rewards, 0.0)
    last = np.minimum(np.arange(horizon)[:, None], np.maximum(n_alive - 1, 0)[None, :])
    outcomes = {}
    for key, source in (("success", "success"), ("success", "is_success"), ("mode", "mode")):
        if key not in outcomes and source in steps.info:
            outcomes[key] = np.take_along_axis(steps.info[source], last, axis=0)
    return observations, actions, rewards, alive, outcomes


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A (T, N) array with trailing axes of size 1, to broadcast against (T, N, ...)."""
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def check_coupling(env_id: str, expert: Actor, seed: int = 0, steps: int = 20,
                   env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whether rollouts on ``env_id`` from the same seeds are exactly coupled.

    qbc envs are exact by construction (keyed noise). For any other env the expert is rolled
    out against itself on two env copies reset with the same seeds (2 episodes, ``steps``
    steps): identical observations and rewards mean the seed fixes the whole trajectory
    (exactly coupled); any difference means regret also contains the env's own randomness
    (only approximately coupled). Returns ``{"exact", "method", "max_state_diff", "steps"}``.
    """
    if is_keyed_env(env_id):
        return {"exact": True, "method": "keyed noise (qbc env)", "max_state_diff": 0.0,
                "steps": 0}
    res = coupled_rollout(env_id, {"a": expert, "b": expert}, [seed, seed + 1], steps,
                          env_kwargs=env_kwargs)
    diff = float(np.max(np.abs(res.observations["a"] - res.observations["b"])))
    same = (diff == 0.0 and np.array_equal(res.rewards["a"], res.rewards["b"])
            and np.array_equal(res.alive["a"], res.alive["b"]))
    return {"exact": bool(same), "method": "expert against itself on two env copies",
            "max_state_diff": diff, "steps": steps}


def coupling_line(env_id: str, coupling: dict[str, Any]) -> str:
    """One line saying whether the comparison on ``env_id`` is exactly or approximately
    coupled (from :func:`check_coupling`)."""
    if coupling["method"].startswith("keyed"):
        return f"coupling: exact ({env_id} draws its noise from the episode seed)"
    if coupling["exact"]:
        return (f"coupling: exact (checked: the expert against itself on two copies of {env_id} "
                f"with the same seeds gave identical trajectories over {coupling['steps']} steps)")
    return (f"coupling: only approximate (the expert against itself on two copies of {env_id} "
            f"with the same seeds differed by up to {coupling['max_state_diff']:.3g} in the state "
            f"within {coupling['steps']} steps): regret also contains the env's own randomness")
