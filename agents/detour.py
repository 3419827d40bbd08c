"""The scripted demonstrator of the detour task (:class:`qbc.envs.DetourEnv`): left or right
with probability 1/2, committed for the whole episode.

Its choice of side is a hash (SplitMix64) of the float32 bits of the obstacle's lateral offset
oy, a per-episode constant of the observation drawn from the episode seed. So the expert is a
deterministic function of the observation (no hidden state, no ``reset`` needed): every rollout
coupled on a seed — the expert, the quantized expert, DAgger's labels — takes the same side,
while the side is independent of anything a smooth policy could read from the state.

The path: a lateral bump y_ref(x) = (oy + m A) exp(-((x - ox)/w)^2 / 2) around the obstacle
(m = +1 left, -1 right; A = radius + margin), tracked with a feed-forward term, proportional
feedback and compensation of the env's drift; forward speed ``speed`` until the goal, where a
proportional term brings it to rest. The bump starts flat, so the two sides separate slowly and
the demonstrations near the start are a 50/50 mixture (the multimodal part).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.agents.base import Expert
from qbc.errors import InvalidValueError

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def detour_side(oy: np.ndarray) -> np.ndarray:
    """+1 (left) or -1 (right) per value of oy (B,): the low bit of SplitMix64 of its float32
    bit pattern; balanced over random oy."""
    z = np.asarray(oy, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
    return np.where((z >> np.uint64(63)) == 1, 1.0, -1.0)


class DetourExpert(Expert):
    """Scripted left-or-right detour; see the module docstring.

    Args:
        margin: clearance added to the obstacle radius at the widest point of the detour (m).
        width: width w of the bump (m): smaller commits sooner.
        speed: forward speed (m/s) before the goal.
        gain: proportional gain (1/s) of the lateral tracking and the stop at the goal.
    """

    name = "detour"

    def __init__(self, info: dict[str, Any], margin: float = 0.2, width: float = 0.35,
                 speed: float = 1.0, gain: float = 3.0, noise_std: float = 0.0, seed: int = 0):
        params = {"margin": float(margin), "width": float(width), "speed": float(speed),
                  "gain": float(gain)}
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        env = info.get("model")
        env = getattr(env, "env", env)  # a native vector env: its template env holds the task
        if env is None or not hasattr(env, "obstacle_radius"):
            raise InvalidValueError("the detour expert acts on the detour task "
                                    "(qbc/DetourStable-v0, qbc/DetourUnstable-v0)")
        for key, value in params.items():
            if not (np.isfinite(value) and value > 0):
                raise InvalidValueError(f"detour expert {key} must be > 0, got {value}")
        self.env = env
        self.margin, self.width, self.speed, self.gain = (params[k] for k in params)

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        env = self.env
        px, py, oy = obs[:, 0], obs[:, 1], obs[:, 2]
        side = detour_side(oy)
        s = (px - env.obstacle_x) / self.width
        bump = np.exp(-0.5 * s * s)
        peak = oy + side * (env.obstacle_radius + self.margin)
        ux = np.clip(self.gain * (env.goal_x - px), -self.speed, self.speed)
        y_ref = peak * bump
        slope = -peak * bump * s / self.width            # d y_ref / d px
        uy = slope * ux + self.gain * (y_ref - py) - env.drift * py
        return np.stack([ux, uy], axis=1)
