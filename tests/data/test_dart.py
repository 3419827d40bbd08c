"""qbc collect --dart: noisy execution, clean expert labels, seeded noise of its own."""


import gymnasium as gym
import minari
import numpy as np
import pytest
from tiny import TINY_MODEL

import qbc  # noqa: F401  (registers the qbc/ envs)
from qbc.agents import make_expert
from qbc.cli.collect import parse_dart
from qbc.data.collect import CollectConfig, collect
from qbc.data.episodes import DART_STREAM
from qbc.errors import InvalidValueError

ENV = "qbc/LinearUnstable-v0"  # 2-D actions, process noise from the env's own generator
H, SIGMA, SEED = 15, 0.4, 4


def dart_cfg(dataset_id="test/dart-v0", **kw):
    base = dict(env=ENV, dataset_id=dataset_id, expert="lqr", episodes=5, num_envs=2, seed=SEED,
                max_episode_steps=H, dart_sigma=SIGMA)
    return CollectConfig(**{**base, **kw})


def reconstructed_noise(k, act_dim):
    """The DART noise of episode k, rebuilt from the seed alone (DART_STREAM is 2)."""
    rng = np.random.default_rng(np.random.SeedSequence(SEED + k, spawn_key=(DART_STREAM,)))
    return SIGMA * rng.standard_normal((H, act_dim)).astype(np.float32)


def test_labels_are_clean_while_the_executed_actions_carry_the_seeded_noise():
    collect(dart_cfg())
    eps = list(minari.load_dataset("test/dart-v0").iterate_episodes())
    expert = make_expert("lqr", ENV)
    env = gym.make(ENV, max_episode_steps=H)
    low, high = env.action_space.low, env.action_space.high
    for k, ep in enumerate(eps):
        labels = np.asarray(ep.actions)
        # the recorded label is the expert's clean action at the visited state
        np.testing.assert_allclose(labels, expert.act(ep.observations[:-1]), rtol=0, atol=1e-6)
        noise = reconstructed_noise(k, 2)[:len(labels)]
        executed = np.clip(labels + noise, low, high).astype(np.float32)
        assert np.abs(executed - labels).max() > 0.1  # the noise is there
        obs, _ = env.reset(seed=SEED + k)
        np.testing.assert_array_equal(obs, ep.observations[0])
        for t, a in enumerate(executed):  # replaying label + noise gives the recorded states
            obs, *_ = env.step(a)
            np.testing.assert_allclose(obs, ep.observations[t + 1], rtol=0, atol=1e-5)
        obs, _ = env.reset(seed=SEED + k)
        obs, *_ = env.step(labels[0])  # while the clean labels alone lead elsewhere
        assert np.abs(obs - ep.observations[1]).max() > 1e-3


def test_dart_data_does_not_depend_on_num_envs_and_metadata_records_it():
    a = collect(dart_cfg("test/a-v0", num_envs=1)).dataset
    b = collect(dart_cfg("test/b-v0", num_envs=3)).dataset
    for ea, eb in zip(a.iterate_episodes(), b.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(ea.observations, eb.observations)
        np.testing.assert_array_equal(ea.actions, eb.actions)
    from qbc.data import load_demonstrations

    q = load_demonstrations("test/b-v0").metadata["qbc"]
    assert q["dart"]["sigma"] == SIGMA and "action units" in q["dart"]["units"]
    assert q["expert_noise"] == 0.0


def test_dart_noise_differs_from_expert_noise_stream():
    dart = collect(dart_cfg("test/dart-v0")).dataset
    noisy = collect(dart_cfg("test/noisy-v0", dart_sigma=0.0, expert_noise=SIGMA)).dataset
    # same seeds, different streams: different executed noise, so different states
    ea, en = next(dart.iterate_episodes()), next(noisy.iterate_episodes())
    assert np.abs(ea.observations[1:] - en.observations[1:]).max() > 1e-3


@pytest.mark.parametrize("kw, message", [
    (dict(dart_sigma=-0.1), "--dart-sigma must be"),
    (dict(dart_sigma=float("nan")), "--dart-sigma must be"),
    (dict(dart_sigma=0.1, dart_policy="run"), "not both"),
    (dict(dart_sigma=0.1, expert_noise=0.2), "at most one of --expert-noise"),
])
def test_bad_dart_settings_are_refused(kw, message):
    with pytest.raises(InvalidValueError, match=message):
        collect(dart_cfg(**kw))
    from qbc.data import dataset_exists

    assert not dataset_exists("test/dart-v0")


@pytest.mark.parametrize("text, policy, message", [
    ("-0.1", None, "--dart must be a finite std >= 0"),
    ("lots", None, "--dart must be a finite std >= 0"),
    ("auto", None, "--dart auto needs --policy"),
    ("0.1", "run", "--policy is only used with --dart auto"),
    (None, "run", "--policy is only used with --dart auto"),
])
def test_bad_dart_flags_are_refused(text, policy, message):
    with pytest.raises(InvalidValueError, match=message):
        parse_dart(text, policy)


def test_dart_flags_parse():
    assert parse_dart(None, None) == (0.0, None)
    assert parse_dart("0.25", None) == (0.25, None)
    assert parse_dart(" Auto ", "run") == (0.0, "run")


def test_dart_auto_uses_the_policys_error_on_expert_states(tmp_path):
    from qbc.data import Demonstrations, load_demonstrations
    from qbc.data.dart import dart_sigma_for
    from qbc.data.episodes import rollout_episodes
    from qbc.policy import ModelConfig, load_policy
    from qbc.training import TrainConfig, train

    collect(dart_cfg("test/clean-v0", dart_sigma=0.0, episodes=6))
    demos = load_demonstrations("test/clean-v0")
    train(TrainConfig(dataset="test/clean-v0", out=tmp_path / "run", bins=8, steps=6,
                      batch_size=16, eval_interval=3, warmup_steps=1, progress=False,
                      rollout_episodes=0, model=ModelConfig(**TINY_MODEL)),
          demos)
    collect(dart_cfg(dart_sigma=0.0, dart_policy=tmp_path / "run"))
    sigma = load_demonstrations("test/dart-v0").metadata["qbc"]["dart"]["sigma"]
    expert = make_expert("lqr", ENV)
    clean = Demonstrations.from_episodes(rollout_episodes(
        ENV, expert, 5, num_envs=2, seed=SEED, env_kwargs={"max_episode_steps": H}))
    err = load_policy(tmp_path / "run").act(clean.observations) - clean.actions
    assert sigma == pytest.approx(float(np.sqrt(np.mean(err ** 2))), rel=1e-5)
    assert sigma > 0
    assert sigma == pytest.approx(dart_sigma_for(tmp_path / "run", ENV, expert, 5, 2, SEED,
                                                 {"max_episode_steps": H}), rel=1e-6)


def test_cli_bad_dart_is_one_line_exit_2(tmp_path, cli):
    proc = cli(["collect", "--env", ENV, "--dataset", "t/x-v0", "--dart", "auto"],
               env={"MINARI_DATASETS_PATH": str(tmp_path)})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--dart auto needs --policy" in lines[0], proc.stderr
