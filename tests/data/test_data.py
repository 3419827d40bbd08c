"""qbc.data: Demonstrations (episodes, returns, splits, tensors), Minari write/load, bad files."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from minari.data_collector import EpisodeBuffer

from qbc.cli import main
from qbc.data import (
    DatasetNotFoundError,
    Demonstrations,
    check_compatible,
    dataset_path,
    load_demonstrations,
    write_dataset,
)
from qbc.errors import (
    CorruptFileError,
    InvalidValueError,
    OutputExistsError,
    QbcError,
    UnknownNameError,
)

ENV = "Pendulum-v1"  # obs (3,), action (1,)


def make_episodes(lengths, seed=0):
    """Random Pendulum-shaped episodes; the last step of each ends it."""
    rng = np.random.default_rng(seed)
    eps = []
    for k, n in enumerate(lengths):
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        (term if k % 2 else trunc)[-1] = True
        eps.append(EpisodeBuffer(
            id=k, seed=k,
            observations=rng.normal(size=(n + 1, 3)).astype(np.float32),
            actions=rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
            rewards=rng.normal(size=n), terminations=term, truncations=trunc,
        ))
    return eps


@pytest.fixture
def demos():
    return Demonstrations.from_episodes(make_episodes([5, 3, 7, 1, 4, 6, 2, 8, 3, 5]), ENV)


def test_from_episodes_flattens_without_crossing_boundaries():
    eps = make_episodes([4, 2, 3])
    d = Demonstrations.from_episodes(eps, ENV)
    assert len(d) == 9 and d.n_episodes == 3
    assert d.observations.dtype == np.float32 and d.actions.dtype == np.float32
    assert d.episode_ids.dtype == np.int64 and d.terminations.dtype == bool
    np.testing.assert_array_equal(d.episode_ids, [0, 0, 0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(d.episode_lengths(), [4, 2, 3])
    # the last step's next observation is the episode's final observation
    np.testing.assert_array_equal(d.next_observations[3], eps[0].observations[-1])
    np.testing.assert_array_equal(d.observations[4], eps[1].observations[0])
    np.testing.assert_array_equal(d.next_observations[:3], d.observations[1:4])
    ends = np.flatnonzero(d.terminations | d.truncations)
    np.testing.assert_array_equal(ends, [3, 5, 8])


def test_episode_returns_are_per_episode_sums(demos):
    expected = [demos.rewards[demos.episode_ids == e].astype(np.float64).sum()
                for e in range(10)]
    np.testing.assert_allclose(demos.episode_returns(), expected, rtol=1e-12)
    assert demos.episode_returns().shape == (10,)


@pytest.mark.parametrize("n_eps", [2, 3, 10, 25])
@pytest.mark.parametrize("frac", [0.01, 0.1, 0.5, 0.99])
def test_split_is_by_episode_disjoint_and_complete(n_eps, frac):
    d = Demonstrations.from_episodes(make_episodes(range(1, n_eps + 1)), ENV)
    train, val = d.split(val_fraction=frac, seed=3)
    tr, va = set(train.episode_ids.tolist()), set(val.episode_ids.tolist())
    assert tr.isdisjoint(va) and tr | va == set(range(n_eps))
    assert len(tr) >= 1 and len(va) >= 1
    assert len(train) + len(val) == len(d)
    # whole episodes: each part keeps every step of its episodes
    for part in (train, val):
        for e in np.unique(part.episode_ids):
            assert np.count_nonzero(part.episode_ids == e) == e + 1


def test_split_seeded_and_sized(demos):
    a_train, a_val = demos.split(0.3, seed=0)
    b_train, b_val = demos.split(0.3, seed=0)
    np.testing.assert_array_equal(a_val.episode_ids, b_val.episode_ids)
    assert a_val.n_episodes == 3 and a_train.n_episodes == 7
    vals = {tuple(np.unique(demos.split(0.3, seed=s)[1].episode_ids)) for s in range(10)}
    assert len(vals) > 1  # the seed matters


def test_split_single_episode_and_bad_fraction():
    d = Demonstrations.from_episodes(make_episodes([5]), ENV)
    train, val = d.split(0.5)
    assert train.n_episodes == 1 and len(val) == 0
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InvalidValueError, match="val_fraction"):
            d.split(bad)


def test_select_keeps_ids_and_refuses_unknown(demos):
    sub = demos.select([7, 2])
    np.testing.assert_array_equal(np.unique(sub.episode_ids), [2, 7])
    np.testing.assert_array_equal(sub.unique_episode_ids(), [2, 7])  # dataset order
    assert len(sub) == 7 + 8
    with pytest.raises(InvalidValueError, match=r"\[42\]"):
        demos.select([1, 42])


def test_to_tensors(demos):
    t = demos.to_tensors()
    assert t["observations"].dtype == torch.float32 and t["observations"].shape == (44, 3)
    assert t["actions"].shape == (44, 1) and t["episode_ids"].dtype == torch.int64
    assert t["terminations"].dtype == torch.bool
    np.testing.assert_array_equal(t["next_observations"].numpy(), demos.next_observations)


def test_mismatched_lengths_refused():
    d = Demonstrations.from_episodes(make_episodes([3]), ENV)
    with pytest.raises(InvalidValueError, match="rewards"):
        Demonstrations(d.observations, d.actions, d.next_observations, d.rewards[:-1],
                       d.terminations, d.truncations, d.episode_ids)


def test_check_compatible(demos):
    env = gym.make(ENV)
    check_compatible(demos, env.observation_space, env.action_space)
    other = gym.make("MountainCarContinuous-v0")
    with pytest.raises(InvalidValueError, match=r"observations are \(3,\).*\(2,\)"):
        check_compatible(demos, other.observation_space, other.action_space)
    wide = gym.spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(InvalidValueError, match=r"actions are \(1,\).*\(2,\)"):
        check_compatible(demos, env.observation_space, wide)


# -- Minari on disk -------------------------------------------------------------------------------
def test_write_and_load_round_trip():
    eps = make_episodes([4, 6, 3])
    write_dataset("tt/round-v0", eps, env=ENV, metadata={"note": np.float32(1.5)},
                  config={"a": 1})
    d = load_demonstrations("tt/round-v0")
    ref = Demonstrations.from_episodes(eps, ENV)
    for name in ("observations", "actions", "next_observations", "rewards", "terminations",
                 "truncations", "episode_ids"):
        np.testing.assert_array_equal(getattr(d, name), getattr(ref, name), err_msg=name)
    assert d.env_id == ENV
    assert d.metadata["dataset_id"] == "tt/round-v0" and d.metadata["qbc"] == {"note": 1.5}
    assert d.metadata["data_format"] == "hdf5"
    cfg = json.loads((dataset_path("tt/round-v0") / "qbc_config.json").read_text())
    assert cfg == {"a": 1}
    root = dataset_path("tt/round-v0").parents[1]
    assert not [p for p in os.listdir(root) if p.startswith(".qbc")]  # no staging leftovers


def test_write_refuses_nan_metadata_before_touching_the_root():
    with pytest.raises(InvalidValueError, match=r"dataset metadata\.dart = nan"):
        write_dataset("tt/nanmeta-v0", make_episodes([3]), env=ENV,
                      metadata={"dart": float("nan")})
    with pytest.raises(InvalidValueError, match=r"dataset config\.sigma = inf"):
        write_dataset("tt/nanmeta-v0", make_episodes([3]), env=ENV, config={"sigma": np.inf})
    assert not dataset_path("tt/nanmeta-v0").exists()


def test_write_refuses_existing_and_overwrites_when_asked():
    write_dataset("same-v0", make_episodes([3]), env=ENV)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_dataset("same-v0", make_episodes([5]), env=ENV)
    assert len(load_demonstrations("same-v0")) == 3
    write_dataset("same-v0", make_episodes([5, 2]), env=ENV, overwrite=True)
    d = load_demonstrations("same-v0")
    assert len(d) == 7 and d.n_episodes == 2


def test_malformed_id_refused():
    with pytest.raises(InvalidValueError, match="malformed dataset id"):
        write_dataset("no version", make_episodes([3]), env=ENV)
    with pytest.raises(InvalidValueError, match="malformed dataset id"):
        write_dataset("noversion", make_episodes([3]), env=ENV)


def test_unknown_id_lists_local_ids_closest_first():
    write_dataset("zzz/other-v0", make_episodes([2]), env=ENV)
    write_dataset("pend/alpha-v0", make_episodes([2]), env=ENV)
    with pytest.raises(DatasetNotFoundError) as info:
        load_demonstrations("pend/alpha-v1")
    msg = str(info.value)
    assert isinstance(info.value, UnknownNameError) and isinstance(info.value, QbcError)
    assert "\n" not in msg
    assert msg.index("pend/alpha-v0") < msg.index("zzz/other-v0")
    assert "qbc collect" in msg


def test_unknown_id_with_no_local_datasets():
    with pytest.raises(DatasetNotFoundError, match="no local datasets"):
        load_demonstrations("nothing-v0")


def test_truncated_hdf5_is_corrupt():
    write_dataset("broken-v0", make_episodes([20, 20]), env=ENV)
    h5 = dataset_path("broken-v0") / "data" / "main_data.hdf5"
    data = h5.read_bytes()
    h5.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError, match="broken-v0.*collect it again"):
        load_demonstrations("broken-v0")


def test_garbled_metadata_is_corrupt():
    write_dataset("garbled-v0", make_episodes([2]), env=ENV)
    (dataset_path("garbled-v0") / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        load_demonstrations("garbled-v0")


def _poisoned():
    eps = make_episodes([4, 4, 4, 4, 4])
    eps[1].observations[2, 0] = np.nan
    eps[3].actions[1, 0] = np.inf
    eps[3].actions[3, 0] = -np.inf
    return eps


def test_nonfinite_refused_with_count_and_ids():
    write_dataset("nan-v0", _poisoned(), env=ENV)
    with pytest.raises(InvalidValueError) as info:
        load_demonstrations("nan-v0")
    msg = str(info.value)
    # obs row 2 of episode 1 is the next obs of step 1 and the obs of step 2: 2 steps; 2 actions
    assert "4 steps" in msg and "2 episodes" in msg and "episode ids 1, 3" in msg
    assert "drop_nonfinite" in msg


def test_nonfinite_dropped_with_warning():
    write_dataset("nan-v0", _poisoned(), env=ENV)
    with pytest.warns(UserWarning, match=r"dropped 4 steps .* 2 episodes .*3 episodes remain"):
        d = load_demonstrations("nan-v0", drop_nonfinite=True)
    np.testing.assert_array_equal(d.unique_episode_ids(), [0, 2, 4])
    assert np.isfinite(d.observations).all() and np.isfinite(d.actions).all()
    assert d.metadata["dropped_nonfinite_episodes"] == [1, 3]


def test_data_command(capsys):
    write_dataset("cli-v0", make_episodes([3, 4]), env=ENV)
    assert main(["data", "--dataset", "cli-v0"]) == 0
    assert "2 episodes, 7 steps" in capsys.readouterr().out
    assert main(["data", "--dataset", "cli-v9"]) == 2
    err = capsys.readouterr().err
    assert "no Minari dataset 'cli-v9'" in err and "cli-v0" in err
    write_dataset("nan-v0", _poisoned(), env=ENV)
    assert main(["data", "--dataset", "nan-v0"]) == 2
    assert "NaN/inf" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert main(["data", "--dataset", "nan-v0", "--drop-nonfinite"]) == 0


def test_old_dataset_id_flag_still_works_with_a_deprecation_warning(capsys):
    from qbc.cli import DeprecatedFlagWarning

    write_dataset("old-v0", make_episodes([3, 4]), env=ENV)
    with pytest.warns(DeprecatedFlagWarning, match="--dataset-id is deprecated.*--dataset"):
        assert main(["data", "--dataset-id", "old-v0"]) == 0
    assert "2 episodes, 7 steps" in capsys.readouterr().out


# -- the datasets root ----------------------------------------------------------------------------
def test_an_explicit_root_is_used_and_the_environment_left_alone(tmp_path):
    from qbc.data import dataset_exists, local_dataset_ids, minari_root

    before = dict(os.environ)
    root = tmp_path / "elsewhere"
    write_dataset("ns/deep/here-v0", make_episodes([3]), env=ENV, root=root)
    assert dict(os.environ) == before
    assert dataset_exists("ns/deep/here-v0", root) and not dataset_exists("ns/deep/here-v0")
    assert len(load_demonstrations("ns/deep/here-v0", root=root)) == 3
    assert local_dataset_ids(root) == ["ns/deep/here-v0"] and local_dataset_ids() == []
    assert minari_root(root) == root.resolve()
    assert minari_root() == (tmp_path / "minari").resolve()  # conftest's MINARI_DATASETS_PATH
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "minari")):
        load_demonstrations("ns/deep/here-v0")


@pytest.mark.filterwarnings("ignore:`(code_permalink|author_email|eval_env)`:UserWarning")
def test_written_files_are_minaris_own(tmp_path, monkeypatch):
    """What write_dataset writes equals what minari.create_dataset_from_buffers writes (metadata
    keys and values, namespace files), and minari's own loader and listing read it."""
    import minari

    eps = make_episodes([4, 2])
    write_dataset("ours/a-v0", eps, env=ENV, algorithm_name="alg", description="desc")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "theirs"))
    minari.create_dataset_from_buffers("ours/a-v0", buffer=make_episodes([4, 2]), env=ENV,
                                       algorithm_name="alg", author="qbc", description="desc",
                                       data_format="hdf5")
    theirs = json.loads((tmp_path / "theirs/ours/a-v0/data/metadata.json").read_text())
    ours = json.loads((tmp_path / "minari/ours/a-v0/data/metadata.json").read_text())
    assert ours.pop("qbc") == {}
    assert ours == theirs
    for root in ("theirs", "minari"):
        assert (tmp_path / root / "ours" / "namespace_metadata.json").read_text() == "{}"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert list(minari.list_local_datasets()) == ["ours/a-v0"]
    assert minari.load_dataset("ours/a-v0").total_episodes == 2
