"""Linear systems x' = A x + B u + w: general, scalar, a 4-state/2-input family, and the arctan
instance of Cao & Xie's Theorem 6."""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.envs.base import DEFAULT_DIVERGENCE_THRESHOLD, QbcEnv, QbcVectorEnv, as_matrix
from qbc.envs.registry import register_env
from qbc.errors import InvalidValueError


class LinearSystemEnv(QbcEnv):
    """Discrete-time linear system with Gaussian process noise.

    ## Dynamics
    x_{t+1} = A x_t + B clip(u_t) + noise_std * w_t, with w_t ~ N(0, I) drawn from the env's
    generator independently of the actions (see :mod:`qbc.envs.base`, coupled noise).

    ## Action space
    ``Box(-action_bound, action_bound, (m,), float32)``; actions outside are clipped.

    ## Observation space
    The state x itself, ``Box(-inf, inf, (n,), float32)``.

    ## Reward
    cost c = x_t' Q x_t + u_t' R u_t (before the step, ``info["cost"]``); reward exp(-c), in
    [0, 1] and 1 only at x = 0, u = 0.

    ## Starting state
    x_0 ~ N(0, x0_std^2 I).

    ## Episode end
    Terminated when ||x|| > ``divergence_threshold`` (default 1e3) or x is not finite;
    truncated by the TimeLimit of the registered id (``max_episode_steps``).

    ## Arguments
    A (n, n), B (n, m): system matrices (nested lists keep the env spec JSON-safe).
    Q (n, n) PSD, R (m, m) PD: cost matrices, default identity.
    noise_std: process-noise standard deviation per state coordinate.
    x0_std: initial-state standard deviation per coordinate.
    action_bound: |u_i| <= action_bound.
    divergence_threshold: state norm that ends an episode.

    ``gymnasium.make("qbc/LinearSystem-v0", A=[[...]], B=[[...]])`` or construct it directly.
    """

    def __init__(
        self,
        A: Any,
        B: Any,
        Q: Any = None,
        R: Any = None,
        noise_std: float = 0.1,
        x0_std: float = 1.0,
        action_bound: float = 10.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        A = as_matrix(A, "A")
        if A.shape[0] != A.shape[1]:
            raise InvalidValueError(f"A must be square, got shape {A.shape}")
        B = as_matrix(B, "B")
        if B.shape[0] != A.shape[0]:
            raise InvalidValueError(
                f"B must have as many rows as A ({A.shape[0]}), got shape {B.shape}"
            )
        self.A, self.B = A, B
        super().__init__(
            A.shape[0], B.shape[1], Q=Q, R=R, noise_std=noise_std, x0_std=x0_std,
            action_bound=action_bound, divergence_threshold=divergence_threshold,
        )

    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return x @ self.A.T + u @ self.B.T

    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        return self.A.copy(), self.B.copy()


class ScalarEnv(LinearSystemEnv):
    """Scalar linear system x' = a x + b u + noise_std * w.

    Registered as ``qbc/ScalarStable-v0`` (a = 0.5) and ``qbc/ScalarUnstable-v0`` (a = 2).
    Spaces, reward (exp(-(q x^2 + r u^2))), start state, episode end: as
    :class:`LinearSystemEnv` with n = m = 1.

    ## Arguments
    a, b: the system's scalars (open-loop pole a). q, r: cost weights.
    noise_std (0.1), x0_std (1.0), action_bound (10.0), divergence_threshold (1e3).
    """

    def __init__(
        self,
        a: float = 0.5,
        b: float = 1.0,
        q: float = 1.0,
        r: float = 1.0,
        noise_std: float = 0.1,
        x0_std: float = 1.0,
        action_bound: float = 10.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        self.a, self.b = float(a), float(b)
        super().__init__(
            [[a]], [[b]], Q=[[q]], R=[[r]], noise_std=noise_std, x0_std=x0_std,
            action_bound=action_bound, divergence_threshold=divergence_threshold,
        )


def mimo_matrices(spectral_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The fixed (A (4, 4), B (4, 2)) of :class:`LinearMimoEnv`.

    A is block upper-triangular: a rotation by 30 degrees scaled by ``spectral_radius`` (states
    0, 1) driven by two stable modes with poles 0.5 and 0.6 (states 2, 3), which the two inputs
    actuate. Its eigenvalues are spectral_radius * exp(+-i pi/6), 0.5, 0.6, so its spectral radius
    is ``spectral_radius`` whenever that exceeds 0.6; [B, AB] has rank 4 (controllable).
    """
    rho = float(spectral_radius)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    A = np.array(
        [
            [rho * c, -rho * s, 0.2, 0.0],
            [rho * s, rho * c, 0.0, 0.2],
            [0.0, 0.0, 0.5, 0.1],
            [0.0, 0.0, 0.0, 0.6],
        ]
    )
    B = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    return A, B


class LinearMimoEnv(LinearSystemEnv):
    """Four states, two inputs: x' = A x + B u + noise_std * w with fixed A, B.

    Registered as ``qbc/LinearStable-v0`` (spectral_radius = 0.9) and ``qbc/LinearUnstable-v0``
    (spectral_radius = 1.2). A rotates and scales states 0-1 by ``spectral_radius`` per step and
    is driven through states 2-3, which the inputs act on (see :func:`mimo_matrices`); so the
    unstable version oscillates outward unless controlled. Spaces, reward, start state, episode
    end: as :class:`LinearSystemEnv` with n = 4, m = 2.

    ## Arguments
    spectral_radius: open-loop spectral radius (> 0.6). Q (4, 4), R (2, 2): cost matrices
    (identity). noise_std (0.1), x0_std (1.0), action_bound (10.0), divergence_threshold (1e3).
    """

    def __init__(
        self,
        spectral_radius: float = 0.9,
        Q: Any = None,
        R: Any = None,
        noise_std: float = 0.1,
        x0_std: float = 1.0,
        action_bound: float = 10.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        if not (np.isfinite(spectral_radius) and spectral_radius > 0):
            raise InvalidValueError(f"spectral_radius must be > 0, got {spectral_radius}")
        self.spectral_radius = float(spectral_radius)
        A, B = mimo_matrices(spectral_radius)
        super().__init__(
            A, B, Q=Q, R=R, noise_std=noise_std, x0_std=x0_std,
            action_bound=action_bound, divergence_threshold=divergence_threshold,
        )


class ArctanEnv(ScalarEnv):
    """Cao & Xie's Theorem 6 instance: a stable scalar system and an arctan-tracking reward.

    ## Dynamics
    x' = a x + b clip(u) + noise_std * w, with a = 0.2, b = 0.3 (a + b < 1) and no noise by
    default.

    ## Action space
    ``Box(-2, 2, (1,), float32)``: wide enough for arctan (|u| < pi/2) and for the adversarial
    codewords of the theorem's construction.

    ## Observation space
    x, ``Box(-inf, inf, (1,), float32)``.

    ## Reward
    1 - |u - arctan(x)| clipped to [0, 1], for the state before the step; ``info["cost"]`` is
    |u - arctan(x)|. The expert u = arctan(x) earns 1 every step. ``cost_matrices()`` still
    returns (q, r) = (1, 1) so an LQR expert can be built for comparison.

    ## Starting state
    x_0 ~ N(0, x0_std^2) with x0_std = 1.

    ## Episode end
    As :class:`LinearSystemEnv`.

    ## Arguments
    a (0.2), b (0.3), noise_std (0.0), x0_std (1.0), action_bound (2.0),
    divergence_threshold (1e3).
    """

    def __init__(
        self,
        a: float = 0.2,
        b: float = 0.3,
        noise_std: float = 0.0,
        x0_std: float = 1.0,
        action_bound: float = 2.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        super().__init__(
            a=a, b=b, noise_std=noise_std, x0_std=x0_std, action_bound=action_bound,
            divergence_threshold=divergence_threshold,
        )

    def cost(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.abs(u[:, 0] - np.arctan(x[:, 0]))

    def reward(self, x: np.ndarray, u: np.ndarray, cost: np.ndarray) -> np.ndarray:
        return np.clip(1.0 - cost, 0.0, 1.0)


class LinearSystemVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`LinearSystemEnv` (same keyword arguments)."""

    env_class = LinearSystemEnv


class ScalarVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`ScalarEnv` (same keyword arguments)."""

    env_class = ScalarEnv


class LinearMimoVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`LinearMimoEnv` (same keyword arguments)."""

    env_class = LinearMimoEnv


class ArctanVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`ArctanEnv` (same keyword arguments)."""

    env_class = ArctanEnv


# "qbc/LinearSystem-v0" is the general linear system: it needs A and B, e.g.
# make(id, A=[[1.1]], B=[[1.0]]).
register_env("qbc/ScalarStable-v0", ScalarEnv, ScalarVectorEnv, a=0.5)
register_env("qbc/ScalarUnstable-v0", ScalarEnv, ScalarVectorEnv, a=2.0)
register_env("qbc/LinearStable-v0", LinearMimoEnv, LinearMimoVectorEnv, spectral_radius=0.9)
register_env("qbc/LinearUnstable-v0", LinearMimoEnv, LinearMimoVectorEnv, spectral_radius=1.2)
register_env("qbc/Arctan-v0", ArctanEnv, ArctanVectorEnv)
register_env("qbc/LinearSystem-v0", LinearSystemEnv, LinearSystemVectorEnv)
