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

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from qbc.actor import Actor, reset_actor
from qbc.errors import InvalidValueError, QbcWarning
from qbc.gym_utils import make_vector_env
from qbc.progress import progress_bar
from qbc.rollout_loop import episode_modes, run_steps


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


# -- what a rollout of an env can claim -----------------------------------------------------------
def is_keyed_env(env_id: str) -> bool:
    """True for qbc's own envs: initial state and process noise are drawn from the episode seed
    alone (keyed noise), so rollouts from the same seeds are exactly coupled, and their time
    limit is only a default episode length (any horizon is a valid episode)."""
    return env_id.startswith("qbc/")


def cap_horizons(env_id: str, horizons: Sequence[int]) -> tuple[list[int], str | None]:
    """Horizons (sorted) capped at the env's time limit, and a one-line warning if any were cut.

    A third-party env's ``spec.max_episode_steps`` (Pendulum-v1: 200) is part of its task, so
    horizons above it are dropped and the limit itself is kept as the largest horizon. qbc envs
    (:func:`is_keyed_env`) are not capped. Returns ``(horizons, message or None)``.
    """
    from qbc.gym_utils import check_env_id

    hs = sorted({int(h) for h in horizons})
    limit = check_env_id(env_id).max_episode_steps
    if is_keyed_env(env_id) or limit is None or hs[-1] <= limit:
        return hs, None
    dropped = [h for h in hs if h > limit]
    kept = sorted({h for h in hs if h <= limit} | {int(limit)})
    return kept, (f"{env_id} ends episodes after {limit} steps (its time limit): horizon(s) "
                  f"{', '.join(map(str, dropped))} capped, rolling out to H = {limit}")


def cap_horizon(env_id: str, horizon: int, what: str = "horizon(s)") -> int:
    """``horizon`` (a rollout horizon or an episode length) capped at a third-party env's time
    limit by :func:`cap_horizons`, with its one-line warning as a :class:`~qbc.errors.QbcWarning`
    when it was cut (``what`` names the setting in the warning, e.g. ``--eval-horizon``). qbc's
    own envs and unregistered ids are returned unchanged."""
    import gymnasium as gym

    import qbc  # noqa: F401  (registers the qbc/ envs)

    if env_id not in gym.registry:
        return int(horizon)
    (capped,), message = cap_horizons(env_id, [int(horizon)])
    if message:
        warnings.warn(message.replace("horizon(s)", what, 1), QbcWarning, stacklevel=2)
    return capped


def check_rollout_memory(env_id: str, n_actors: int, episodes: int, horizon: int,
                         fix: str = "use fewer --episodes or a smaller horizon") -> None:
    """Refuse a coupled rollout whose stored trajectories (float64 observations and actions,
    rewards, per actor, episode and step) would not fit in the available memory."""
    from qbc.gym_utils import make_env
    from qbc.validate import check_memory

    env = make_env(env_id)
    try:
        width = int(np.prod(env.observation_space.shape)) + int(np.prod(env.action_space.shape))
    finally:
        env.close()
    n_bytes = float(n_actors) * episodes * (horizon + 1) * (width + 2) * 8
    check_memory(n_bytes, f"{n_actors} x {episodes} episodes x {horizon} steps of {env_id}", fix)


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


# -- metrics -------------------------------------------------------------------------------------
def mean_ci95(x: np.ndarray) -> tuple[float, float, float]:
    """Mean of ``x`` (N,) with a 95% Student-t confidence interval (lo, hi)."""
    x = np.asarray(x, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def proportion_ci95(successes: np.ndarray) -> tuple[float, float, float]:
    """Fraction of True in ``successes`` (N,) with a 95% Wilson score interval (lo, hi): unlike
    a t-interval it stays inside [0, 1] and is not empty at 0% or 100%."""
    x = np.asarray(successes, dtype=bool)
    k, n = int(x.sum()), len(x)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def mode_fractions(modes: np.ndarray) -> dict[str, float]:
    """Fraction of episodes per mode, from (N,) final modes: keys "left" (+1), "right" (-1)
    and "none" (0: the obstacle was never passed)."""
    m = np.asarray(modes)
    return {"left": float((m > 0).mean()), "right": float((m < 0).mean()),
            "none": float((m == 0).mean())}


def horizon_metrics(result: RolloutResult, horizons: Sequence[int], reference: str = "expert",
                    divergence_threshold: float = 1e3) -> dict[str, Any]:
    """Horizon-error metrics of every policy against ``reference``, for each H in ``horizons``.

    For each policy and H: return J_H (mean), regret J_H(reference) − J_H(policy) (mean, 95% CI,
    per-step mean), state deviation ‖x_t − x*_t‖ over t ≤ H (mean and max), action deviation
    ‖u_t − u*_t‖ over t < H (mean and max), and the fraction of episodes that diverged by H
    (terminated, or state norm above ``divergence_threshold``). Where the env reports success
    (:attr:`RolloutResult.success`): the success rate at H (the flag at step H, or at the
    episode's end if it ended before) with its 95% Wilson interval (``success``,
    ``success_ci95``); where it reports modes: the fraction of episodes per mode by H (``modes``,
    :func:`mode_fractions`).
    Returns ``{"horizons": [...], "policies": {name: {"H": {...}}}}``.
    """
    if reference not in result.rewards:
        raise InvalidValueError(f"reference policy {reference!r} was not rolled out")
    horizons = sorted(int(h) for h in horizons)
    if not horizons or horizons[0] < 1 or horizons[-1] > result.horizon:
        raise InvalidValueError(
            f"horizons must lie in [1, {result.horizon}] (the rollout length), got {horizons}"
        )
    ref_x, ref_u = result.observations[reference], result.actions[reference]
    ref_returns = np.cumsum(result.rewards[reference], axis=0)
    out: dict[str, Any] = {"horizons": horizons, "reference": reference, "policies": {}}
    for name in result.names:
        returns = np.cumsum(result.rewards[name], axis=0)
        x, u = result.observations[name], result.actions[name]
        state_dev = _norm(x - ref_x)                  # (H+1, N)
        action_dev = _norm(u - ref_u)                 # (H, N)
        blown = np.maximum.accumulate(_norm(x[1:]) > divergence_threshold, axis=0)
        modes = episode_modes(result.modes[name]) if name in result.modes else None
        diverged = blown | ~result.alive[name]        # (H, N)
        per_h = {}
        for h in horizons:
            regret = ref_returns[h - 1] - returns[h - 1]
            mean, lo, hi = mean_ci95(regret)
            per_h[str(h)] = {
                "return": float(returns[h - 1].mean()),
                "regret": mean, "regret_ci95": [lo, hi], "regret_per_step": mean / h,
                "state_dev_mean": float(state_dev[:h + 1].mean()),
                "state_dev_max": float(state_dev[:h + 1].max()),
                "action_dev_mean": float(action_dev[:h].mean()),
                "action_dev_max": float(action_dev[:h].max()),
                "diverged_fraction": float(diverged[h - 1].mean()),
            }
            if name in result.success:
                rate, lo, hi = proportion_ci95(result.success[name][h - 1])
                per_h[str(h)].update(success=rate, success_ci95=[lo, hi])
            if name in result.modes:
                per_h[str(h)]["modes"] = mode_fractions(modes[h - 1])
        out["policies"][name] = per_h
    return out


def _norm(x: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, for (..., D) or (...) arrays."""
    return np.abs(x) if x.ndim < 3 else np.linalg.norm(x, axis=-1)


def per_step_table(result: RolloutResult, reference: str = "expert") -> list[dict[str, Any]]:
    """Rows (policy, t): mean/max state deviation, mean action deviation, mean reward, alive."""
    rows = []
    ref_x, ref_u = result.observations[reference], result.actions[reference]
    for name in result.names:
        sdev = _norm(result.observations[name] - ref_x)
        adev = _norm(result.actions[name] - ref_u)
        for t in range(result.horizon):
            rows.append({
                "policy": name, "t": t,
                "state_dev_mean": float(sdev[t].mean()), "state_dev_max": float(sdev[t].max()),
                "action_dev_mean": float(adev[t].mean()),
                "reward_mean": float(result.rewards[name][t].mean()),
                "alive_fraction": float(result.alive[name][t].mean()),
            })
    return rows


# -- growth fits ---------------------------------------------------------------------------------
#: Below this log-log slope over the upper half of the horizons, regret counts as plateaued
#: (2**0.1 = 1.07: less than 7% more regret when H doubles).
PLATEAU_SLOPE = 0.1


def fit_growth(horizons: Sequence[float], values: Sequence[float]) -> dict[str, Any]:
    """Fit ``values ≈ c·H^p`` (power law) and ``values ≈ c·exp(λH)`` (exponential), and say
    whether the values grow at all.

    Both are least-squares fits of log(value), so their residuals are comparable; the one with the
    smaller residual sum of squares is ``better``. Non-positive values are left out (a log cannot
    take them); fewer than 3 usable points give no fit.

    ``verdict`` is ``better`` only when growth is detected, else ``"no growth detected"``. The
    rule, all from the numbers: no growth when (a) the power-law slope's 95% interval reaches
    0 or below, or (b) regret has plateaued: the log-log slope over the upper half of the
    horizons (at least the two largest) is below :data:`PLATEAU_SLOPE`, or (c) the value at the
    largest horizon is non-positive (left out of the fit). ``growth_detected`` and
    ``no_growth_reason`` record which.

    Returns ``{"power": {"slope", "ci95", "r2", "rss"}, "exponential": {"rate", "ci95", "r2",
    "rss"}, "better", "verdict", "growth_detected", "no_growth_reason", "tail_slope",
    "n_points"}``.
    """
    h_all = np.asarray(horizons, dtype=np.float64)
    v_all = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v_all) & (v_all > 0)
    h, v = h_all[keep], v_all[keep]
    if len(h) < 3:
        return {"power": None, "exponential": None, "better": None,
                "verdict": "too few positive points to fit", "growth_detected": False,
                "no_growth_reason": "fewer than 3 positive values", "tail_slope": None,
                "n_points": int(len(h))}
    logv = np.log(v)
    fits = {}
    for kind, x, key in (("power", np.log(h), "slope"), ("exponential", h, "rate")):
        fit = stats.linregress(x, logv)
        half = float(stats.t.ppf(0.975, len(h) - 2) * fit.stderr)
        resid = logv - (fit.intercept + fit.slope * x)
        slope = float(fit.slope)
        fits[kind] = {key: slope, "ci95": [slope - half, slope + half],
                      "r2": float(fit.rvalue ** 2), "rss": float(resid @ resid)}
    better = "power" if fits["power"]["rss"] <= fits["exponential"]["rss"] else "exponential"
    tail = h >= np.median(h)  # the upper half: at least the two largest of >= 3 points
    tail_slope = float(np.polyfit(np.log(h[tail]), logv[tail], 1)[0])
    reason = _no_growth_reason(fits["power"]["ci95"][0], tail_slope, bool(keep[np.argmax(h_all)]))
    return {**fits, "better": better, "verdict": better if reason is None else "no growth detected",
            "growth_detected": reason is None, "no_growth_reason": reason,
            "tail_slope": tail_slope, "n_points": int(len(h))}


def _no_growth_reason(slope_lo: float, tail_slope: float, last_positive: bool) -> str | None:
    """Why the fit shows no growth (see :func:`fit_growth`), or None when it grows."""
    if not last_positive:
        return "the value at the largest horizon is not positive"
    if slope_lo <= 0:
        return "the power-law slope's 95% interval reaches 0"
    if tail_slope < PLATEAU_SLOPE:
        return (f"plateau: log-log slope {tail_slope:.2f} < {PLATEAU_SLOPE} over the largest "
                "horizons")
    return None


# -- the learner against its floor ---------------------------------------------------------------
#: A learner reaches its floor when its regret is at most FLOOR_FACTOR x the quantized expert's,
#: or at most the quantized expert's plus FLOOR_ALLOWANCE x |the expert's return| (for floors
#: near or below 0), and it fails (terminates or diverges) no more often than the floor.
FLOOR_FACTOR, FLOOR_ALLOWANCE = 2.0, 0.01


def floor_verdict(learner: Mapping[str, float], floor: Mapping[str, float],
                  expert_return: float, training: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Whether a learner reaches its quantization floor, and if not the likely cause.

    ``learner`` and ``floor`` (the quantized expert on the same coupled episodes) hold 'regret'
    and 'failed' (the fraction of episodes that terminated or diverged); ``expert_return`` is
    the expert's mean return over the same horizon. ``training`` (optional: 'best_step',
    'steps', 'stopped_early', 'select_by') lets the cause name the checkpoint selection or the
    budget.

    Returns 'ratio' (learner / floor regret, None when the floor's regret is <= 0), 'limit'
    (the largest regret that meets the target), 'met', 'cause' and 'fix' (None when met) and
    'text', one line for a terminal."""
    regret, failed = float(learner["regret"]), float(learner["failed"])
    floor_regret, floor_failed = float(floor["regret"]), float(floor["failed"])
    limit = max(FLOOR_FACTOR * floor_regret, floor_regret + FLOOR_ALLOWANCE * abs(expert_return))
    ratio = regret / floor_regret if floor_regret > 0 else None
    met = regret <= limit and failed <= floor_failed
    cause, fix = (None, None) if met else _likely_cause(failed, floor_failed, training)
    shown = f"{ratio:.2f}x the floor's" if ratio is not None else f"floor {floor_regret:.3g}"
    text = (f"learner vs floor: regret {regret:.3g} ({shown}; target <= {limit:.3g}), failed "
            f"{failed:.1%} vs the floor's {floor_failed:.1%}: "
            + ("target met" if met else f"target missed. Likely cause: {cause}; {fix}"))
    return {"regret": regret, "failed": failed, "floor_regret": floor_regret,
            "floor_failed": floor_failed, "ratio": ratio, "limit": limit, "met": met,
            "cause": cause, "fix": fix, "text": text}


def _likely_cause(failed: float, floor_failed: float,
                  training: Mapping[str, Any] | None) -> tuple[str, str]:
    """(cause, fix) of a missed target, most specific first."""
    if failed > floor_failed:
        return ("episodes reach states the demonstrations never visit (the learner fails where "
                "the quantized expert does not)",
                "collect interactive data: qbc collect --dart auto, or qbc dagger")
    t = training or {}
    steps, best = t.get("steps"), t.get("best_step")
    if steps and best is not None and best <= 0.2 * steps and t.get("select_by") != "rollout":
        return (f"checkpoint selection (best/ is step {best} of {steps})",
                "select by control: --select-by rollout")
    if steps and best is not None and best >= 0.9 * steps and not t.get("stopped_early"):
        return ("under-training (the best checkpoint is among the last and the budget ran out)",
                "a larger budget: --epochs or --steps")
    return ("states off the demonstrations or model capacity",
            "collect interactive data (qbc collect --dart auto, qbc dagger) or a larger --model")
