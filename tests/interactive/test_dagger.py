"""qbc dagger: the mixture, BC equivalence at beta = 1, resuming, experts, bad input."""

import dataclasses
import importlib.util
import shutil
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
from safetensors.numpy import load_file
from tiny import TINY_MODEL

import qbc  # noqa: F401  (registers the qbc/ envs)
import qbc.interactive.dagger
from qbc.agents import make_expert
from qbc.data.collect import CollectConfig, collect
from qbc.data.episodes import MIXTURE_STREAM, rollout_episodes
from qbc.interactive.config import round_train_config
from qbc.interactive.dagger import DaggerConfig, ExpertLearnerMixture, run_dagger
from qbc.policy import ModelConfig

ENV = "qbc/ScalarUnstable-v0"
H = 12
TINY = ModelConfig(**TINY_MODEL)


def dagger_cfg(out, **kw):
    base = dict(env=ENV, out=out, rounds=2, episodes_per_round=3, max_episode_steps=H,
                eval_episodes=3, num_envs=3, bins=8, steps=8, batch_size=16, model=TINY,
                device="cpu", progress=False,
                train_overrides={"eval_interval": 4, "warmup_steps": 1})
    return DaggerConfig(**{**base, **kw})


class Constant:
    """A stand-in learner: always the same action (batched)."""

    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, obs, deterministic=True):
        return np.full((len(obs), 1), 0.77, dtype=np.float32)


def test_mixture_executes_expert_or_learner_by_seeded_coins_and_records_the_labels():
    expert, learner, beta, seed = make_expert("lqr", ENV), Constant(), 0.5, 7
    eps = rollout_episodes(ENV, expert, 4, num_envs=3, seed=seed,
                           env_kwargs={"max_episode_steps": H},
                           behavior=ExpertLearnerMixture(learner, beta))
    assert learner.resets == 2  # once per wave of copies
    env = gym.make(ENV, max_episode_steps=H)
    used_learner = 0
    for k, ep in enumerate(eps):
        labels = np.asarray(ep.actions)
        np.testing.assert_allclose(labels, expert.act(ep.observations[:-1]), atol=1e-6)
        coins = np.random.default_rng(np.random.SeedSequence(
            seed + k, spawn_key=(MIXTURE_STREAM,))).random(H)[:len(labels)]
        executed = np.where((coins < beta)[:, None], labels, np.float32(0.77))
        used_learner += int((coins >= beta).sum())
        obs, _ = env.reset(seed=seed + k)
        for t, a in enumerate(executed):
            obs, *_ = env.step(a)
            np.testing.assert_allclose(obs, ep.observations[t + 1], rtol=0, atol=1e-5)
    assert 0 < used_learner < sum(len(ep.actions) for ep in eps)


@pytest.mark.slow
def test_beta_one_in_every_round_is_plain_bc_on_the_aggregated_expert_data(tmp_path):
    from qbc.data import load_demonstrations
    from qbc.training import train

    # with the tokenizer refitted to the aggregate (round 0's is fitted on its 3 episodes alone)
    cfg = dagger_cfg(tmp_path / "dagger", rounds=1, beta="constant", beta_value=1.0,
                     tokenizer="refit")
    rows = run_dagger(cfg)
    assert [r["beta"] for r in rows] == [1.0, 1.0]
    # the same 2 x 3 expert episodes in one plain collect, then plain BC with the same settings
    collect(CollectConfig(env=ENV, dataset_id="test/bc-v0", episodes=6, num_envs=3,
                          max_episode_steps=H))
    demos = load_demonstrations("test/bc-v0")
    tcfg = round_train_config(cfg, 1, ["test/bc-v0"])
    res = train(dataclasses.replace(tcfg, out=tmp_path / "bc"), demos)
    assert rows[1]["expert_labels"] == len(demos) == 6 * H
    assert rows[1]["val_loss"] == res.best_val_loss
    a = load_file(tmp_path / "dagger" / "round-1" / "best" / "model.safetensors")
    b = load_file(tmp_path / "bc" / "best" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _run_in(root: Path, monkeypatch, **kw):
    """A DAgger run in root/run with its own Minari folder (so the dataset ids agree)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    return run_dagger(dagger_cfg(root / "run", **kw))


@pytest.mark.slow
def test_killed_and_resumed_run_writes_the_same_rounds_csv(tmp_path, monkeypatch):
    whole = _run_in(tmp_path / "a", monkeypatch)
    assert [r["round"] for r in whole] == [0, 1, 2]
    assert [r["beta"] for r in whole] == [1.0, 0.75, 0.5]  # linear, beta_step 0.25
    assert whole[2]["expert_labels"] == sum(r["steps"] for r in whole)
    if importlib.util.find_spec("tensorboardX") is not None:  # each round logs its training curves
        for r in range(3):
            assert list((tmp_path / "a" / "run" / f"round-{r}" / "tensorboard").glob(
                "events.out.tfevents.*")), f"round {r} has no TensorBoard events"

    _run_in(tmp_path / "b", monkeypatch, rounds=1)  # stops after round 1
    real_train = qbc.interactive.dagger.train_round

    def killed(cfg, r, demos, *rest):  # round 2's data is written, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(qbc.interactive.dagger, "train_round", killed)
    with pytest.raises(KeyboardInterrupt):
        _run_in(tmp_path / "b", monkeypatch)
    assert len((tmp_path / "b" / "run" / "rounds.csv").read_text().splitlines()) == 3
    monkeypatch.setattr(qbc.interactive.dagger, "train_round", real_train)
    resumed = _run_in(tmp_path / "b", monkeypatch)
    assert resumed == whole
    text = {p: (tmp_path / p / "run" / "rounds.csv").read_text() for p in "ab"}
    assert text["a"] == text["b"]
    assert len((tmp_path / "b" / "run" / "timing.csv").read_text().splitlines()) == 4
    # a finished run re-run is a no-op; other settings are refused
    assert _run_in(tmp_path / "b", monkeypatch) == whole
    with pytest.raises(qbc.errors.InvalidValueError, match="other settings"):
        _run_in(tmp_path / "b", monkeypatch, bins=16)


@pytest.mark.slow
def test_a_moved_run_folder_continues_with_its_own_datasets(tmp_path, monkeypatch, cli):
    """The dataset base is stored when a run starts: after `mv run moved` the run continues
    under the new name (or another spelling of it) with the ids it began with."""
    whole = _run_in(tmp_path / "a", monkeypatch)  # the uninterrupted reference, rounds 0..2
    _run_in(tmp_path / "b", monkeypatch, rounds=1)  # stops after round 1
    (tmp_path / "b" / "run").rename(tmp_path / "b" / "moved")
    moved = dagger_cfg(tmp_path / "b" / "moved")
    before = _tree(tmp_path / "b")
    with pytest.raises(qbc.errors.InvalidValueError, match="differs from 'dagger/run'"):
        run_dagger(dataclasses.replace(moved, dataset_base="dagger/moved"))
    proc = cli(["dagger", "--env", ENV, "--out", str(moved.out), "--dataset-base",
                "dagger/moved"], env={"MINARI_DATASETS_PATH": str(tmp_path / "m")})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "leave --dataset-base out to continue it" in proc.stderr
    assert _tree(tmp_path / "b") == before  # refused before anything was written

    assert run_dagger(moved) == whole
    text = {p: (tmp_path / p).read_text() for p in ("a/run/rounds.csv", "b/moved/rounds.csv")}
    assert text["a/run/rounds.csv"] == text["b/moved/rounds.csv"]
    assert sorted(p.name for p in (tmp_path / "b" / "minari" / "dagger").iterdir()) == [
        "namespace_metadata.json", "run"]  # no datasets under dagger/moved
    monkeypatch.chdir(tmp_path / "b")  # a relative spelling of the folder is the same run
    assert run_dagger(dagger_cfg(Path("moved"), dataset_base="dagger/run/")) == whole


def test_runs_stored_without_a_dataset_base_keep_the_one_of_their_rounds(tmp_path):
    """Runs started before the base was stored (``null``) take it from rounds.csv."""
    import json

    from qbc.interactive.run_files import ROUND_FIELDS, stored_dataset_base, write_rows

    assert stored_dataset_base(tmp_path, None) is None  # no run here
    (tmp_path / "dagger_config.json").write_text(json.dumps({"dataset_base": None}))
    assert stored_dataset_base(tmp_path, "x") is None  # nothing finished: nothing to keep
    write_rows(tmp_path, [dict.fromkeys(ROUND_FIELDS, 0) | {"dataset": "dagger/old/round-0-v0"}],
               [])
    assert stored_dataset_base(tmp_path, None) == "dagger/old"
    with pytest.raises(qbc.errors.InvalidValueError, match="differs from 'dagger/old'"):
        stored_dataset_base(tmp_path, "dagger/new")


@pytest.mark.slow
def test_warm_start_keeps_round_zeros_tokenizer(tmp_path):
    from qbc.tokenizer import ActionTokenizer

    run_dagger(dagger_cfg(tmp_path / "w", rounds=1, init="warm"))
    toks = [ActionTokenizer.load(tmp_path / "w" / f"round-{r}" / "best" / "tokenizer.json")
            for r in (0, 1)]
    assert toks[0].state_dict() == toks[1].state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("rule,same", [("round-0", True), ("refit", False)])
def test_scratch_rounds_keep_round_zeros_tokenizer_unless_told_to_refit(tmp_path, rule, same):
    from qbc.tokenizer import ActionTokenizer

    # beta 0: round 1 is driven by round 0's learner alone, whose states leave the demos'
    rows = run_dagger(dagger_cfg(tmp_path / rule, rounds=1, beta="constant", beta_value=0.0,
                                 tokenizer=rule))
    toks = [ActionTokenizer.load(tmp_path / rule / f"round-{r}" / "best" / "tokenizer.json")
            for r in (0, 1)]
    assert (toks[0].state_dict() == toks[1].state_dict()) == same
    # every round is compared with the floor of its own tokenizer (round 0's by default)
    assert all(r["floor_regret"] is not None and r["expert_return"] is not None for r in rows)


@pytest.mark.slow
def test_sb3_expert_on_a_third_party_env(tmp_path):
    from stable_baselines3 import SAC

    env = gym.make("Pendulum-v1")
    SAC("MlpPolicy", env, seed=0, device="cpu", learning_starts=0).save(tmp_path / "sac")
    rows = run_dagger(dagger_cfg(tmp_path / "p", env="Pendulum-v1", expert="sb3",
                                 expert_params={"path": str(tmp_path / "sac.zip")}, rounds=1,
                                 max_episode_steps=6))
    assert [r["expert_labels"] for r in rows] == [18, 36]
    ds = minari.load_dataset(rows[1]["dataset"])
    assert ds.total_episodes == 3




@pytest.mark.parametrize("args, message", [
    (["--env", ENV, "--rounds", "0"], "--rounds must be at least 1"),
    (["--env", ENV, "--beta", "cosine"], "unknown beta schedule 'cosine'"),
    (["--env", "Pendulum-v1", "--expert", "lqr"], "needs an env with linearization()"),
    (["--env", "qbc/LinearUnstable-v0", "--expert", "arctan"], "needs obs_dim == act_dim"),
    (["--env", ENV, "--train-overrides", '{"out": "x"}'], "--train-overrides cannot set out"),
], ids=["rounds-zero", "unknown-beta", "expert-cannot-label", "expert-wrong-shape",
        "override-owned"])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, message, cli):
    proc = cli(["dagger", *args, "--out", str(tmp_path / "out")],
               env={"MINARI_DATASETS_PATH": str(tmp_path / "m")})
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("qbc dagger: error:"), proc.stderr
    assert message in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_flags_become_typed_settings(tmp_path):
    import tyro

    from qbc.cli.dagger import DaggerArgs, dagger_config
    from qbc.errors import InvalidValueError

    def parse(*flags):
        return dagger_config(tyro.cli(DaggerArgs, args=["--env", ENV, "--out", "o", *flags]))

    cfg = parse("--expert-params", '{"algo": "td3"}', "--expert-path", "e.zip",
                "--train-overrides", '{"warmup_steps": 1}', "--rounds", "2")
    assert type(cfg) is DaggerConfig and cfg.rounds == 2
    assert cfg.expert_params == {"algo": "td3", "path": "e.zip"}
    assert cfg.train_overrides == {"warmup_steps": 1}
    with pytest.raises(InvalidValueError, match="--train-overrides is not valid JSON"):
        parse("--train-overrides", "{x")
    with pytest.raises(InvalidValueError, match="--expert-params must be a JSON object"):
        parse("--expert-params", "[1]")


def test_a_run_stored_with_json_text_settings_continues(tmp_path):
    """dagger_config.json of runs started when the dict settings were JSON text."""
    from qbc.interactive.run_files import _typed

    old = {"expert": "sb3", "expert_path": "e.zip", "expert_params": '{"algo": "td3"}',
           "train_overrides": '{"warmup_steps": 1}', "rounds": 2}
    assert _typed(old) == {"expert": "sb3", "expert_params": {"algo": "td3", "path": "e.zip"},
                           "train_overrides": {"warmup_steps": 1}, "rounds": 2}
    new = {"expert": "lqr", "expert_params": {}, "train_overrides": {}}
    assert _typed(new) == new



def _tree(root):
    """{relative path: sha256} of every file under ``root`` (hidden ones too)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_overwrite_replaces_a_run_only_when_every_round_has_finished(tmp_path, monkeypatch):
    import json

    from qbc.data import demos_sha256, load_demonstrations

    ids = [f"dagger/run/round-{r}-v0" for r in range(3)]
    old = _run_in(tmp_path, monkeypatch)  # rounds 0..2
    before = _tree(tmp_path)
    arrays = [demos_sha256(load_demonstrations(i)) for i in ids]
    real_train = qbc.interactive.dagger.train_round

    def fails_in_round_one(cfg, r, demos, *rest):
        if r >= 1:
            raise RuntimeError("training failed")
        return real_train(cfg, r, demos, *rest)

    monkeypatch.setattr(qbc.interactive.dagger, "train_round", fails_in_round_one)
    with pytest.raises(RuntimeError, match="training failed"):
        _run_in(tmp_path, monkeypatch, overwrite=True, rounds=1, bins=16)
    assert _tree(tmp_path) == before  # the old run, its datasets; no staging leftovers
    assert [demos_sha256(load_demonstrations(i)) for i in ids] == arrays

    # a killed --overwrite run's hidden leftovers are removed by the next one
    (tmp_path / ".run.staging-kil1ed_x" / "round-0").mkdir(parents=True)
    (tmp_path / "minari" / ".qbc-dagger-dagger--run.staging-kil1ed_x").mkdir()
    monkeypatch.setattr(qbc.interactive.dagger, "train_round", real_train)
    new = _run_in(tmp_path, monkeypatch, overwrite=True, rounds=1, bins=16)
    assert [r["round"] for r in new] == [0, 1] and new != old[:2]
    run = tmp_path / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minari", "run"]
    assert sorted(p.name for p in run.iterdir()) == [
        "dagger_config.json", "round-0", "round-1", "rounds.csv", "timing.csv"]
    assert json.loads((run / "dagger_config.json").read_text())["bins"] == 16
    assert len((run / "rounds.csv").read_text().splitlines()) == 3
    assert not [p for p in (tmp_path / "minari").iterdir() if p.name.startswith(".")]
    assert not (tmp_path / "minari" / ids[2]).exists()  # the longer old run's round 2 is gone
    for r in (0, 1):  # the rounds name the final run folder and dataset ids
        conf = json.loads((run / f"round-{r}" / "train_config.json").read_text())
        assert conf["dataset"] == "+".join(ids[: r + 1]) and conf["bins"] == 16
        assert conf["out"] == str(run / f"round-{r}")
        assert load_demonstrations(ids[r]).metadata["dataset_id"] == ids[r]
    # the replaced run continues like any run
    assert _run_in(tmp_path, monkeypatch, rounds=1, bins=16) == new
    # a missing folder with the round datasets present: staged too, the folder made at the end
    shutil.rmtree(run)
    assert _run_in(tmp_path, monkeypatch, overwrite=True, rounds=1, bins=16) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minari", "run"]


def _bins(root):
    """--bins of each part of the DAgger run in root/run: its config, its round folders and
    its round datasets (root/minari); a consistent run has one value."""
    import json

    found = {"config": json.loads((root / "run" / "dagger_config.json").read_text())["bins"]}
    for r in range(3):
        folder = root / "run" / f"round-{r}" / "train_config.json"
        data = root / "minari" / "dagger" / "run" / f"round-{r}-v0" / "qbc_config.json"
        for key, path in ((f"round-{r}", folder), (f"data-{r}", data)):
            if path.exists():
                found[key] = json.loads(path.read_text())["bins"]
    return found


def _crash_after(target, name, calls):
    """Replace ``target.name`` by a wrapper that raises KeyboardInterrupt (a kill) after its
    ``calls``-th call has done its work."""
    real, count = getattr(target, name), []

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        count.append(1)
        if len(count) == calls:
            raise KeyboardInterrupt
        return result

    return wrapper


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-publish", "after-publish", "mid-swap"])
def test_overwrite_killed_while_publishing_is_finished_by_the_next_run(tmp_path, monkeypatch,
                                                                        where):
    """An --overwrite run killed between (or during) publishing its datasets and swapping its
    folder: the next run of the folder finishes both, so folder and datasets agree."""
    import qbc.interactive.staging

    _run_in(tmp_path, monkeypatch)  # the old run: rounds 0..2, 8 bins
    target, name, calls = {"mid-publish": (qbc.interactive.staging, "publish_dataset", 1),
                           "after-publish": (qbc.interactive.staging, "old_rounds", 1),
                           "mid-swap": (qbc.interactive.staging, "_remove", 4)}[where]
    with monkeypatch.context() as patch:
        patch.setattr(target, name, _crash_after(target, name, calls))
        with pytest.raises(KeyboardInterrupt):
            _run_in(tmp_path, monkeypatch, overwrite=True, rounds=1, bins=16)
    assert set(_bins(tmp_path).values()) == {8, 16}  # killed halfway: old and new parts
    rows = _run_in(tmp_path, monkeypatch, rounds=1, bins=16)  # continuing finishes it first
    assert [r["round"] for r in rows] == [0, 1]
    assert _bins(tmp_path) == {"config": 16, "round-0": 16, "data-0": 16, "round-1": 16,
                               "data-1": 16}  # the old round 2 is gone from both
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minari", "run"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "dagger_config.json", "round-0", "round-1", "rounds.csv", "timing.csv"]
    assert not [p for p in (tmp_path / "minari").iterdir() if p.name.startswith(".")]
    assert _run_in(tmp_path, monkeypatch, rounds=1, bins=16) == rows  # finished: a no-op


def test_expert_path_alone_means_the_sb3_expert_as_in_rollout_and_certify(tmp_path, cli):
    # dagger took the env's default expert (lqr) and refused: "expert 'lqr' reads no model file"
    from qbc.data.expert_choice import unnamed_expert

    assert unnamed_expert("qbc/ScalarUnstable-v0", {"path": "m.zip"}) == "sb3"
    assert unnamed_expert("qbc/ScalarUnstable-v0", {}) == "lqr"
    res = cli(["dagger", "--env", "qbc/ScalarUnstable-v0", "--expert-path",
               str(tmp_path / "missing.zip"), "--out", str(tmp_path / "d"), "--rounds", "1"])
    assert res.returncode == 2 and "SB3 model" in res.stderr and "lqr" not in res.stderr
    assert not (tmp_path / "d").exists()
