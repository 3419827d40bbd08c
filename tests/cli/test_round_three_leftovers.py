"""What was left of the third reliability round: wrappers that drop an expert's episode starts,
flags a policy or quantizer would silently ignore, lock waits without a bound, and an expert
rebuilt from a dataset without the file check every other path makes."""

from __future__ import annotations

import numpy as np
import pytest
from round_three import SWEEP, TRAIN_TINY, held_lock, tiny_dataset

from qbc.certify.certificate import PerturbedActor
from qbc.rollout.coupled import QuantizedExpert, coupled_rollout
from qbc.tokenizer import ActionTokenizer

__all__ = ["held_lock", "tiny_dataset"]  # the fixtures of tests/round_three.py, used here by name


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


# -- a setting the run would ignore is refused -----------------------------------------------------
@pytest.mark.parametrize("policy,flags,names", [
    ("mlp-mse", ["--range-margin", "0.5"], "--range-margin"),
    ("mlp-mse", ["--bins", "8"], "--bins"),
    ("mlp-gaussian", ["--quantizer", "smooth", "--quantile", "0.01"], "--quantizer, --quantile"),
    ("mlp-mse", ["--target-sigma", "0.75"], "--target-sigma"),
    ("mlp-gaussian", ["--no-per-dim"], "--no-per-dim"),
    ("mlp-mse", ["--token-target", "sampled"], "--token-target"),
    ("mlp-mse", ["--model.head", "plain"], "--model.head"),
    ("independent-categorical", ["--model.head", "plain"], "--model.head"),
    ("ar-transformer", ["--quantizer", "kmeans", "--quantile", "0.01"], "--quantile"),
    ("ar-transformer", ["--quantizer", "lloyd_max", "--range-margin", "0.5"], "--range-margin"),
    ("ar-transformer", ["--quantizer", "smooth", "--target-sigma", "0.75"], "--target-sigma"),
    ("ar-transformer", ["--quantizer", "vq", "--target-sigma", "0.75"], "--target-sigma"),
    ("ar-transformer", ["--quantizer", "vq", "--token-target", "one-hot"], "--token-target"),
    ("ar-transformer", ["--transition-steps", "50"], "--transition-steps"),
    ("ar-transformer", ["--select-episodes", "5"], "--select-episodes"),
    ("ar-transformer", ["--val-fraction", "0", "--select-by", "rollout"], "--val-fraction 0"),
    ("ar-transformer", ["--val-fraction", "0", "--patience", "3"], "--val-fraction 0"),
])
@pytest.mark.slow
def test_train_refuses_a_setting_its_run_would_ignore(tmp_path, capsys, tiny_dataset, policy,
                                                      flags, names):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", tiny_dataset, "--policy", policy, *flags,
                 "--out", str(out), *TRAIN_TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and names in err and "ignore" in err, err
    assert not out.exists()


@pytest.mark.parametrize("policy,flags", [
    ("mlp-mse", ["--bins", "64", "--quantizer", "uniform"]),  # the defaults change nothing
    ("ar-transformer", ["--quantizer", "smooth", "--token-target", "sampled"]),
    ("ar-transformer", ["--quantizer", "uniform", "--token-target", "one-hot"]),
    ("ar-transformer", ["--quantizer", "kmeans", "--token-target", "soft"]),
    ("ar-transformer", ["--quantizer", "kmeans", "--target-sigma", "0.5"]),
    ("ar-transformer", ["--quantizer", "smooth", "--range-margin", "0.5", "--quantile", "0.01"]),
])
@pytest.mark.slow
def test_train_takes_the_same_settings_where_they_apply(tmp_path, tiny_dataset, policy, flags):
    from qbc.cli import main

    assert main(["train", "--dataset", tiny_dataset, "--policy", policy, *flags,
                 "--bins", "8", "--out", str(tmp_path / "run"), *TRAIN_TINY]
                if policy != "mlp-mse" else
                ["train", "--dataset", tiny_dataset, "--policy", policy, *flags,
                 "--out", str(tmp_path / "run"), *TRAIN_TINY[:5]]) == 0  # no transformer flags


def test_tokenize_refuses_quantile_with_a_quantizer_without_a_range(tmp_path, capsys):
    from qbc.cli import main

    actions = tmp_path / "a.npy"
    np.save(actions, np.linspace(-1, 1, 50, dtype=np.float32)[:, None])
    out = tmp_path / "tok.json"
    assert main(["tokenize", "--actions", str(actions), "--quantizer", "kmeans", "--bins", "4",
                 "--quantile", "0.01", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--quantile" in err and "'kmeans' would ignore it" in err and "\n" not in err
    assert not out.exists()


def test_dagger_and_train_chunked_refuse_settings_their_policy_would_ignore(tmp_path, capsys,
                                                                            tiny_dataset):
    from qbc.cli import main

    out = tmp_path / "d"
    assert main(["dagger", "--env", "qbc/ScalarStable-v0", "--out", str(out), "--policy",
                 "mlp-mse", "--tokenizer", "refit", "--no-progress"]) == 2
    assert "--tokenizer" in capsys.readouterr().err and not out.exists()
    assert main(["dagger", "--env", "qbc/ScalarStable-v0", "--out", str(out), "--policy",
                 "mlp-mse", "--bins", "8", "--no-progress"]) == 2
    assert "--bins" in capsys.readouterr().err and not out.exists()
    for flags in (["--policy", "chunk-mlp-l1", "--chunk-tokenizer", "fast"],
                  ["--policy", "chunk-mlp-l1", "--bins", "8"],
                  ["--model.std", "fixed"]):
        assert main(["train-chunked", "--dataset", tiny_dataset, "--chunk-k", "2", *flags,
                     "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert flags[-2] in err and "ignore" in err and "\n" not in err, err
        assert not out.exists()


def test_learner_vs_floor_gives_its_mlp_reference_no_token_flags():
    from qbc.experiments.learner_vs_floor.plan import _without_token_flags

    assert _without_token_flags(["--model.head", "plain", "--select-by", "val-loss",
                                 "--range-margin=0.5", "--no-per-dim", "--eval-interval",
                                 "30"]) == ["--select-by", "val-loss", "--eval-interval", "30"]


def test_a_sweep_gives_each_policy_only_the_settings_it_reads(tmp_path):
    """A grid's settings are shared by every policy of a cell: the sweep keeps passing them
    where they apply (quantile to smooth, not kmeans; tokens and the head to the ar-transformer,
    not mlp-mse), so qbc train's refusals do not fail its cells. (token_target 'sampled' with
    a deterministic quantizer is refused when the file is read:
    tests/sweep/test_sweep_validation.py.)"""
    from qbc.sweep import read_table, run_sweep, spec_from_dict
    from qbc.sweep.spec import tomllib

    spec = spec_from_dict(tomllib.loads("""
[grid]
envs = ["qbc/ScalarStable-v0"]
quantizers = ["smooth", "kmeans"]
bins = 8
n_demos = 4
seeds = [0]
horizons = [10]
[data]
episode_steps = 10
[train]
policies = ["ar-transformer", "mlp-mse", "quantized-expert"]
steps = 2
batch_size = 16
eval_interval = 2
quantile = 0.05
token_target = "one-hot"
model = {d_model = 16, n_layers = 1, n_heads = 2, head = "plain"}
[rollout]
episodes = 2
num_envs = 2
"""))
    result = run_sweep(spec, tmp_path / "s", progress=False)
    assert not result.failed, result.failed
    rows = read_table(tmp_path / "s" / "results.csv")
    assert {(r["quantizer"], r["policy"]) for r in rows} == {
        (q, p) for q in ("smooth", "kmeans") for p in ("ar-transformer", "mlp-mse",
                                                         "quantized-expert")} | {
        ("smooth", "quantized-expert-nearest")}  # smooth's floor of argmax decoding


# -- lock waits are bounded ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_lock_wait_gives_up_after_its_timeout_naming_the_holder_and_the_lock(tmp_path,
                                                                               held_lock,
                                                                               monkeypatch):
    import socket
    import time

    import qbc.infra.run_folder
    from qbc.errors import LockTimeoutError
    from qbc.infra.run_folder import exclusive

    lock = tmp_path / ".x.lock"
    pid = held_lock(lock)
    shown = []

    class Bar:
        n = 0

        def update(self, k):
            self.n += k
            shown.append(self.n)

        def close(self):
            shown.append("closed")

    def bar(**kw):
        shown.append(kw["desc"])
        return Bar()

    monkeypatch.setattr(qbc.infra.run_folder, "progress_bar", bar)
    t0 = time.monotonic()
    with pytest.raises(LockTimeoutError) as err:
        with exclusive(lock, "qbc command is writing X", wait=1.5, progress=True):
            pass
    assert 1.5 <= time.monotonic() - t0 < 10
    text = str(err.value)
    assert f"pid {pid} on host {socket.gethostname()}" in text and str(lock) in text, text
    assert "gave up after 2 s" in text or "gave up after 1 s" in text, text
    assert shown[0] == f"waiting for pid {pid} on host {socket.gethostname()}"
    assert shown[-1] == "closed" and max(x for x in shown[1:-1]) >= 1  # it showed the wait
    with pytest.raises(Exception, match=f"pid {pid}"):  # no wait: refused at once, as before
        with exclusive(lock, "qbc command is writing X"):
            pass


@pytest.mark.slow
def test_a_sweep_waits_for_a_dataset_lock_no_longer_than_lock_timeout(tmp_path, held_lock,
                                                                      capsys):
    from qbc.cli import main
    from qbc.data.store import minari_root, validate_dataset_id
    from qbc.sweep import expand_cells, spec_from_dict
    from qbc.sweep.cells import needed_datasets
    from qbc.sweep.spec import tomllib

    config = tmp_path / "s.toml"
    config.write_text(SWEEP)
    (ds,) = needed_datasets(expand_cells(spec_from_dict(tomllib.loads(SWEEP))))
    root = minari_root(None)
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f".qbc-lock-{validate_dataset_id(ds.dataset_id).replace('/', '--')}"
    pid = held_lock(lock)
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "o"),
                 "--lock-timeout", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"pid {pid}" in err and str(lock) in err and "gave up" in err
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "o2"),
                 "--lock-timeout", "nan", "--no-progress"]) == 2
    assert "--lock-timeout must be" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


# -- found attacking the changed commands ----------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "train-chunked"])
def test_a_diverged_training_run_ends_in_one_line_and_leaves_no_run(tmp_path, capsys,
                                                                   tiny_dataset, command):
    """--lr 1e30 made the loss NaN; the run went on and died writing NaN into
    trainer_state.json ('internal error')."""
    from qbc.cli import main

    out = tmp_path / "run"
    extra = ["--chunk-k", "2"] if command == "train-chunked" else []
    assert main([command, "--dataset", tiny_dataset, "--lr", "1e30", "--steps", "6",
                 "--eval-interval", "3", "--bins", "8", "--rollout-episodes", "0",
                 "--no-progress", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the training loss became nan" in err and "--lr" in err, err
    assert not out.exists()


@pytest.mark.parametrize("sigma", [1e-300, 1e-30, 0.75, 1e30, 1e308])
def test_gaussian_targets_are_finite_for_every_sigma(sigma):
    """--target-sigma 1e-300 gave 0/0 targets (NaN loss): a vanishing sigma is the one-hot
    target, a huge one the uniform histogram."""
    from qbc.training.data import gauss_targets

    tok = ActionTokenizer("uniform", 8).fit(np.linspace(-1, 1, 50, dtype=np.float32)[:, None])
    actions = np.array([[-1.0], [0.1], [0.93], [5.0]], np.float32)
    t = gauss_targets(tok, actions, sigma)
    assert np.isfinite(t).all() and np.allclose(t.sum(-1), 1.0)
    if sigma <= 1:
        np.testing.assert_array_equal(t.argmax(-1), tok.encode(actions))  # nearest codeword
    if sigma <= 1e-30:
        np.testing.assert_allclose(t.max(-1), 1.0)
    if sigma >= 1e30:
        np.testing.assert_allclose(t, 1 / 8, rtol=1e-5)


@pytest.fixture
def expert_zip(tmp_path):
    """A tiny TD3 model of qbc/ScalarStable-v0 trained by `qbc expert train` (with its report and
    replay buffer)."""
    pytest.importorskip("stable_baselines3")
    from qbc.cli import main

    out = tmp_path / "e" / "m.zip"
    assert main(["expert", "train", "--env", "qbc/ScalarStable-v0", "--algo", "td3",
                 "--timesteps", "30", "--out", str(out), "--eval-episodes", "1",
                 "--no-progress"]) == 0
    return out


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case,expect", [
    ("other-env", "was trained with --env qbc/ScalarStable-v0"),
    ("other-shapes", "does not fit Pendulum-v1"),
    ("other-algo", "was trained with --algo td3"),
    ("replay-damaged", "replay buffer"),
    ("report-list", "holds a JSON list"),
    ("report-nan", "field 'total_timesteps' must be a number >= 0"),
    ("zip-truncated", "m.zip"),
])
@pytest.mark.slow
def test_expert_train_resume_refuses_what_it_cannot_continue(expert_zip, capsys, case, expect):
    """Round three's harness: another env of the same shapes was continued without a word, an
    env of other shapes, a damaged replay buffer or a report that is a JSON list were internal
    errors, and a bad zip was reported under the hidden staging copy's name."""
    import json

    from qbc.agents.sb3 import replay_buffer_path
    from qbc.cli import main

    env, algo = "qbc/ScalarStable-v0", "td3"
    report = expert_zip.with_suffix(".json")
    if case == "other-env":
        env = "qbc/ScalarUnstable-v0"
    elif case == "other-shapes":
        env = "Pendulum-v1"
        report.unlink()  # no report: SB3's own check of the spaces
    elif case == "other-algo":
        algo = "sac"
    elif case == "replay-damaged":
        buffer = replay_buffer_path(expert_zip)
        buffer.write_bytes(buffer.read_bytes()[:100])
    elif case == "report-list":
        report.write_text("[]")
    elif case == "report-nan":
        report.write_text(json.dumps({"total_timesteps": float("nan")}))
    elif case == "zip-truncated":
        expert_zip.write_bytes(expert_zip.read_bytes()[:300])
    before = _files(expert_zip.parent)
    capsys.readouterr()
    assert main(["expert", "train", "--env", env, "--algo", algo, "--timesteps", "10", "--out",
                 str(expert_zip), "--resume", "--eval-episodes", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expect in err and ".training" not in err, err
    assert _files(expert_zip.parent) == before


DAGGER = ["dagger", "--env", "qbc/ScalarStable-v0", "--episodes-per-round", "2",
          "--max-episode-steps", "8", "--steps", "2", "--eval-episodes", "2", "--bins", "8",
          "--model.d-model", "16", "--model.n-heads", "2", "--model.n-layers", "1",
          "--no-progress"]


def test_dagger_opens_round_0s_tokenizer_before_a_new_round_writes_its_dataset(tmp_path, capsys):
    """Continuing a run whose round-0 tokenizer.json was damaged collected and wrote the new
    round's dataset, then failed on the tokenizer: the dataset stayed behind."""
    from qbc.cli import main
    from qbc.data import dataset_exists

    out = tmp_path / "d"
    assert main([*DAGGER, "--out", str(out), "--rounds", "1"]) == 0
    with open(out / "round-0" / "best" / "tokenizer.json", "a") as f:
        f.write("x")
    capsys.readouterr()
    assert main([*DAGGER, "--out", str(out), "--rounds", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tokenizer.json" in err, err
    assert not dataset_exists("dagger/d/round-2-v0") and not (out / "round-2").exists()


def test_dagger_refuses_refit_with_warm_rounds(tmp_path, capsys):
    from qbc.cli import main

    out = tmp_path / "d"
    assert main([*DAGGER, "--out", str(out), "--rounds", "1", "--tokenizer", "refit",
                 "--init", "warm"]) == 2
    assert "--init warm keeps round 0's" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("version", [99, float("nan"), "1", None])
@pytest.mark.slow
def test_an_actor_folder_of_another_format_version_is_refused(tmp_path, version):
    """actor.json's version was never read: a folder of another version loaded as this one."""
    import json
    import shutil

    from qbc.agents.actor import read_actor_meta
    from qbc.errors import CorruptFileError

    pytest.importorskip("stable_baselines3")
    from qbc.cli import main

    zip_path = tmp_path / "m.zip"
    assert main(["expert", "train", "--env", "qbc/ScalarStable-v0", "--algo", "td3",
                 "--timesteps", "20", "--out", str(zip_path), "--eval-episodes", "1",
                 "--no-progress"]) == 0
    folder = tmp_path / "m-actor"
    read_actor_meta(folder)
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    meta = json.loads((bad / "actor.json").read_text())
    meta["version"] = version
    (bad / "actor.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=r"actor\.json.*version"):
        read_actor_meta(bad)


def test_errors_in_a_tokenizer_file_name_the_file(tmp_path):
    """'tokenizer format version 99 is not supported' named no file (qbc rollout --tokenizer,
    a checkpoint's tokenizer.json)."""
    import json

    from qbc.errors import CorruptFileError

    tok = ActionTokenizer("uniform", 8).fit(np.linspace(-1, 1, 20, dtype=np.float32)[:, None])
    path = tmp_path / "tok.json"
    tok.save(path)
    state = json.loads(path.read_text())
    for key, value in (("version", 99), ("version", "1"), ("n_bins", -3)):
        bad = {**state, key: value}
        path.write_text(json.dumps(bad))
        with pytest.raises(CorruptFileError, match=r"tokenizer file '.*tok\.json'"):
            ActionTokenizer.load(path)


def test_without_validation_the_budget_has_no_early_stopping():
    """--val-fraction 0: the budget said 'early stopping after 10 evaluations' (recorded in
    summary.json); nothing is validated, so nothing can stop it."""
    from qbc.training import TrainConfig, resolve_budget

    auto = resolve_budget(TrainConfig(dataset="d", val_fraction=0.0), 1000)
    assert auto.patience == 0 and auto.steps == 10_000
    assert resolve_budget(TrainConfig(dataset="d"), 1000).patience == 10


@pytest.mark.parametrize("damage,expect", [
    ("text", "field 'floor_regret' of line 3 must be a finite number"),
    ("nan", "field 'regret' of line 3 must be a finite number"),
    ("cut", "line 3 has other fields than the header"),
    ("binary", "is not a text table"),
])
@pytest.mark.slow
def test_a_damaged_rounds_csv_is_refused_when_the_run_is_continued(tmp_path, capsys, damage,
                                                                   expect):
    """The verdict of a continued DAgger run is computed from rounds.csv: a text or cut field
    was an internal error (formatting 'abc' as a number), a binary file a UnicodeDecodeError,
    NaN a verdict about NaN."""
    import csv

    from qbc.cli import main

    out = tmp_path / "d"
    assert main([*DAGGER, "--out", str(out), "--rounds", "1"]) == 0
    path = out / "rounds.csv"
    if damage in ("text", "nan"):
        rows = list(csv.DictReader(path.read_text().splitlines()))
        key, value = ("floor_regret", "abc") if damage == "text" else ("regret", "nan")
        rows[-1][key] = value
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif damage == "cut":
        path.write_text(path.read_text()[:-40])
    else:
        path.write_bytes(bytes(range(192, 256)) * 4)
    capsys.readouterr()
    assert main([*DAGGER, "--out", str(out), "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expect in err and "rounds.csv" in err, err


@pytest.mark.parametrize("value", [float("nan"), "x", True])
def test_resume_refuses_a_best_checkpoint_record_that_is_not_a_number(tmp_path, capsys,
                                                                      tiny_dataset, value):
    """trainer_state.json's best record with NaN died writing it back (internal error); a
    string failed comparing it."""
    import json

    from qbc.cli import main

    out = tmp_path / "r"
    args = ["train", "--dataset", tiny_dataset, "--out", str(out), "--eval-interval", "1",
            "--bins", "8", *TRAIN_TINY]
    assert main(args) == 0
    path = out / "last" / "trainer_state.json"
    state = json.loads(path.read_text())
    state["best"]["val_loss"] = value
    path.write_text(json.dumps(state))
    capsys.readouterr()
    assert main([*args[:-len(TRAIN_TINY)], *TRAIN_TINY[:1], "4", *TRAIN_TINY[2:],
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot be resumed" in err and "'val_loss'" in err, err
