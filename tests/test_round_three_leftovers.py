"""What was left of the third reliability round: wrappers that drop an expert's episode starts,
flags a policy or quantizer would silently ignore, lock waits without a bound, and an expert
rebuilt from a dataset without the file check every other path makes."""

from __future__ import annotations

import numpy as np
import pytest

from qbc.certify import PerturbedActor
from qbc.rollout import QuantizedExpert, coupled_rollout
from qbc.tokenizer import ActionTokenizer


# -- wrappers forward reset() ----------------------------------------------------------------------
class PhasedExpert:
    """A scripted expert with per-episode state: its action is the step count since its last
    reset (per row), so an episode that starts without a reset acts differently."""

    def __init__(self) -> None:
        self.t: np.ndarray | None = None
        self.resets: list[object] = []

    def reset(self, mask: np.ndarray | None = None) -> None:
        self.resets.append(None if mask is None else np.array(mask))
        if mask is None or self.t is None:
            self.t = None
        else:
            self.t[np.asarray(mask, bool)] = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.t is None:
            self.t = np.zeros(len(obs))
        out = (0.01 * self.t)[:, None].astype(np.float32)
        self.t = self.t + 1
        return out


def _tokenizer() -> ActionTokenizer:
    return ActionTokenizer("uniform", 256).fit(np.linspace(-1, 1, 101, dtype=np.float32)[:, None])


def test_the_quantized_expert_passes_every_episode_start_to_its_expert():
    expert = PhasedExpert()
    q = QuantizedExpert(expert, _tokenizer())
    obs = np.zeros((3, 1), np.float32)
    for _ in range(4):
        q.act(obs)
    q.reset()
    np.testing.assert_allclose(q.act(obs), 0.0, atol=0.005)  # a fresh episode: step 0
    q.reset(np.array([True, False, True]))
    assert expert.resets[-1].tolist() == [True, False, True]
    np.testing.assert_allclose(q.act(obs)[:, 0], [0.0, 0.01, 0.0], atol=0.005)


def test_the_same_stateful_expert_alone_and_quantized_acts_the_same_in_a_coupled_rollout():
    """The closing rollout wraps the very expert it rolls out first: without the reset the
    quantized copy started where the expert's own episodes had ended."""
    expert = PhasedExpert()
    res = coupled_rollout("qbc/ScalarStable-v0",
                          {"expert": expert, "q": QuantizedExpert(expert, _tokenizer())},
                          range(2), 6)
    np.testing.assert_allclose(res.actions["q"], res.actions["expert"], atol=0.005)


def test_the_perturbed_expert_passes_episode_starts_to_its_expert():
    expert = PhasedExpert()
    actor = PerturbedActor(expert, r=0.0, duration=0)
    obs = np.zeros((2, 1), np.float32)
    actor.act(obs), actor.act(obs)
    actor.reset()
    np.testing.assert_allclose(actor.act(obs), 0.0)
