"""A third-party env's time limit is part of its task: every command that sets a horizon or an
episode length (collect, dagger, sweeps, train-chunked) caps it there with the one-line warning
of `qbc rollout`; qbc's own envs take any length."""

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import qbc  # noqa: F401  (registers the qbc/ envs)
from qbc.data.collect import CollectConfig, collect
from qbc.errors import QbcWarning
from qbc.interactive.dagger import DaggerConfig, within_time_limit
from qbc.stepping.limits import cap_horizon
from qbc.sweep.rows import capped_horizons
from qbc.training.closing_rollout import ClosingRollout

PENDULUM = "Pendulum-v1"  # time limit 200


class Zero:
    name = "zero"
    params: dict = {}

    def act(self, obs, deterministic=True, rng=None):
        return np.zeros((len(obs), 1), np.float32)


def _capped(caught) -> list[str]:
    return [str(w.message) for w in caught if "capped" in str(w.message)]


def test_cap_horizon_warns_as_rollout_does():
    with pytest.warns(QbcWarning) as caught:
        assert cap_horizon(PENDULUM, 500, "--eval-horizon") == 200
    assert _capped(caught) == ["Pendulum-v1 ends episodes after 200 steps (its time limit): "
                               "--eval-horizon 500 capped, rolling out to H = 200"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cap_horizon(PENDULUM, 150) == 150
        assert cap_horizon("qbc/ScalarStable-v0", 5000) == 5000  # qbc envs: any length


def test_collect_caps_max_episode_steps_at_the_time_limit(tmp_path):
    cfg = CollectConfig(env=PENDULUM, dataset_id="test/pend-long-v0", episodes=2, num_envs=2,
                        max_episode_steps=300)
    with pytest.warns(QbcWarning) as caught:
        done = collect(cfg, expert=Zero(), root=tmp_path)
    assert len(_capped(caught)) == 1 and "--max-episode-steps 300" in _capped(caught)[0]
    assert [len(e.actions) for e in done.episodes] == [200, 200]


def test_collect_on_a_qbc_env_takes_any_length(tmp_path):
    cfg = CollectConfig(env="qbc/ScalarStable-v0", dataset_id="test/scalar-long-v0",
                        episodes=1, num_envs=1, max_episode_steps=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QbcWarning)
        done = collect(cfg, expert=Zero(), root=tmp_path)
    assert len(done.episodes[0].actions) == 300


def test_dagger_caps_eval_horizon_and_episode_length(tmp_path, monkeypatch):
    cfg = DaggerConfig(env=PENDULUM, out=tmp_path / "d", eval_horizon=500, max_episode_steps=400)
    with pytest.warns(QbcWarning) as caught:
        capped = within_time_limit(cfg)
    assert (capped.eval_horizon, capped.max_episode_steps) == (200, 200)
    assert len(_capped(caught)) == 2
    # run_dagger works on the capped configuration (stopped before anything runs)
    import qbc.interactive.dagger

    seen = {}

    def stop(c):
        seen["cfg"] = c
        raise RuntimeError("stop")

    monkeypatch.setattr(qbc.interactive.dagger, "make_labeller", stop)
    with pytest.warns(QbcWarning), pytest.raises(RuntimeError, match="stop"):
        qbc.interactive.dagger.run_dagger(cfg)
    assert seen["cfg"].eval_horizon == 200
    same = DaggerConfig(env="qbc/ScalarUnstable-v0", out=tmp_path / "q", eval_horizon=500)
    assert within_time_limit(same).eval_horizon == 500


def test_sweep_cells_cap_their_horizons():
    cell = SimpleNamespace(env=PENDULUM, settings={"horizons": [10, 500]})
    with pytest.warns(QbcWarning, match="500 capped"):
        assert capped_horizons(cell) == [10, 200]
    own = SimpleNamespace(env="qbc/ScalarUnstable-v0", settings={"horizons": [10, 500]})
    assert capped_horizons(own) == [10, 500]


def test_train_chunked_warns_when_its_closing_rollout_was_capped(tmp_path, monkeypatch):
    import qbc.training.chunked as chunked

    message = "Pendulum-v1 ends episodes after 200 steps (its time limit): horizon(s) 500 capped"
    monkeypatch.setattr(chunked, "load_demonstrations", lambda ds: SimpleNamespace())
    monkeypatch.setattr(chunked, "check_rollout_sizes", lambda *a: None)
    monkeypatch.setattr(chunked, "_check_chunks_fit", lambda *a: None)
    monkeypatch.setattr(chunked, "train_chunked", lambda cfg, demos: {
        "policy": SimpleNamespace(chunk_tokenizer=None), "rank": 0, "world_size": 1})
    monkeypatch.setattr(chunked, "closing_rollout",
                        lambda cfg, policy, demos: ClosingRollout(
                            env_id="Pendulum-v1", episodes=2, horizon=200, first_seed=0,
                            horizon_capped=message, expert=None, no_expert="none"))
    monkeypatch.setattr(chunked, "_validate", lambda cfg: None)
    cfg = chunked.ChunkTrainConfig(dataset="x/y-v0", out=Path(tmp_path / "run"),
                                   policy="chunk-mlp-l1", rollout_horizon=500)
    (tmp_path / "run").mkdir()
    with pytest.warns(QbcWarning, match="500 capped"):
        chunked.run_train_chunked(cfg)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["rollout"]
