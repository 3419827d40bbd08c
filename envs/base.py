"""Shared machinery of the qbc environments: coupled process noise, batched dynamics, vector env.

Every qbc environment is a discrete-time system

    x_{t+1} = f(x_t, u_t) + noise_std * w_t,    w_t ~ N(0, I),

written once as *batched* numpy functions (``dynamics``, ``cost``, ``reward``) on arrays of
shape (B, n) and (B, m). The single env calls them with B = 1; the native vector env calls them
with B = num_envs, so both step through exactly the same arithmetic.

Coupled noise. At every ``reset`` the env draws one 64-bit episode key from ``self.np_random``
(its only draw). The initial state's standard-normal vector and every w_t are then a pure
function of (key, t), :func:`keyed_normals`: a SplitMix64 stream per key turned into normals by
Box-Muller. So what an episode sees depends on the seed alone, never on the actions: two envs
reset with the same seed get the same x0 and the same w_0, w_1, ... whatever they do (the
coupling that horizon-error measurements need), w_t is known in advance for any t, and the vector
env computes the noise of all copies in one array operation (no per-copy loop in ``step``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from qbc.errors import InvalidValueError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

#: Default state norm beyond which an episode terminates (keeps unstable runs finite).
DEFAULT_DIVERGENCE_THRESHOLD = 1e3


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keyed_normals(keys: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    """Standard normals (B, n) for slot ``t`` (B,) of the episodes with ``keys`` (B,) uint64.

    Slot 0 gives the initial state, slot t + 1 the process noise w_t. A pure function: the
    same (key, t) always gives the same vector, and different t give independent ones
    (outputs k*P + j of the SplitMix64 stream seeded by the key, P = 2 * ceil(n / 2), paired
    up by Box-Muller).
    """
    pairs = (n + 1) // 2
    with np.errstate(over="ignore"):
        counter = (np.asarray(t, dtype=np.uint64)[:, None] * np.uint64(2 * pairs)
                   + np.arange(1, 2 * pairs + 1, dtype=np.uint64))
        bits = _splitmix64(np.asarray(keys, dtype=np.uint64)[:, None] + counter * _GOLDEN)
    u = ((bits >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # in (0, 1]
    radius = np.sqrt(-2.0 * np.log(u[:, :pairs]))
    angle = 2.0 * np.pi * u[:, pairs:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :n]


def draw_key(rng: np.random.Generator) -> np.uint64:
    """One episode key from ``rng`` (the env's only use of its generator per reset)."""
    return rng.integers(0, 2**64, dtype=np.uint64)


def as_matrix(value: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``value`` (nested lists, array or scalar) as a finite float64 2-D array, checked."""
    try:
        arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must be a numeric matrix, got {value!r}") from None
    if arr.ndim != 2:
        raise InvalidValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise InvalidValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _check_psd(M: np.ndarray, name: str, strict: bool) -> None:
    if not np.allclose(M, M.T, atol=1e-12):
        raise InvalidValueError(f"{name} must be symmetric, got {M.tolist()}")
    lo = float(np.linalg.eigvalsh(M).min())
    if lo < -1e-12 or (strict and lo <= 0):
        kind = "positive definite" if strict else "positive semi-definite"
        raise InvalidValueError(f"{name} must be {kind} (smallest eigenvalue {lo:.3g})")


def _positive(value: float, name: str, allow_zero: bool) -> float:
    """``value`` as a float: a number (not a bool) >= 0 (> 0 without ``allow_zero``) that
    float32, the dtype of observations and actions, holds."""
    bound = ">= 0" if allow_zero else "> 0"
    try:
        if isinstance(value, bool | np.bool_):
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name} must be a finite number {bound}, got {value!r}") from None
    with np.errstate(over="ignore"):
        ok = np.isfinite(np.float32(value)) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise InvalidValueError(f"{name} must be a finite number {bound} within float32's "
                                f"range, got {value}")
    return value


class QbcEnv(gym.Env):
    """Base class: subclasses define ``obs_dim``/``act_dim`` and the batched ``dynamics``.

    Subclasses call ``super().__init__`` with the common arguments and implement
    ``dynamics(x, u)`` and ``linearization()``; they may override ``initial_state``, ``cost`` and
    ``reward``. Observations are the raw state, as float32.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        Q: Any = None,
        R: Any = None,
        noise_std: float = 0.0,
        x0_std: float = 1.0,
        action_bound: float = 1.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        n, m = self.obs_dim, self.act_dim
        self.Q = np.eye(n) if Q is None else as_matrix(Q, "Q", (n, n))
        self.R = np.eye(m) if R is None else as_matrix(R, "R", (m, m))
        _check_psd(self.Q, "Q", strict=False)
        _check_psd(self.R, "R", strict=True)
        self.noise_std = _positive(noise_std, "noise_std", allow_zero=True)
        self.x0_std = _positive(x0_std, "x0_std", allow_zero=True)
        self.action_bound = _positive(action_bound, "action_bound", allow_zero=False)
        self.divergence_threshold = _positive(
            divergence_threshold, "divergence_threshold", allow_zero=False
        )
        self.action_space = spaces.Box(-self.action_bound, self.action_bound, (m,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (n,), np.float32)
        self._x: np.ndarray | None = None
        self._key = np.zeros(1, dtype=np.uint64)
        self._t = 0

    # ----------------------------------------------------------------- model (batched, float64)
    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Noise-free next state f(x, u): x (B, n), u (B, m) already clipped -> (B, n)."""
        raise NotImplementedError

    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians (A (n, n), B (n, m)) of ``dynamics`` at x = 0, u = 0 (float64)."""
        raise NotImplementedError

    def cost_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(Q (n, n), R (m, m)) of the quadratic cost x'Qx + u'Ru, for LQR (float64 copies)."""
        return self.Q.copy(), self.R.copy()

    def cost(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Per-step cost c(x, u) >= 0: x (B, n), u (B, m) -> (B,). Default x'Qx + u'Ru."""
        return np.sum((x @ self.Q) * x, axis=1) + np.sum((u @ self.R) * u, axis=1)

    def reward(self, x: np.ndarray, u: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """Per-step reward in [0, 1] from the cost (B,): exp(-cost)."""
        return np.exp(-cost)

    def initial_state(self, z: np.ndarray) -> np.ndarray:
        """Initial states (B, n) from standard normals z (B, n): x0 ~ N(0, x0_std^2 I)."""
        return self.x0_std * z

    def clip_action(self, u: np.ndarray) -> np.ndarray:
        """Actions (B, m) as float64, clipped to [-action_bound, action_bound]."""
        return np.clip(np.asarray(u, dtype=np.float64), -self.action_bound, self.action_bound)

    def diverged(self, x: np.ndarray) -> np.ndarray:
        """(B,) bool: state norm above ``divergence_threshold`` or not finite."""
        norm_sq = np.sum(x * x, axis=1)
        return ~(norm_sq <= self.divergence_threshold**2)  # NaN compares False, so it counts

    def terminal(self, x: np.ndarray) -> np.ndarray:
        """(B,) bool: episodes that end at the new state x (B, n). Default: :meth:`diverged`;
        a task env adds its own ends (e.g. a collision)."""
        return self.diverged(x)

    def noise(self, w: np.ndarray) -> np.ndarray:
        """Process noise (B, n) from the keyed standard normals w (B, n): noise_std * w. A task
        env may keep some coordinates (e.g. a fixed obstacle) noise-free."""
        return self.noise_std * w

    def step_info(self, x: np.ndarray, x_next: np.ndarray) -> dict[str, np.ndarray]:
        """Extra per-step info from the transition x -> x_next (B, n): name -> (B,) array
        (e.g. ``success``). Default: none."""
        return {}

    @property
    def state(self) -> np.ndarray:
        """Current state (n,), float64 copy (observations are its float32 rounding)."""
        if self._x is None:
            raise gym.error.ResetNeeded("call reset() before reading the state")
        return self._x.copy()

    # ------------------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw the episode key from ``self.np_random``; x0 and the noise follow from it.

        ``options={"x0": array (n,)}`` starts from a given state; the key is drawn as always,
        so the noise sequence is the one this seed always gives.
        """
        super().reset(seed=seed)
        self._key = np.array([draw_key(self.np_random)], dtype=np.uint64)
        self._t = 0
        x0 = self.initial_state(keyed_normals(self._key, np.zeros(1), self.obs_dim))[0]
        if options and options.get("x0") is not None:
            x0 = as_matrix(options["x0"], "options['x0']", (1, self.obs_dim))[0]
        self._x = np.asarray(x0, dtype=np.float64)
        return self._x.astype(np.float32), {}

    def step(self, action):
        if self._x is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        x = self._x[None]
        u = self.clip_action(np.reshape(action, (1, self.act_dim)))
        self._t += 1
        w = keyed_normals(self._key, np.array([self._t]), self.obs_dim)
        cost = self.cost(x, u)
        reward = self.reward(x, u, cost)
        x_next = self.dynamics(x, u) + self.noise(w)
        self._x = x_next[0]
        terminated = bool(self.terminal(x_next)[0])
        extra = {k: v[0].item() for k, v in self.step_info(x, x_next).items()}
        return self._x.astype(np.float32), float(reward[0]), terminated, False, {
            "cost": float(cost[0]), **extra
        }


class QbcVectorEnv(VectorEnv):
    """Native vector version of a :class:`QbcEnv`: all copies step in one numpy operation.

    Copy i behaves exactly like the single env reset with seed ``seed + i`` (or the i-th seed of
    a list), including after Gymnasium's next-step autoreset: the step after an episode ends
    ignores that copy's action, returns its new initial observation with reward 0 and
    terminated = truncated = False. Episodes are truncated after ``max_episode_steps`` steps
    (None: never), as the TimeLimit wrapper does for the single env.

    Subclasses set ``env_class``; every other keyword is passed to it. ``info["cost"]`` holds
    the per-copy cost (0 where ``info["_cost"]`` is False, i.e. on autoreset steps), and so does
    every key of the env's :meth:`QbcEnv.step_info`.
    """

    env_class: type[QbcEnv] = QbcEnv
    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs):
        if int(num_envs) < 1:
            raise InvalidValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise InvalidValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        # The template holds the parameters and the batched model; it is never stepped.
        self.env = self.env_class(**kwargs)
        M, n = self.num_envs, self.env.obs_dim
        self.single_action_space = self.env.action_space
        self.single_observation_space = self.env.observation_space
        self.action_space = batch_space(self.single_action_space, M)
        self.observation_space = batch_space(self.single_observation_space, M)
        self._rngs: list[np.random.Generator] | None = None
        self._x = np.zeros((M, n))
        self._keys = np.zeros(M, dtype=np.uint64)
        self._steps = np.zeros(M, dtype=np.int64)
        self._prev_done = np.zeros(M, dtype=bool)

    # the template's model, so experts and describe() work on vector envs too
    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        return self.env.linearization()

    def cost_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        return self.env.cost_matrices()

    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.env.dynamics(x, u)

    @property
    def state(self) -> np.ndarray:
        """Current states (num_envs, n), float64 copy."""
        return self._x.copy()

    def _reset_copies(self, idx: np.ndarray) -> None:
        """New episodes for copies ``idx``: one key each from its own generator (the only
        per-copy loop), then x0 for all of them at once."""
        self._keys[idx] = [draw_key(self._rngs[i]) for i in idx]
        z = keyed_normals(self._keys[idx], np.zeros(len(idx)), self.env.obs_dim)
        self._x[idx] = self.env.initial_state(z)
        self._steps[idx] = 0

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ):
        """Reset every copy. ``seed``: int s (copy i gets s + i), a list of per-copy seeds, or
        None (keep the generators, or seed them from OS entropy the first time).
        ``options={"x0": (n,) or (num_envs, n)}`` sets the initial states (noise unchanged).
        """
        M = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * M
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(M)]
            super().reset(seed=int(seed))
        else:
            seeds = [int(s) for s in seed]
            if len(seeds) != M:
                raise InvalidValueError(
                    f"reset(seed=[...]) needs one seed per copy ({M}), got {len(seeds)}"
                )
        if self._rngs is None or seed is not None:
            self._rngs = [
                seeding.np_random(s)[0] if s is not None or self._rngs is None else self._rngs[i]
                for i, s in enumerate(seeds)
            ]
        self._reset_copies(np.arange(M))
        if options and options.get("x0") is not None:
            x0 = as_matrix(options["x0"], "options['x0']")
            if x0.shape not in ((1, self.env.obs_dim), self._x.shape):
                raise InvalidValueError(
                    f"options['x0'] must have shape ({self.env.obs_dim},) or {self._x.shape}, "
                    f"got {x0.shape}"
                )
            self._x[:] = x0
        self._prev_done[:] = False
        return self._x.astype(np.float32), {}

    def step(self, actions):
        if self._rngs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        env, M = self.env, self.num_envs
        u = env.clip_action(np.reshape(actions, (M, env.act_dim)))
        resetting = self._prev_done
        live = ~resetting
        w = keyed_normals(self._keys, self._steps + 1, env.obs_dim)
        x = self._x
        cost = env.cost(x, u)
        reward = env.reward(x, u, cost)
        self._x = env.dynamics(x, u) + env.noise(w)
        self._steps += 1
        terminated = env.terminal(self._x)
        extra = env.step_info(x, self._x)
        if self.max_episode_steps is None:
            truncated = np.zeros(M, dtype=bool)
        else:
            truncated = self._steps >= self.max_episode_steps
        if resetting.any():
            self._reset_copies(np.flatnonzero(resetting))
            reward[resetting] = 0.0
            cost[resetting] = 0.0
            terminated[resetting] = False
            truncated[resetting] = False
        self._prev_done = terminated | truncated
        info = {"cost": cost, "_cost": live.copy()}
        for key, value in extra.items():  # as cost: zero, and masked out, on autoreset steps
            value[resetting] = 0
            info[key], info[f"_{key}"] = value, live.copy()
        return self._x.astype(np.float32), reward, terminated, truncated, info
