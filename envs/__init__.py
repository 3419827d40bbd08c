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
"""

from gymnasium.envs.registration import register, registry

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

#: Default horizon (TimeLimit) of every registered env.
DEFAULT_HORIZON = 200

#: id -> (module:class of the single env, of the vector env, registered kwargs)
ENV_SPECS: dict[str, tuple[str, str, dict]] = {
    "qbc/ScalarStable-v0": ("linear:ScalarEnv", "linear:ScalarVectorEnv", {"a": 0.5}),
    "qbc/ScalarUnstable-v0": ("linear:ScalarEnv", "linear:ScalarVectorEnv", {"a": 2.0}),
    "qbc/LinearStable-v0": (
        "linear:LinearMimoEnv", "linear:LinearMimoVectorEnv", {"spectral_radius": 0.9}
    ),
    "qbc/LinearUnstable-v0": (
        "linear:LinearMimoEnv", "linear:LinearMimoVectorEnv", {"spectral_radius": 1.2}
    ),
    "qbc/Arctan-v0": ("linear:ArctanEnv", "linear:ArctanVectorEnv", {}),
    "qbc/InvertedPendulum-v0": (
        "mechanical:InvertedPendulumEnv", "mechanical:InvertedPendulumVectorEnv", {}
    ),
    "qbc/CartPoleContinuous-v0": (
        "mechanical:CartPoleContinuousEnv", "mechanical:CartPoleContinuousVectorEnv", {}
    ),
    # Multimodal: pass an obstacle on the left or the right (qbc.agents make_expert("detour")).
    "qbc/DetourStable-v0": ("detour:DetourEnv", "detour:DetourVectorEnv", {"drift": -0.5}),
    "qbc/DetourUnstable-v0": ("detour:DetourEnv", "detour:DetourVectorEnv", {"drift": 1.0}),
    # General linear system: needs A and B, e.g. make(id, A=[[1.1]], B=[[1.0]]).
    "qbc/LinearSystem-v0": ("linear:LinearSystemEnv", "linear:LinearSystemVectorEnv", {}),
}

#: Ids whose time limit is not DEFAULT_HORIZON (the detour task is done in about 30 steps).
HORIZONS: dict[str, int] = {"qbc/DetourStable-v0": 50, "qbc/DetourUnstable-v0": 50}


def available_envs() -> list[str]:
    """Registered qbc env ids, sorted."""
    return sorted(ENV_SPECS)


for _id, (_single, _vector, _kwargs) in ENV_SPECS.items():
    if _id not in registry:  # importlib reloads must not warn about re-registration
        register(
            id=_id,
            entry_point=f"qbc.envs.{_single}",
            vector_entry_point=f"qbc.envs.{_vector}",
            max_episode_steps=HORIZONS.get(_id, DEFAULT_HORIZON),
            kwargs=_kwargs,
        )

__all__ = [
    "ArctanEnv", "ArctanVectorEnv", "CartPoleContinuousEnv", "CartPoleContinuousVectorEnv",
    "DEFAULT_HORIZON", "DetourEnv", "DetourVectorEnv", "ENV_SPECS", "HORIZONS",
    "InvertedPendulumEnv", "InvertedPendulumVectorEnv",
    "LinearMimoEnv", "LinearMimoVectorEnv", "LinearSystemEnv", "LinearSystemVectorEnv",
    "QbcEnv", "QbcVectorEnv", "ScalarEnv", "ScalarVectorEnv", "available_envs",
    "describe", "keyed_normals", "mimo_matrices",
]
