"""qbc collect: vectorised expert rollouts into Minari datasets (boundaries, seeds, metadata)."""

import json
import os

import gymnasium as gym
import minari
import numpy as np
import pytest
import tyro

import qbc
import qbc.data.collect
from qbc.cli import main
from qbc.cli.collect import CollectArgs, collect_config
from qbc.data import dataset_path, load_demonstrations
from qbc.data.collect import CollectConfig, collect
from qbc.data.episodes import rollout_episodes
from qbc.errors import InvalidValueError, OutputExistsError, UnknownNameError

CAR = "MountainCarContinuous-v0"  # no native vector version: exercises the sync fallback
H = 110  # short horizon: with noise, some episodes reach the goal (terminate), some truncate


class Pump:
    """Stand-in expert: push in the direction of motion (energy pumping), batched."""

    name = "pump"
    params = {"gain": 1.0}

    def act(self, obs, deterministic=True, rng=None):
        return np.where(obs[:, 1:2] >= 0, 1.0, -1.0).astype(np.float32)


def car_cfg(dataset_id="test/car-v0", **kw):
    base = dict(env=CAR, dataset_id=dataset_id, expert="pump", episodes=8, num_envs=3, seed=0,
                expert_noise=0.5, max_episode_steps=H)
    return CollectConfig(**{**base, **kw})


def arrays(demos):
    return {k: getattr(demos, k) for k in ("observations", "actions", "next_observations",
                                           "rewards", "terminations", "truncations",
                                           "episode_ids")}


def assert_same(a, b, atol=0.0):
    for k, v in arrays(a).items():
        np.testing.assert_allclose(v, getattr(b, k), rtol=0, atol=atol, err_msg=k)


def test_round_trip_through_minari():
    collect(car_cfg(), expert=Pump())
    ds = minari.load_dataset("test/car-v0")
    assert ds.total_episodes == 8
    eps = list(ds.iterate_episodes())
    assert ds.total_steps == sum(len(e.rewards) for e in eps)
    assert ds.storage.metadata["data_format"] == "hdf5"
    env = ds.recover_environment()
    assert env.spec.id == CAR and env.spec.max_episode_steps == H
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, eps[0].observations[0])
    env.step(eps[0].actions[0])


def test_episodes_replay_exactly_and_end_at_their_boundaries():
    collect(car_cfg(), expert=Pump())
    eps = list(minari.load_dataset("test/car-v0").iterate_episodes())
    lengths = [len(e.rewards) for e in eps]
    assert len(set(lengths)) > 1  # the boundaries differ between copies of one wave
    assert any(e.terminations[-1] for e in eps) and any(not e.terminations[-1] for e in eps)
    env = gym.make(CAR, max_episode_steps=H)
    for k, ep in enumerate(eps):
        done = ep.terminations | ep.truncations
        assert done[-1] and not done[:-1].any()
        obs, _ = env.reset(seed=k)  # episode k is seeded with seed + k
        np.testing.assert_array_equal(obs, ep.observations[0])
        for t, a in enumerate(ep.actions):
            obs, r, term, trunc, _ = env.step(a)
            np.testing.assert_array_equal(obs, ep.observations[t + 1])
            assert (r, term, trunc) == (ep.rewards[t], ep.terminations[t], ep.truncations[t])
    # flat view: within an episode next_obs[t] == obs[t+1]; across a boundary it is the
    # final observation, not the next episode's reset observation
    d = load_demonstrations("test/car-v0")
    ends = np.flatnonzero(d.terminations | d.truncations)
    np.testing.assert_array_equal(ends + 1, np.cumsum(lengths))
    for k, e in enumerate(ends):
        np.testing.assert_array_equal(d.next_observations[e], eps[k].observations[-1])
        if e + 1 < len(d):
            assert not np.array_equal(d.next_observations[e], d.observations[e + 1])
    inner = np.setdiff1d(np.arange(len(d) - 1), ends)
    np.testing.assert_array_equal(d.next_observations[inner], d.observations[inner + 1])


def test_metadata_and_config_recorded():
    collect(car_cfg(seed=5), expert=Pump())
    ds = minari.load_dataset("test/car-v0")
    q = ds.storage.metadata["qbc"]
    assert q["qbc_version"] == qbc.__version__
    assert q["expert"] == {"name": "pump", "params": {"gain": 1.0}}
    assert q["seed"] == 5 and q["expert_noise"] == 0.5 and q["max_episode_steps"] == H
    assert q["env_description"] is None  # not a qbc env
    seeds = [m["seed"] for m in ds.storage.get_episode_metadata(range(8))]
    assert seeds == list(range(5, 13))
    cfg = json.loads((dataset_path("test/car-v0") / "qbc_config.json").read_text())
    assert cfg["env"] == CAR and cfg["seed"] == 5 and cfg["qbc_version"] == qbc.__version__


def test_same_seed_same_data_for_any_num_envs():
    collect(car_cfg("test/m1-v0", num_envs=1), expert=Pump())
    collect(car_cfg("test/m3-v0", num_envs=3), expert=Pump())
    collect(car_cfg("test/m8-v0", num_envs=8), expert=Pump())
    collect(car_cfg("test/m3b-v0", num_envs=3), expert=Pump())
    ref = load_demonstrations("test/m3-v0")
    for other in ("test/m1-v0", "test/m8-v0", "test/m3b-v0"):
        assert_same(ref, load_demonstrations(other))
    collect(car_cfg("test/seed1-v0", seed=1), expert=Pump())
    assert not np.array_equal(load_demonstrations("test/seed1-v0").observations[:5],
                              ref.observations[:5])


def test_noise_changes_actions_and_stays_in_bounds():
    noisy = rollout_episodes(CAR, Pump(), 2, num_envs=2, seed=0, expert_noise=0.5,
                             env_kwargs={"max_episode_steps": 20})
    clean = rollout_episodes(CAR, Pump(), 2, num_envs=2, seed=0,
                             env_kwargs={"max_episode_steps": 20})
    a, b = noisy[0].actions, clean[0].actions
    assert np.abs(a).max() <= 1.0 and not np.array_equal(a, b)
    assert np.isin(b, [-1.0, 1.0]).all()


def test_overwrite_refused_then_allowed():
    collect(car_cfg(), expert=Pump())
    before = load_demonstrations("test/car-v0")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        collect(car_cfg(seed=1), expert=Pump())
    assert_same(before, load_demonstrations("test/car-v0"))
    collect(car_cfg(seed=1, overwrite=True), expert=Pump())
    after = load_demonstrations("test/car-v0")
    assert after.metadata["qbc"]["seed"] == 1
    assert not np.array_equal(after.observations[:5], before.observations[:5])
    root = os.environ["MINARI_DATASETS_PATH"]
    assert not [p for p in os.listdir(root) if p.startswith(".qbc")]


def test_bad_inputs_are_typed_errors():
    with pytest.raises(UnknownNameError, match="Pendulum-v1"):
        collect(car_cfg(env="Pendulum-v9"), expert=Pump())
    with pytest.raises(InvalidValueError, match="malformed dataset id"):
        collect(car_cfg(dataset_id="no-version"), expert=Pump())
    with pytest.raises(InvalidValueError, match="--episodes"):
        collect(car_cfg(episodes=0), expert=Pump())
    with pytest.raises(InvalidValueError, match="--expert-noise"):
        collect(car_cfg(expert_noise=-1.0), expert=Pump())

    class Wrong(Pump):
        def act(self, obs, deterministic=True, rng=None):
            return np.zeros((len(obs), 3), np.float32)

    with pytest.raises(InvalidValueError, match="shape"):
        collect(car_cfg(), expert=Wrong())


def test_cli(monkeypatch, capsys):
    monkeypatch.setattr(qbc.data.collect, "_make_expert", lambda cfg: Pump())
    args = ["collect", "--env", CAR, "--expert", "pump", "--episodes", "4", "--num-envs", "2",
            "--seed", "3", "--dataset", "cli/car-v0", "--max-episode-steps", "30",
            "--expert-noise", "0.2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "collected 4 episodes, 120 steps" in out and "cli/car-v0" in out
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["data", "--dataset", "cli/car-v0"]) == 0
    assert main(["data", "--dataset", "cli/cat-v0"]) == 2
    err = capsys.readouterr().err
    assert "no Minari dataset 'cli/cat-v0'" in err and "cli/car-v0" in err
    assert main(["collect", "--env", "NoSuchEnv-v0", "--dataset", "x-v0"]) == 2


# -- with the qbc environments and experts --------------------------------------------------------
LIN = "qbc/LinearUnstable-v0"


def test_qbc_env_with_lqr_expert_native_vector():
    assert gym.spec(LIN).vector_entry_point is not None
    cfg = CollectConfig(env=LIN, expert="lqr", dataset_id="qbc/lin-v0", episodes=6,
                        num_envs=4, seed=2, max_episode_steps=25)
    collect(cfg)
    d = load_demonstrations("qbc/lin-v0")
    assert d.n_episodes == 6 and len(d) == 6 * 25 and d.truncations.sum() == 6
    q = d.metadata["qbc"]
    assert q["expert"]["name"] == "lqr"
    desc = q["env_description"]
    assert desc["env_id"] == LIN and desc["open_loop_spectral_radius"] > 1
    assert desc["expert_closed_loop_spectral_radius"] < 1
    ds = minari.load_dataset("qbc/lin-v0")
    env = ds.recover_environment()
    assert env.spec.id == LIN and env.spec.max_episode_steps == 25
    # the native vector env's copy i plays the single env's episode seeded seed + i
    obs, _ = env.reset(seed=2 + 5)
    np.testing.assert_allclose(obs, d.observations[d.episode_ids == 5][0], rtol=0, atol=1e-6)
    collect(CollectConfig(env=LIN, expert="lqr", dataset_id="qbc/lin1-v0", episodes=6,
                          num_envs=1, seed=2, max_episode_steps=25, expert_noise=0.0))
    # same episodes; the native vector env's batched x @ A.T may round differently per batch
    # size (measured: <= 2.4e-7 at 100 copies vs 1), so not bit for bit
    assert_same(d, load_demonstrations("qbc/lin1-v0"), atol=1e-5)


def test_qbc_env_noise_independent_of_num_envs():
    kw = dict(env=LIN, expert="lqr", episodes=5, seed=0, max_episode_steps=15, expert_noise=0.3)
    collect(CollectConfig(dataset_id="qbc/n2-v0", num_envs=2, **kw))
    collect(CollectConfig(dataset_id="qbc/n5-v0", num_envs=5, **kw))
    collect(CollectConfig(dataset_id="qbc/n5b-v0", num_envs=5, **kw))
    n5 = load_demonstrations("qbc/n5-v0")
    assert_same(n5, load_demonstrations("qbc/n5b-v0"))  # same command: bit for bit
    assert_same(load_demonstrations("qbc/n2-v0"), n5, atol=1e-5)
    from qbc.agents import make_expert

    clean = rollout_episodes(LIN, make_expert("lqr", LIN), 1, seed=0,
                             env_kwargs={"max_episode_steps": 15})
    assert np.abs(n5.actions[:15] - clean[0].actions).max() > 0.05  # the noise is there


def test_any_gymnasium_env_with_an_sb3_expert(tmp_path):
    from stable_baselines3 import TD3

    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, seed=0,
                learning_starts=0, device="cpu")
    model.save(tmp_path / "td3.zip")  # untrained: only the plumbing is under test
    cfg = CollectConfig(env="Pendulum-v1", expert="sb3", dataset_id="pendulum/td3-v0",
                        expert_params={"algo": "td3", "path": str(tmp_path / "td3.zip")},
                        episodes=3, num_envs=2, max_episode_steps=20)
    collect(cfg)
    d = load_demonstrations("pendulum/td3-v0")
    assert d.n_episodes == 3 and d.actions.shape == (60, 1)
    expected = model.predict(d.observations, deterministic=True)[0]
    np.testing.assert_allclose(d.actions, expected, atol=1e-5)
    params = d.metadata["qbc"]["expert"]["params"]
    assert params["algo"] == "td3" and params["path"].endswith("td3.zip")
    with pytest.raises(InvalidValueError, match="expert-params"):
        main_args = ["collect", "--env", "Pendulum-v1", "--expert", "sb3", "--expert-params",
                     "[1]", "--dataset", "pendulum/bad-v0"]
        collect_config(tyro.cli(CollectArgs, args=main_args[1:]))


def test_collect_with_a_relative_datasets_path(tmp_path, monkeypatch):
    """MINARI_DATASETS_PATH may be relative (the quickstart's is, under runs/)."""
    import minari

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "rel/datasets")
    from qbc.cli import main

    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--episodes", "3", "--num-envs", "3",
                 "--dataset", "qbc/rel-v0"]) == 0
    assert (tmp_path / "rel" / "datasets" / "qbc" / "rel-v0").is_dir()
    assert minari.load_dataset("qbc/rel-v0").total_episodes == 3
