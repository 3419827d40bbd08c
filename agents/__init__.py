"""Experts (LQR, linear, arctan, SB3) that act on batches of observations.

    expert = qbc.agents.make_expert("lqr", "qbc/LinearUnstable-v0")
    actions = expert.act(obs)                       # (B, obs_dim) -> (B, act_dim) float32
"""

from qbc.agents.evaluate import evaluate_expert
from qbc.agents.experts import (
    EXPERTS,
    ArctanExpert,
    Expert,
    LinearExpert,
    available_experts,
    env_info,
    make_expert,
    register_expert,
)
from qbc.agents.sb3 import train_sb3_expert
from qbc.envs.control import closed_loop, lqr_gain, spectral_radius

__all__ = [
    "EXPERTS", "ArctanExpert", "Expert", "LinearExpert", "available_experts", "closed_loop",
    "env_info", "evaluate_expert", "lqr_gain", "make_expert", "register_expert", "spectral_radius",
    "train_sb3_expert",
]
