"""Expert zoo: SB3 actors exported as safetensors + JSON act exactly as SB3's predict; zoo
entries load by name, are remembered by collect, and damaged files fail in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from repository import ROOT

from qbc.agents import available_experts, evaluate_expert, make_expert
from qbc.agents.actor import MLPActor, save_sb3_actor
from qbc.agents.expert_zoo import available_zoo, zoo_entry_dir, zoo_table
from qbc.cli import DeprecatedFlagWarning, main
from qbc.errors import CorruptFileError, UnknownNameError


def _tiny_model(algo: str, steps: int = 100):
    """A hundred-step SB3 model on Pendulum-v1 (seeded; trained past learning_starts so the
    weights move)."""
    sb3 = pytest.importorskip("stable_baselines3")
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    if algo == "ppo":
        model = sb3.PPO("MlpPolicy", env, seed=0, n_steps=64, batch_size=32, n_epochs=2,
                        device="cpu")
    else:
        cls = {"sac": sb3.SAC, "td3": sb3.TD3}[algo]
        model = cls("MlpPolicy", env, seed=0, learning_starts=50, device="cpu")
    model.learn(total_timesteps=steps)
    env.close()
    return model


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "td3", "ppo"])
def test_exported_actor_equals_sb3_predict(tmp_path, algo):
    model = _tiny_model(algo)
    save_sb3_actor(model, algo, tmp_path / "a", {"env_id": "Pendulum-v1"})
    actor = MLPActor.load(tmp_path / "a")
    # Observations beyond the env's range too, so the clip and the tanh squash both matter.
    obs = np.random.default_rng(0).normal(scale=3.0, size=(256, 3)).astype(np.float32)
    want, _ = model.predict(obs, deterministic=True)
    got = actor.predict(obs)
    assert got.shape == (256, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(got) > 1e-3  # a constant actor would pass trivially


@pytest.mark.slow
def test_actor_folder_is_an_expert_and_is_remembered_by_collect(tmp_path):
    from qbc.data.expert_choice import build_expert, choose_expert

    model = _tiny_model("sac")
    folder = save_sb3_actor(model, "sac", tmp_path / "a", {"env_id": "Pendulum-v1"})
    expert = make_expert("actor", "Pendulum-v1", path=str(folder))
    obs = np.random.default_rng(1).normal(size=(8, 3))
    np.testing.assert_allclose(expert.act(obs), model.predict(obs.astype(np.float32),
                                                              deterministic=True)[0], atol=1e-5)
    assert main(["collect", "--env", "Pendulum-v1", "--expert", "actor", "--expert-path",
                 str(folder), "--episodes", "1", "--dataset", "test/actor-v0",
                 "--max-episode-steps", "10", "--no-progress"]) == 0
    choice = choose_expert(None, None, None, "test/actor-v0")
    assert (choice.name, choice.params["path"]) == ("actor", str(folder))
    assert build_expert(choice, "Pendulum-v1").name == "actor"


def test_zoo_lists_the_shipped_entries():
    assert {"InvertedPendulum-v5", "Pendulum-v1"} <= set(available_zoo())
    assert {"zoo:InvertedPendulum-v5", "zoo:Pendulum-v1"} <= set(available_experts())
    rows = {r["name"]: r for r in zoo_table()}
    assert rows["zoo:InvertedPendulum-v5"]["mean_return"] == pytest.approx(1000.0)
    assert rows["zoo:Pendulum-v1"]["mean_return"] >= -200
    total = sum(r["size_bytes"] for r in rows.values())
    assert 0 < total < 5 * 2**20  # the zoo stays small: actors only
    for env_id in available_zoo():  # every entry loads and says how it was trained
        meta = MLPActor.load(zoo_entry_dir(env_id)).meta
        assert meta["env_id"] == env_id and meta["training_command"].startswith("qbc expert")
        assert meta["evaluation"]["episodes"] == 20


def test_zoo_pendulum_reproduces_its_measured_return():
    expert = make_expert("zoo:Pendulum-v1", "Pendulum-v1")
    assert expert.to_dict()["name"] == "zoo:Pendulum-v1"
    assert make_expert(expert.to_dict(), "Pendulum-v1").name == "zoo:Pendulum-v1"
    meta = expert.actor.meta
    result = evaluate_expert(expert, "Pendulum-v1", episodes=20, seed=10_000)
    assert result["mean_return"] == pytest.approx(meta["evaluation"]["mean_return"], rel=1e-3)
    assert result["mean_return"] >= -200


def test_zoo_expert_is_remembered_by_collect():
    from qbc.data.expert_choice import build_expert, choose_expert

    assert main(["collect", "--env", "Pendulum-v1", "--expert", "zoo:Pendulum-v1",
                 "--episodes", "1", "--dataset", "test/zoo-v0", "--max-episode-steps", "10",
                 "--no-progress"]) == 0
    choice = choose_expert(None, None, None, "test/zoo-v0")
    assert choice.name == "zoo:Pendulum-v1" and "path" not in choice.params
    assert build_expert(choice, "Pendulum-v1").name == "zoo:Pendulum-v1"


def test_zoo_inverted_pendulum_on_mujoco():
    pytest.importorskip("mujoco")
    expert = make_expert("zoo:InvertedPendulum-v5", "InvertedPendulum-v5")
    result = evaluate_expert(expert, "InvertedPendulum-v5", episodes=2, seed=10_000)
    assert result["mean_return"] == pytest.approx(1000.0)


@pytest.mark.parametrize("env_id, episodes, target", [
    ("InvertedDoublePendulum-v5", 2, 9000.0),  # 1000-step episodes
    ("Reacher-v5", 10, -5.0),
    ("Hopper-v5", 20, 2500.0),  # it falls in some episodes: 20 of them for a stable mean
])
@pytest.mark.slow
def test_zoo_mujoco_entries_meet_their_targets(env_id, episodes, target):
    """The loaded actor, run here on seeds 10000.., reaches the entry's target (as its stored
    20-episode evaluation says it does; Hopper-v5's 2920 leaves room for another MuJoCo
    build)."""
    pytest.importorskip("mujoco")
    stored = {r["name"]: r for r in zoo_table()}[f"zoo:{env_id}"]
    assert stored["mean_return"] >= target
    expert = make_expert(f"zoo:{env_id}", env_id)
    result = evaluate_expert(expert, env_id, episodes=episodes, seed=10_000)
    assert result["mean_return"] >= target


def test_unknown_zoo_name_lists_the_entries():
    with pytest.raises(UnknownNameError, match="zoo:InvertedPendulum-v5") as err:
        make_expert("zoo:NoSuchEnv-v0", "Pendulum-v1")
    assert "\n" not in str(err.value)


def _copy_entry(tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(zoo_entry_dir("Pendulum-v1"), tmp_path / "entry"))


def test_damaged_actor_files_fail_in_one_line(tmp_path):
    folder = _copy_entry(tmp_path)
    weights = folder / "actor.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated download
    with pytest.raises(CorruptFileError, match="SHA-256"):
        MLPActor.load(folder)
    folder = _copy_entry(tmp_path / "2")
    meta = json.loads((folder / "actor.json").read_text())
    meta.pop("weights_sha256")
    (folder / "actor.safetensors").write_bytes(b"not safetensors")
    (folder / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="cannot read actor weights"):
        MLPActor.load(folder)
    folder = _copy_entry(tmp_path / "3")
    meta["layer_sizes"] = [3, 64, 1]
    (folder / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="expected"):
        MLPActor.load(folder)
    (folder / "actor.json").write_text("{truncated")
    with pytest.raises(CorruptFileError):
        make_expert("actor", "Pendulum-v1", path=str(folder))


@pytest.mark.slow
def test_expert_commands_train_export_list(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    zip_path = tmp_path / "p.zip"
    assert main(["expert", "train", "--env", "Pendulum-v1", "--timesteps", "120",
                 "--out", str(zip_path), "--eval-episodes", "2", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "p-actor" / "actor.json").read_text())
    assert meta["algo"] == "sac" and meta["timesteps"] == 120 and meta["seed"] == 0
    assert meta["evaluation"]["episodes"] == 2
    assert "--timesteps 120" in meta["training_command"]
    assert "--env Pendulum-v1" in meta["training_command"]
    with pytest.warns(DeprecatedFlagWarning) as seen:  # the old spellings
        assert main(["expert", "export", "--path", str(zip_path), "--env-id", "Pendulum-v1",
                     "--out", str(tmp_path / "zoo" / "Pendulum-v1"), "--eval-episodes", "2"]) == 0
    assert {str(w.message).split()[0] for w in seen} == {"--path", "--env-id"}
    assert main(["expert", "export", "--expert-path", str(zip_path), "--env", "Pendulum-v1",
                 "--out", str(tmp_path / "zoo" / "Pendulum-v1"), "--eval-episodes", "2"]) == 2
    capsys.readouterr()
    assert main(["expert", "list", "--root", str(tmp_path / "zoo")]) == 0
    assert "zoo:Pendulum-v1" in capsys.readouterr().out


def test_lqr_error_suggests_the_zoo_entry(capsys):
    # an explicit --expert lqr (the zoo entry is the default since issue 35)
    assert main(["collect", "--env", "Pendulum-v1", "--expert", "lqr", "--episodes", "1",
                 "--dataset", "test/p-v0", "--no-progress"]) == 2
    assert "--expert zoo:Pendulum-v1" in capsys.readouterr().err


def test_zoo_files_are_package_data():
    tomllib = pytest.importorskip("tomllib")
    root = ROOT
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["qbc.agents"]
    shipped = {p for pattern in patterns for p in (root / "agents").glob(pattern)}
    assert set((root / "agents" / "zoo").glob("*/actor.*")) <= shipped and shipped
