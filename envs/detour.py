"""A task with two equally good answers: pass an obstacle on the left or on the right.

The point of the task (issue 33) is a known answer for multimodal demonstrations: the start is
symmetric, the obstacle sits on the straight line to the goal, and a demonstrator that takes
either detour with probability 1/2 (:class:`qbc.agents.detour.DetourExpert`) leaves data whose
mean action at the start is "straight ahead", into the obstacle. A regressor of the mean fails;
a policy that draws one joint action from the demonstrated distribution can commit to a side.
"""

from __future__ import annotations

import numpy as np

from qbc.envs.base import DEFAULT_DIVERGENCE_THRESHOLD, QbcEnv, QbcVectorEnv
from qbc.envs.registry import register_env
from qbc.errors import InvalidValueError

#: Lateral drift of the registered variants (per second, times the distance from the centre
#: line): the stable one pulls back to it, the unstable one pushes away from it.
STABLE_DRIFT, UNSTABLE_DRIFT = -0.5, 1.0


class DetourEnv(QbcEnv):
    """A point mass that must pass an obstacle lying on the straight line to its goal.

    ## Dynamics
    State (px, py, oy): position of the mass (m) and the obstacle's lateral offset. The action
    is a velocity command: px' = px + dt ux, py' = py + dt (uy + drift py), then + noise_std * w
    on the position (the obstacle does not move). ``drift`` < 0 pulls the mass back to the
    centre line py = 0 (stable), ``drift`` > 0 pushes it away (unstable); 0 is neutral. The
    obstacle is a disc of radius ``obstacle_radius`` at (obstacle_x, oy); the goal is the point
    (goal_x, 0).

    ## Action space
    Velocity (ux, uy), ``Box(-action_bound, action_bound, (2,), float32)``, clipped.

    ## Observation space
    The state (px, py, oy), ``Box(-inf, inf, (3,), float32)``. oy is drawn per episode from
    N(0, obstacle_jitter^2) with a default jitter of 1e-9: physically nothing, numerically a
    per-episode constant whose float32 bits the scripted demonstrator hashes into its choice of
    side (so its choice is a pure function of the episode seed, the same in every rollout
    coupled on that seed, and no smooth policy can learn it). A policy that standardises its
    inputs sees a constant there (spreads under 1e-8 count as none in
    :class:`qbc.policy.Normalizer`).

    ## Reward
    cost c = 0.5 ||p - goal||^2 + 0.01 ||u||^2 (``info["cost"]``); reward exp(-c), in (0, 1].

    ## Starting state
    The mass at (0, 0) (+ x0_std * N(0, I), x0_std = 0 by default: exactly symmetric), the
    obstacle at (obstacle_x, oy).

    ## Episode end
    Terminated when the mass touches the obstacle (distance to its centre below the radius) or
    diverges (||x|| > divergence_threshold); truncated at ``max_episode_steps`` (50 for the
    registered ids). Reaching the goal does not end the episode: the mass should stay there.

    ## Info
    ``info["success"]``: the mass is within ``goal_radius`` of the goal and has not collided
    (an episode succeeds when this holds at its last step, as Gymnasium-Robotics'
    ``is_success``). ``info["mode"]``: +1 (left, py > oy) or -1 (right) at the step the mass
    passes the obstacle's centre (px crosses obstacle_x), 0 at every other step; an episode's
    mode is its last non-zero value (0: it never passed the obstacle).

    ## Arguments
    drift (-0.5 stable / 1.0 unstable), dt (0.1 s), obstacle_x (1.0), obstacle_radius (0.3),
    goal_x (2.0), goal_radius (0.1), obstacle_jitter (1e-9), noise_std (0.001), x0_std (0.0),
    action_bound (1.0), divergence_threshold (1e3).
    """

    #: the scripted expert of this task (``make_expert("detour", ...)``); lqr/linear refuse it.
    expert = "detour"

    def __init__(
        self,
        drift: float = STABLE_DRIFT,
        dt: float = 0.1,
        obstacle_x: float = 1.0,
        obstacle_radius: float = 0.3,
        goal_x: float = 2.0,
        goal_radius: float = 0.1,
        obstacle_jitter: float = 1e-9,
        noise_std: float = 0.001,
        x0_std: float = 0.0,
        action_bound: float = 1.0,
        divergence_threshold: float = DEFAULT_DIVERGENCE_THRESHOLD,
    ):
        values = {"drift": drift, "dt": dt, "obstacle_x": obstacle_x,
                  "obstacle_radius": obstacle_radius, "goal_x": goal_x,
                  "goal_radius": goal_radius, "obstacle_jitter": obstacle_jitter}
        for name, value in values.items():
            if not np.isfinite(float(value)):
                raise InvalidValueError(f"{name} must be finite, got {value}")
        for name in ("dt", "obstacle_radius", "goal_radius", "obstacle_jitter"):
            if float(values[name]) <= 0:
                raise InvalidValueError(
                    f"{name} must be > 0, got {values[name]}"
                    + (" (the demonstrator's choice of side is drawn from it)"
                       if name == "obstacle_jitter" else ""))
        left, right = float(obstacle_x) - float(obstacle_radius), float(obstacle_x) + float(
            obstacle_radius)
        if not (0 < left and right < float(goal_x) - float(goal_radius)):
            raise InvalidValueError(
                "the obstacle must lie strictly between the start (x = 0) and the goal: need "
                "obstacle_radius < obstacle_x and obstacle_x + obstacle_radius < goal_x - "
                f"goal_radius, got obstacle_x {obstacle_x}, radius {obstacle_radius}, goal_x "
                f"{goal_x}, goal_radius {goal_radius}")
        self.drift, self.dt = float(drift), float(dt)
        self.obstacle_x, self.obstacle_radius = float(obstacle_x), float(obstacle_radius)
        self.goal_x, self.goal_radius = float(goal_x), float(goal_radius)
        self.obstacle_jitter = float(obstacle_jitter)
        super().__init__(
            3, 2, Q=np.diag([0.5, 0.5, 0.0]), R=0.01 * np.eye(2), noise_std=noise_std,
            x0_std=x0_std, action_bound=action_bound, divergence_threshold=divergence_threshold,
        )

    def dynamics(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        px, py, oy = x[:, 0], x[:, 1], x[:, 2]
        return np.stack([px + self.dt * u[:, 0],
                         py + self.dt * (u[:, 1] + self.drift * py), oy], axis=1)

    def linearization(self) -> tuple[np.ndarray, np.ndarray]:
        A = np.diag([1.0, 1.0 + self.dt * self.drift, 1.0])
        B = self.dt * np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        return A, B

    def noise(self, w: np.ndarray) -> np.ndarray:
        return self.noise_std * w * np.array([1.0, 1.0, 0.0])  # the obstacle stays put

    def cost(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        gap = x[:, :2] - np.array([self.goal_x, 0.0])
        return 0.5 * np.sum(gap * gap, axis=1) + 0.01 * np.sum(u * u, axis=1)

    def initial_state(self, z: np.ndarray) -> np.ndarray:
        return np.stack([self.x0_std * z[:, 0], self.x0_std * z[:, 1],
                         self.obstacle_jitter * z[:, 2]], axis=1)

    def collided(self, x: np.ndarray) -> np.ndarray:
        """(B,) bool: the mass is inside the obstacle."""
        return np.hypot(x[:, 0] - self.obstacle_x, x[:, 1] - x[:, 2]) < self.obstacle_radius

    def terminal(self, x: np.ndarray) -> np.ndarray:
        return self.diverged(x) | self.collided(x)

    def step_info(self, x: np.ndarray, x_next: np.ndarray) -> dict[str, np.ndarray]:
        at_goal = np.hypot(x_next[:, 0] - self.goal_x, x_next[:, 1]) < self.goal_radius
        passing = (x[:, 0] < self.obstacle_x) & (x_next[:, 0] >= self.obstacle_x)
        side = np.where(x_next[:, 1] > x_next[:, 2], 1, -1)
        return {"success": at_goal & ~self.collided(x_next),
                "mode": np.where(passing, side, 0).astype(np.int64)}


class DetourVectorEnv(QbcVectorEnv):
    """Native vector version of :class:`DetourEnv` (same keyword arguments)."""

    env_class = DetourEnv


# Multimodal: pass an obstacle on the left or the right (qbc.agents make_expert("detour")); the
# task is done in about 30 steps, so the time limit is 50.
register_env("qbc/DetourStable-v0", DetourEnv, DetourVectorEnv, horizon=50, drift=-0.5)
register_env("qbc/DetourUnstable-v0", DetourEnv, DetourVectorEnv, horizon=50, drift=1.0)
