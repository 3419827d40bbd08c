"""The last leftovers of the third reliability round (issue 34): model settings a policy kind
would ignore, the ordered head a joint quantizer cannot have, a sweep refused by a lock wait
that wrote its folder first and named no flag, absurd chunk vocabularies, faults inside a
user's expert, versions that are bools, and NaN in metrics.jsonl."""
# ruff: noqa: F811  (pytest fixtures imported from another test module, used as arguments)

from __future__ import annotations

import json

import numpy as np
import pytest
from round_three import SWEEP, TRAIN_TINY, held_lock, tiny_dataset  # noqa: F401 (fixtures)

from qbc.tokenizer import ActionTokenizer


# -- model settings a policy kind does not read are refused ---------------------------------------
@pytest.mark.parametrize("policy,flags,names", [
    ("mlp-mse", ["--model.d-model", "32"], "--model.d-model"),
    ("mlp-gaussian", ["--model.n-layers", "3", "--model.dropout", "0.1"],
     "--model.n-layers, --model.dropout"),
    ("independent-categorical", ["--model.n-heads", "8"], "--model.n-heads"),
    ("ar-transformer", ["--model.mlp-layers", "3"], "--model.mlp-layers"),
    ("ar-transformer", ["--model.std", "fixed"], "--model.std"),
])
def test_train_refuses_a_model_setting_its_policy_does_not_read(tmp_path, capsys, tiny_dataset,
                                                                policy, flags, names):
    from qbc.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", tiny_dataset, "--policy", policy, *flags, "--out",
                 str(out), *TRAIN_TINY[:5]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--policy {policy} does not read {names}" in err, err
    assert "would ignore" in err and not out.exists()


@pytest.mark.parametrize("policy,flags", [
    ("mlp-mse", ["--model.d-model", "64", "--model.hidden", "32"]),  # d-model: the default
    ("mlp-gaussian", ["--model.std", "fixed", "--model.mlp-layers", "1"]),
])
def test_train_takes_the_model_settings_its_policy_reads(tmp_path, tiny_dataset, policy, flags):
    from qbc.cli import main

    assert main(["train", "--dataset", tiny_dataset, "--policy", policy, *flags, "--out",
                 str(tmp_path / "run"), *TRAIN_TINY[:5]]) == 0


@pytest.mark.parametrize("policy,flags", [
    ("chunk-mlp-l1", ["--model.d-model", "32"]),
    ("chunk-ar-transformer", ["--model.mlp-layers", "3"]),
])
def test_train_chunked_refuses_a_model_setting_its_policy_does_not_read(tmp_path, capsys,
                                                                        policy, flags):
    from qbc.cli import main

    out = tmp_path / "c"
    assert main(["train-chunked", "--dataset", "test/none-v0", "--chunk-k", "2", "--policy",
                 policy, *flags, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and flags[0] in err and "would ignore" in err, err
    assert not out.exists()


def test_sweeps_and_experiments_give_each_kind_only_the_model_settings_it_reads():
    from qbc.experiments.learner_vs_floor.plan import _without_token_flags
    from qbc.policy import ModelConfig
    from qbc.policy.registry import model_for

    grid = ModelConfig(d_model=16, n_layers=1, n_heads=2, hidden=32, head="plain", std="fixed")
    assert model_for("mlp-mse", grid) == ModelConfig(hidden=32)
    assert model_for("mlp-gaussian", grid) == ModelConfig(hidden=32, std="fixed")
    assert model_for("ar-transformer", grid) == ModelConfig(d_model=16, n_layers=1, n_heads=2,
                                                            hidden=32, head="plain")
    assert model_for("chunk-mlp-l1", grid) == ModelConfig(hidden=32)
    # learner_vs_floor's --quick flags (a tiny transformer) reach its mlp-mse reference without
    # the transformer's settings
    assert _without_token_flags(["--eval-interval", "30", "--model.d-model", "16",
                                 "--model.n-layers=1", "--model.hidden", "32"]) == [
        "--eval-interval", "30", "--model.hidden", "32"]


# -- a sweep refused by a lock wait writes nothing, and names --lock-timeout ----------------------
def test_a_sweep_that_gives_up_waiting_for_a_lock_leaves_no_folder_and_names_the_flag(
        tmp_path, held_lock, capsys):
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
    held_lock(root / f".qbc-lock-{validate_dataset_id(ds.dataset_id).replace('/', '--')}")
    out = tmp_path / "sweeps" / "o"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--lock-timeout", "0.5",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gave up" in err and "--lock-timeout" in err, err
    assert not (tmp_path / "sweeps").exists()  # no folder, no sweep_config.json
    # an existing sweep folder keeps the sweep_config.json of its last run
    out.mkdir(parents=True)
    (out / "sweep_config.json").write_text('{"earlier": true}\n')
    assert main(["sweep", "--config", str(config), "--out", str(out), "--lock-timeout", "0.5",
                 "--no-progress"]) == 2
    assert (out / "sweep_config.json").read_text() == '{"earlier": true}\n'
    assert sorted(p.name for p in out.iterdir()) == ["sweep_config.json"]


# -- absurd chunk vocabularies are refused before anything is read ---------------------------------
@pytest.mark.parametrize("flags,fix", [
    (["--chunk-tokenizer", "rvq", "--bins", "1000000000"], "use fewer --bins"),
    (["--chunk-tokenizer", "rvq", "--chunk-tokenizer-params", "codes=1000000000"],
     "a smaller codes in --chunk-tokenizer-params"),
    (["--chunk-tokenizer", "per-step", "--bins", "1000000000"], "use fewer --bins"),
    (["--chunk-tokenizer", "fast", "--chunk-tokenizer-params", "vocab_size=1000000000"],
     "a smaller vocab_size"),
])
def test_train_chunked_refuses_a_vocabulary_beyond_memory_up_front(tmp_path, capsys, flags,
                                                                   fix):
    from qbc.cli import main

    out = tmp_path / "c"
    # no such dataset: the sizes are refused before it is looked for
    assert main(["train-chunked", "--dataset", "test/none-v0", "--chunk-k", "2", *flags,
                 "--out", str(out), "--no-progress", "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a vocabulary of 1,000,000,000" in err and fix in err, err
    assert "GiB of memory" in err and not out.exists()


# -- a fault inside a user's expert is the user's -------------------------------------------------
@pytest.fixture
def broken_expert():
    """`--expert test-broken`: a registered expert whose act raises KeyError."""
    from qbc.agents.experts import EXPERTS, LinearExpert, register_expert

    class Broken(LinearExpert):
        def act(self, obs, deterministic=True, rng=None):
            raise KeyError("gain table")

    @register_expert("test-broken")
    def _make(info, noise_std=0.0, seed=0):
        return Broken(info, np.zeros((info["act_dim"], info["obs_dim"])), {})

    yield "test-broken"
    EXPERTS.remove("test-broken")


def test_set_expert_reports_any_exception_of_the_experts_act_as_the_users(tiny_dataset, capsys,
                                                                          broken_expert):
    from qbc.cli import main
    from qbc.data import dataset_path

    meta = dataset_path(tiny_dataset) / "data" / "metadata.json"
    before = meta.read_text()
    assert main(["data", "set-expert", "--dataset", tiny_dataset, "--expert", broken_expert]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "internal error" not in err, err
    assert f"expert '{broken_expert}': act raised KeyError: 'gain table'" in err, err
    assert meta.read_text() == before


def test_set_expert_reports_the_users_expert_as_user_code_in_python(tiny_dataset,
                                                                    broken_expert):
    from qbc.data.expert_choice import set_dataset_expert
    from qbc.errors import UserCodeError

    with pytest.raises(UserCodeError, match="act raised KeyError"):
        set_dataset_expert(tiny_dataset, broken_expert)


# -- a version is an int, not a bool ---------------------------------------------------------------
def test_a_tokenizer_or_chunk_tokenizer_of_version_true_is_refused(tmp_path):
    from qbc.chunking import ChunkTokenizer, make_chunk_tokenizer
    from qbc.errors import CorruptFileError

    tok = ActionTokenizer("uniform", 8).fit(np.linspace(-1, 1, 20, dtype=np.float32)[:, None])
    path = tmp_path / "tok.json"
    tok.save(path)
    state = json.loads(path.read_text())
    assert state["version"] == 1
    path.write_text(json.dumps({**state, "version": True}))
    with pytest.raises(CorruptFileError, match="version True"):
        ActionTokenizer.load(path)

    chunks = np.random.default_rng(0).normal(size=(40, 2, 1)).astype(np.float32)
    chunk_tok = make_chunk_tokenizer("per-step", n_bins=8).fit(chunks)
    cpath = tmp_path / "chunk.json"
    chunk_tok.save(cpath)
    state = json.loads(cpath.read_text())
    assert state["version"] == 1
    cpath.write_text(json.dumps({**state, "version": True}))
    with pytest.raises(CorruptFileError, match="version True"):
        ChunkTokenizer.load(cpath)


def test_a_policy_checkpoint_of_version_true_is_refused(tmp_path, capsys,
                                                        tiny_dataset):
    from qbc.cli import main
    from qbc.errors import CorruptFileError
    from qbc.policy import load_policy

    out = tmp_path / "r"
    assert main(["train", "--dataset", tiny_dataset, "--out", str(out), "--bins", "8",
                 *TRAIN_TINY]) == 0
    path = out / "best" / "config.json"
    cfg = json.loads(path.read_text())
    assert cfg["version"] == 1
    path.write_text(json.dumps({**cfg, "version": True}))
    with pytest.raises(CorruptFileError, match="version True"):
        load_policy(out / "best")


# -- metrics.jsonl holds finite numbers ------------------------------------------------------------
@pytest.mark.parametrize("damage,expect", [
    ("nan", "line 1: NaN is not a finite number"),
    ("inf", "line 2: Infinity is not a finite number"),
    ("list", "line 1 is not a metrics record"),
])
def test_resume_refuses_nan_in_metrics_jsonl_naming_the_file_and_line(tmp_path, capsys,
                                                                      tiny_dataset,
                                                                      damage, expect):
    from qbc.cli import main

    out = tmp_path / "r"
    args = ["train", "--dataset", tiny_dataset, "--out", str(out), "--eval-interval", "1",
            "--bins", "8", *TRAIN_TINY]
    assert main(args) == 0
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    if damage == "nan":
        lines[0] = json.dumps({**json.loads(lines[0]), "train_loss": float("nan")})
    elif damage == "inf":
        lines[1] = json.dumps({**json.loads(lines[1]), "val_loss": float("inf")})
    else:
        lines[0] = "[1, 2]"
    path.write_text("\n".join(lines) + "\n")
    before = path.read_text()
    capsys.readouterr()
    assert main([*args[:-len(TRAIN_TINY)], *TRAIN_TINY[:1], "4", *TRAIN_TINY[2:],
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "metrics.jsonl" in err and expect in err, err
    assert path.read_text() == before


# -- the ordered head of a joint quantizer: what is trained is recorded ----------------------------
@pytest.mark.parametrize("env,head", [("qbc/LinearStable-v0", "plain"),
                                      ("qbc/ScalarStable-v0", "ordered")])
def test_a_joint_quantizer_records_the_head_it_trains(tmp_path, env, head):
    """vq on 2-D actions: one token per action vector, no order; the run was plain while
    train_config.json said ordered. On 1-D actions the codes are ordered and the head is too."""
    from qbc.cli import main
    from qbc.policy import load_policy

    assert main(["collect", "--env", env, "--dataset", "test/vq-v0", "--episodes", "3",
                 "--max-episode-steps", "8", "--no-progress"]) == 0
    out = tmp_path / "r"
    args = ["train", "--dataset", "test/vq-v0", "--out", str(out), "--quantizer", "vq",
            "--bins", "4", "--eval-interval", "1", *TRAIN_TINY]
    assert main(args) == 0
    conf = json.loads((out / "train_config.json").read_text())
    assert conf["model"]["head"] == head
    stored = json.loads((out / "best" / "config.json").read_text())
    assert stored["model"]["ordered_head"] == (head == "ordered")
    assert load_policy(out).module.cfg.ordered_head == (head == "ordered")
    # the run continues with the same settings
    assert main([*args[:-len(TRAIN_TINY)], *TRAIN_TINY[:1], "4", *TRAIN_TINY[2:],
                 "--resume"]) == 0
