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


# -- the closing rollout's expert goes through the checked path ------------------------------------
def test_the_closing_rollout_does_not_load_a_dataset_expert_whose_file_changed(tmp_path):
    """`qbc train`'s closing rollout rebuilt the dataset's SB3 expert without the SHA-256 check
    that rollout, certify and DAgger make: a replaced zip (a pickle) was loaded."""
    pytest.importorskip("stable_baselines3")
    import json

    from qbc.agents.sb3 import train_sb3_expert
    from qbc.cli import main

    path = train_sb3_expert("qbc/ScalarStable-v0", algo="td3", timesteps=20, progress=False,
                            path=tmp_path / "m.zip")
    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--expert", "sb3", "--expert-path",
                 str(path), "--expert-params", '{"algo": "td3"}', "--episodes", "3",
                 "--dataset", "test/sb3-v0", "--max-episode-steps", "8", "--no-progress"]) == 0
    train = ["train", "--dataset", "test/sb3-v0", "--steps", "2", "--bins", "8",
             "--rollout-episodes", "2", "--no-progress", "--model.d-model", "16",
             "--model.n-heads", "2", "--model.n-layers", "1"]
    assert main([*train, "--out", str(tmp_path / "r1")]) == 0
    summary = json.loads((tmp_path / "r1" / "summary.json").read_text())
    assert summary["rollout"]["expert"] == "sb3"
    with open(path, "ab") as f:  # the zip changed since the dataset was collected
        f.write(b"\0")
    assert main([*train, "--out", str(tmp_path / "r2")]) == 0
    rollout = json.loads((tmp_path / "r2" / "summary.json").read_text())["rollout"]
    assert rollout["expert"] is None
    assert "SHA-256" in rollout["no_expert"] and "m.zip" in rollout["no_expert"]
