"""Gymnasium environments with known, adjustable stability, registered as ``qbc/<Name>-v0``.

Importing :mod:`qbc` registers them; each also has a native vector version::

    env = gymnasium.make("qbc/LinearUnstable-v0")
    vec = gymnasium.make_vec("qbc/LinearUnstable-v0", num_envs=1024,
                             vectorization_mode="vector_entry_point")

All share one design (:mod:`qbc.envs.base`): x' = f(x, u) + noise_std * w with the noise drawn
independently of the actions (coupled across instances with the same seed), rewards in [0, 1]
(exp(-cost) unless stated), termination when the state norm exceeds ``divergence_threshold``,
``linearization()`` and ``cost_matrices()`` on the unwrapped env. The detour task
(``qbc/Detour*-v0``) adds a collision end and ``info["success"]`` / ``info["mode"]``; it has no
LQR solution (its obstacle coordinate is uncontrollable): its expert is ``detour``.

``qbc/FetchPush-v4``, ``qbc/FetchPickAndPlace-v4`` and ``qbc/PointMaze_Medium-v3`` are
Gymnasium-Robotics tasks with flattened goal-conditioned observations (:mod:`qbc.envs.robotics`;
the optional extra ``qbc[robotics]``); they are not keyed-noise envs and keep their time limits.

Each env module registers its ids next to its classes (:func:`register_env`; the registry:
:data:`ENVS`), here and with Gymnasium.
"""

from qbc.envs.base import QbcEnv, QbcVectorEnv, keyed_normals
from qbc.envs.describe import describe
from qbc.envs.detour import DetourEnv, DetourVectorEnv
from qbc.envs.linear import (
    ArctanEnv,
    ArctanVectorEnv,
    LinearMimoEnv,
    LinearMimoVectorEnv,
    LinearSystemEnv,
    LinearSystemVectorEnv,
    ScalarEnv,
    ScalarVectorEnv,
    mimo_matrices,
)
from qbc.envs.mechanical import (
    CartPoleContinuousEnv,
    CartPoleContinuousVectorEnv,
    InvertedPendulumEnv,
    InvertedPendulumVectorEnv,
)
from qbc.envs.registry import DEFAULT_HORIZON, ENVS, EnvSpec, register_env
from qbc.envs.robotics import (
    ROBOTICS_ENVS,
    goal_space,
    observation_fields,
    unflatten_observations,
)


def available_envs() -> list[str]:
    """Registered qbc env ids, sorted (the robotics ones included: :data:`ROBOTICS_ENVS`)."""
    return ENVS.names()


__all__ = [
    "ArctanEnv", "ArctanVectorEnv", "CartPoleContinuousEnv", "CartPoleContinuousVectorEnv",
    "DEFAULT_HORIZON", "DetourEnv", "DetourVectorEnv", "ENVS", "EnvSpec",
    "InvertedPendulumEnv", "InvertedPendulumVectorEnv",
    "LinearMimoEnv", "LinearMimoVectorEnv", "LinearSystemEnv", "LinearSystemVectorEnv",
    "QbcEnv", "QbcVectorEnv", "ROBOTICS_ENVS", "ScalarEnv", "ScalarVectorEnv", "available_envs",
    "describe", "goal_space", "keyed_normals", "mimo_matrices", "observation_fields",
    "register_env", "unflatten_observations",
]
