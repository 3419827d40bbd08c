"""Execution modes of chunk policies (qbc.chunking.execution) on a scripted chunk policy whose
chunks are known exactly: open-loop order, the receding-horizon schedule, ACT ensembling weights,
decode-failure counting, and bad --execute specs."""

import numpy as np
import pytest

from qbc.chunking.execution import (
    ChunkExecutor,
    ensemble_weights,
    execute_policy,
    execution_metrics,
    parse_execute,
)
from qbc.errors import InvalidValueError


class Scripted:
    """Chunk policy: the chunk planned at call number p (0, 1, ...) for row b has action
    j = 1000 p + 10 j + b (shape (B, k, 1)); rows listed in ``fail_calls[p]`` are flagged as
    failed decodes. Records every call's observations and prev_action."""

    def __init__(self, k, fail_calls=None):
        self.chunk_len, self.calls, self.prevs = k, [], []
        self.fail_calls = fail_calls or {}

    def predict_chunks(self, obs, prev_action=None):
        p = len(self.calls)
        self.calls.append(np.array(obs))
        self.prevs.append(None if prev_action is None else np.array(prev_action))
        rows = obs[:, 0].astype(int)  # the test passes the row number as the observation
        j = np.arange(self.chunk_len)
        chunks = (1000 * p + 10 * j[None, :] + rows[:, None]).astype(np.float32)[..., None]
        failed = np.isin(np.arange(len(obs)), self.fail_calls.get(p, []))
        return chunks, failed


def run(executor, steps, B=3):
    obs = np.arange(B, dtype=np.float32)[:, None]
    return np.stack([executor.act(obs)[:, 0] for _ in range(steps)])  # (steps, B)


def test_open_loop_executes_the_k_actions_in_order_then_replans():
    policy = Scripted(k=3)
    acts = run(ChunkExecutor(policy, "open-loop"), steps=7)
    expected = [0, 10, 20, 1000, 1010, 1020, 2000]
    np.testing.assert_array_equal(acts[:, 0], expected)
    np.testing.assert_array_equal(acts[:, 2], np.array(expected) + 2)  # each row its own chunk
    assert len(policy.calls) == 3


@pytest.mark.parametrize("m, expected", [
    (1, [0, 1000, 2000, 3000, 4000]),
    (2, [0, 10, 1000, 1010, 2000]),
    (3, [0, 10, 20, 1000, 1010]),
])
def test_receding_horizon_executes_the_first_m_then_replans(m, expected):
    policy = Scripted(k=3)
    acts = run(ChunkExecutor(policy, f"receding:{m}"), steps=5, B=1)
    np.testing.assert_array_equal(acts[:, 0], expected)


def test_receding_passes_the_last_executed_action_to_the_next_plan():
    policy = Scripted(k=3)
    run(ChunkExecutor(policy, "receding:2"), steps=3, B=2)
    assert policy.prevs[0] is None
    np.testing.assert_array_equal(policy.prevs[1][:, 0], [10, 11])  # action 1 of plan 0


def test_ensemble_weights_give_weight_one_to_the_oldest_prediction():
    w = ensemble_weights(np.array([1, 2, 3, 3]), k=3, c=0.5)
    np.testing.assert_allclose(w[0], [1, 0, 0])
    np.testing.assert_allclose(w[1], np.array([np.exp(-0.5), 1, 0]) / (1 + np.exp(-0.5)))
    # column a = prediction made a steps ago: the oldest (a = 2) has i = 0, weight exp(0) = 1
    raw = np.array([np.exp(-1.0), np.exp(-0.5), 1.0])
    np.testing.assert_allclose(w[2], raw / raw.sum())
    np.testing.assert_allclose(w.sum(1), 1)
    np.testing.assert_allclose(ensemble_weights(np.array([3]), 3, 0.0), [[1 / 3] * 3])


def test_ensemble_blends_every_prediction_for_the_current_step():
    c, k = 0.5, 3
    acts = run(ChunkExecutor(Scripted(k=k), f"ensemble:{c}"), steps=4, B=1)[:, 0]
    # step t: plan p (made at step p) predicts step t with its action j = t - p: 1000 p + 10 j
    e = np.exp(-c)
    assert acts[0] == pytest.approx(0.0)
    assert acts[1] == pytest.approx((1 * 10 + e * 1000) / (1 + e))  # oldest: plan 0
    w = np.array([1, e, e * e])
    assert acts[2] == pytest.approx(w @ [20, 1010, 2000] / w.sum())
    assert acts[3] == pytest.approx(w @ [1020, 2010, 3000] / w.sum())  # plan 0 expired


def test_reset_rows_restarts_only_those_rows():
    policy = Scripted(k=3)
    ex = ChunkExecutor(policy, "open-loop")
    obs = np.arange(2, dtype=np.float32)[:, None]
    ex.act(obs)
    ex.reset_rows(np.array([False, True]))
    a = ex.act(obs)[:, 0]
    assert a[0] == 10 and a[1] == 1001  # row 1 re-planned at call 1, action 0
    assert len(policy.calls[1]) == 1  # only row 1 was asked


def test_decode_failures_are_counted_and_never_raise():
    policy = Scripted(k=2, fail_calls={0: [0, 2], 2: [1]})
    ex = ChunkExecutor(policy, "receding:1")
    run(ex, steps=4)
    ex.reset()  # counters survive a reset of the buffers
    assert ex.decode_failures == 3 and ex.n_chunks == 12
    assert execution_metrics({"p": ex, "expert": object()}) == {
        "p": {"execute": "receding:1", "chunk_len": 2, "chunks": 12, "decode_failures": 3}}


def test_a_rollout_with_a_failing_chunk_policy_counts_and_finishes():
    from qbc.rollout.coupled import coupled_rollout

    class AlwaysFails(Scripted):
        def predict_chunks(self, obs, prev_action=None):
            zeros = np.zeros((len(obs), self.chunk_len, 1), np.float32)
            return zeros, np.ones(len(obs), dtype=bool)

    ex = ChunkExecutor(AlwaysFails(k=4), "open-loop")
    res = coupled_rollout("qbc/ScalarStable-v0", {"p": ex}, seeds=range(3), horizon=10)
    assert res.actions["p"].shape == (10, 3, 1)
    assert ex.decode_failures == 3 * 3 and ex.n_chunks == 9  # plans at steps 0, 4, 8


@pytest.mark.parametrize("spec", ["", "closed", "receding", "receding:0", "receding:1.5",
                                  "receding:-2", "ensemble", "ensemble:-1", "ensemble:x",
                                  "ensemble:nan", "open-loop:3"])
def test_bad_execute_specs_are_one_line_errors(spec):
    with pytest.raises(InvalidValueError) as err:
        parse_execute(spec)
    assert "\n" not in str(err.value) and "open-loop" in str(err.value)


def test_specs_round_trip_and_m_longer_than_k_is_refused():
    for text in ("open-loop", "receding:3", "ensemble:0.01", "ensemble:0"):
        assert str(parse_execute(text)) == text
    with pytest.raises(InvalidValueError, match="M <= 3"):
        ChunkExecutor(Scripted(k=3), "receding:4")


def test_execute_applies_to_chunk_policies_only():
    class PerStep:
        def act(self, obs):
            return obs

    p = PerStep()
    assert execute_policy(p, None) is p
    with pytest.raises(InvalidValueError, match="chunk policies"):
        execute_policy(p, "open-loop")
    assert isinstance(execute_policy(Scripted(k=2), None), ChunkExecutor)
