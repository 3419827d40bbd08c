"""Nonlinear mechanical systems balanced at an unstable equilibrium: pendulum and cart-pole.

Both integrate with semi-implicit Euler (velocity first, then position with the new velocity),
and expose the exact Jacobians of that discrete map at the upright equilibrium.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.envs.base import DEFAULT_DIVERGENCE_THRESHOLD, QbcEnv, QbcVectorEnv
from qbc.envs.registry import register_env
from qbc.errors import InvalidValueError


def semi_implicit_jacobians(
    pairs: list[tuple[int, int]], acc_dx: np.ndarray, acc_du: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Jacobians (A (n, n), B (n, m)) of one semi-implicit Euler step.

    ``pairs[k] = (position index, velocity index)``; ``acc_dx[k]`` (n,) and ``acc_du[k]`` (m,)
    are the Jacobians of the k-th acceleration w.r.t. state and action at the linearisation point.
    v' = v + dt * acc(x, u), p' = p + dt * v'.
    """
    n, m = acc_dx.shape[1], acc_du.shape[1]
    A, B = np.eye(n), np.zeros((n, m))
    for k, (p, v) in enumerate(pairs):
        A[v] = np.eye(n)[v] + dt * acc_dx[k]
        B[v] = dt * acc_du[k]
        A[p] = np.eye(n)[p] + dt * A[v]
        B[p] = dt * B[v]
    return A, B


def _check_physical(**values: float) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise InvalidValueError(f"{name} must be a finite number > 0, got {value}")


class InvertedPendulumEnv(QbcEnv):
    """A torque-driven pendulum to be balanced upright.

    ## Dynamics
    theta is the angle from upright (rad, theta = 0 upright), omega its rate (rad/s):
    acc = (g / l) sin(theta) - damping / (m l^2) omega + u / (m l^2);
    omega' = omega + dt acc; theta' = theta + dt omega' (semi-implicit Euler), then
    + noise_std * w on both coordinates. Upright is unstable open loop (linearisation has an
    eigenvalue > 1). theta is not wrapped, so the linearisation at 0 is the plain Jacobian.

    ## Action space
    Torque u (N m), ``Box(-action_bound, action_bound, (1,), float32)``, clipped. The default
    bound 5 holds the pendulum up to about 30 degrees.

    ## Observation space
    The raw state (theta, omega), ``Box(-inf, inf, (2,), float32)``.

    ## Reward
    cost c = x'Qx + u'Ru with Q = diag(1, 0.1), R = 0.1 (``info["cost"]``); reward exp(-c).

    ## Starting state
    (theta, omega) ~ N(0, x0_std^2 I), x0_std = 0.1.

    ## Episode end
    Terminated when ||x|| > divergence_threshold (1e3); truncated at ``max_episode_steps``.

    ## Arguments
    mass (1 kg), length (1 m), gravity (9.81), damping (0.1), dt (0.05 s), Q, R,
    noise_std (0.01), x0_std (0.1), action_bound (5.0), divergence_threshold (1e3).
    """

    def __init__(
        self,
        mass: float = 1.0,
        length: float = 1.0,
        gravity: float = 9.81,
        damping: float = 0.1,
        dt: float = 0.05,
        Q: Any = ((1.0, 0.0), (0.0, 0.1)),
        R: Any = ((0.1,),),
        noise_std: float = 0.01,
        x0_std: float = 0.1,
        action_bound: float = 5.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        _check_physical(mass=mass, length=length, gravity=gravity, dt=dt)
        if not (np.isfinite(damping) and damping >= 0):
            raise InvalidValueError(f"damping must be >= 0, got {damping}")
        self.mass, self.length, self.gravity = float(mass), float(length), float(gravity)
        self.damping, self.dt = float(damping), float(dt)
        super().__init__(
            2, 1, Q=Q, R=R, noise_std=noise_std, x0_std=x0_std, action_bound=action_bound,
            divergence_threshold=divergence_threshold,
        )

    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        inertia = self.mass * self.length**2
        theta, omega = x[:, 0], x[:, 1]
        torque = u[:, 0] - self.damping * omega
        acc = (self.gravity / self.length) * np.sin(theta) + torque / inertia
        omega = omega + self.dt * acc
        theta = theta + self.dt * omega
        return np.stack([theta, omega], axis=1)

    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        inertia = self.mass * self.length**2
        acc_dx = np.array([[self.gravity / self.length, -self.damping / inertia]])
        acc_du = np.array([[1.0 / inertia]])
        return semi_implicit_jacobians([(0, 1)], acc_dx, acc_du, self.dt)


class CartPoleContinuousEnv(QbcEnv):
    """Cart-pole with a continuous force, balanced upright.

    ## Dynamics
    State (x, x_dot, theta, theta_dot): cart position (m) and velocity, pole angle from upright
    (rad) and rate. The classic cart-pole equations (as in Gymnasium's CartPole) with force
    F = clip(u): temp = (F + m_p l theta_dot^2 sin theta) / M,
    theta_acc = (g sin theta - cos theta temp) / (l (4/3 - m_p cos^2 theta / M)),
    x_acc = temp - m_p l theta_acc cos theta / M, with M = m_c + m_p and l the half pole length;
    semi-implicit Euler with step dt, then + noise_std * w on every coordinate. Upright is
    unstable open loop.

    ## Action space
    Force on the cart (N), ``Box(-action_bound, action_bound, (1,), float32)``, clipped.

    ## Observation space
    The raw state, ``Box(-inf, inf, (4,), float32)``; no angle or position limits end the
    episode (only divergence does), so the dynamics stay smooth for linearisation.

    ## Reward
    cost c = x'Qx + u'Ru with Q = diag(1, 0.1, 10, 0.1), R = 0.1 (``info["cost"]``);
    reward exp(-c).

    ## Starting state
    Each coordinate ~ N(0, x0_std^2), x0_std = 0.05.

    ## Episode end
    Terminated when ||x|| > divergence_threshold (1e3); truncated at ``max_episode_steps``.

    ## Arguments
    masscart (1.0), masspole (0.1), length (0.5, half pole length), gravity (9.8),
    dt (0.02 s), Q, R, noise_std (0.005), x0_std (0.05), action_bound (10.0),
    divergence_threshold (1e3).
    """

    def __init__(
        self,
        masscart: float = 1.0,
        masspole: float = 0.1,
        length: float = 0.5,
        gravity: float = 9.8,
        dt: float = 0.02,
        Q: Any = None,
        R: Any = ((0.1,),),
        noise_std: float = 0.005,
        x0_std: float = 0.05,
        action_bound: float = 10.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        _check_physical(masscart=masscart, masspole=masspole, length=length, gravity=gravity,
                        dt=dt)
        self.masscart, self.masspole = float(masscart), float(masspole)
        self.length, self.gravity, self.dt = float(length), float(gravity), float(dt)
        Q = np.diag([1.0, 0.1, 10.0, 0.1]) if Q is None else Q
        super().__init__(
            4, 1, Q=Q, R=R, noise_std=noise_std, x0_std=x0_std, action_bound=action_bound,
            divergence_threshold=divergence_threshold,
        )

    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        total = self.masscart + self.masspole
        ml = self.masspole * self.length
        pos, vel, theta, omega = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
        sin, cos = np.sin(theta), np.cos(theta)
        temp = (u[:, 0] + ml * omega**2 * sin) / total
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total)
        )
        x_acc = temp - ml * theta_acc * cos / total
        vel = vel + self.dt * x_acc
        pos = pos + self.dt * vel
        omega = omega + self.dt * theta_acc
        theta = theta + self.dt * omega
        return np.stack([pos, vel, theta, omega], axis=1)

    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        total = self.masscart + self.masspole
        ml = self.masspole * self.length
        lever = self.length * (4.0 / 3.0 - self.masspole / total)
        th_dth = self.gravity / lever  # d theta_acc / d theta at 0
        th_du = -1.0 / (total * lever)  # d theta_acc / d F
        acc_dx = np.array([[0.0, 0.0, -ml * th_dth / total, 0.0], [0.0, 0.0, th_dth, 0.0]])
        acc_du = np.array([[1.0 / total - ml * th_du / total], [th_du]])
        return semi_implicit_jacobians([(0, 1), (2, 3)], acc_dx, acc_du, self.dt)


class InvertedPendulumVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`InvertedPendulumEnv` (same keyword arguments)."""

    env_class = InvertedPendulumEnv


class CartPoleContinuousVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`CartPoleContinuousEnv` (same keyword arguments)."""

    env_class = CartPoleContinuousEnv


register_env("qbc/InvertedPendulum-v0", InvertedPendulumEnv, InvertedPendulumVectorEnv)
register_env("qbc/CartPoleContinuous-v0", CartPoleContinuousEnv, CartPoleContinuousVectorEnv)
