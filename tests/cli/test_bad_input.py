"""The bad-input table (docs/errors.md): every row through the real CLI and through Python.

Each CLI row runs ``qbc ...`` and checks the exit code, that stderr holds the expected one-line
message, and that there is no traceback. The rows run one after the other in this process
through ``qbc.cli.main``, as ``python -m qbc.cli`` would run them (stdout and stderr caught at
the file descriptors too, warnings shown as PYTHONWARNINGS=default shows them, the process's
state restored after each: conftest's ``cli``), from one module fixture; then one test per row
checks its result. A smoke test runs a real interpreter (the console script) and compares its
output with the rows'. The same cases are checked in Python as
typed exceptions (or typed warnings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer
from repository import ROOT
from tiny import TINY_MODEL, TINY_MODEL_FLAGS

from qbc.errors import (
    ClippedActionsWarning,
    CorruptFileError,
    InvalidValueError,
    OutputExistsError,
    QbcError,
    UnknownNameError,
)

ENV = "qbc/LinearUnstable-v0"  # obs (2,), action (2,)
OTHER_ENV = "qbc/CartPoleContinuous-v0"  # obs (4,), action (1,)


# -- artefacts the rows need, made once in-process -------------------------------------------------
@dataclass
class Workspace:
    root: Path
    minari: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "MINARI_DATASETS_PATH": str(self.minari),
                "PYTHONWARNINGS": "default"}


def _nan_episodes():
    rng = np.random.default_rng(0)
    eps = []
    for k in range(3):
        obs = rng.normal(size=(6, 4)).astype(np.float32)
        act = rng.normal(size=(5, 2)).astype(np.float32)
        if k == 1:
            act[2, 0] = np.nan
            obs[3, 1] = np.inf
        eps.append(EpisodeBuffer(id=None, seed=k, observations=obs, actions=act,
                                 rewards=np.zeros(5), terminations=np.zeros(5, bool),
                                 truncations=np.r_[np.zeros(4, bool), True]))
    return eps


def _build(root: Path, tiny_lin_copy) -> Workspace:
    import shutil

    from qbc.data import dataset_path, load_demonstrations, write_dataset
    from qbc.tokenizer import ActionTokenizer

    ws = Workspace(root, root / "minari")
    # qbc/lin-v0 (4 episodes x 20 steps of ENV) and run/, trained on it with 8 bins and the
    # tiny model: conftest's tiny_lin_run, copied
    tiny_lin_copy(root)
    write_dataset("qbc/nan-v0", _nan_episodes(), env=ENV)
    write_dataset("qbc/broken-v0", _nan_episodes()[:1], env=ENV)
    h5 = dataset_path("qbc/broken-v0") / "data" / "main_data.hdf5"
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])  # a truncated copy
    write_dataset("qbc/metalist-v0", _nan_episodes()[:1], env=ENV)
    (dataset_path("qbc/metalist-v0") / "data" / "metadata.json").write_text("[]")

    demos = load_demonstrations("qbc/lin-v0")
    np.save(root / "actions.npy", demos.actions)
    bad = demos.actions.copy()
    bad[[3, 7], 1] = [np.nan, np.inf]
    np.save(root / "actions_nan.npy", bad)
    ActionTokenizer.fit(demos.actions * 1e-3, n_bins=8).save(root / "narrow_tok.json")
    ActionTokenizer.fit(demos.actions, n_bins=16).save(root / "tok16.json")
    text = (root / "tok16.json").read_text()
    (root / "truncated_tok.json").write_text(text[: len(text) // 2])

    shutil.copytree(root / "run", root / "run_truncated")
    weights = root / "run_truncated" / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    shutil.copytree(root / "run", root / "run_wrong_tok")
    shutil.copy(root / "tok16.json", root / "run_wrong_tok" / "best" / "tokenizer.json")
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("an earlier result\n")
    (root / "bad_sweep.toml").write_text(
        '[grid]\nenvs = ["qbc/ScalarStable-v0"]\nquantizer = ["uniform"]\n')
    return ws


# -- the table -------------------------------------------------------------------------------------
@dataclass
class Row:
    """One row of docs/errors.md: argv of `qbc`, exit code, substrings stderr must contain."""

    id: str
    argv: list[str]
    expect: list[str]
    rc: int = 2


ROWS = [
    Row("unknown-env-id",
        ["collect", "--env", "qbc/LinearUnstabel-v0", "--dataset", "qbc/x-v0"],
        ["unknown env id 'qbc/LinearUnstabel-v0'", "Did you mean 'qbc/LinearUnstable-v0'"]),
    Row("unknown-quantizer",
        ["tokenize", "--actions", "{root}/actions.npy", "--out", "{root}/o/q.json",
         "--quantizer", "unifrom"],
        ["unknown quantizer 'unifrom'", "Did you mean 'uniform'", "Valid quantizer names"]),
    Row("unknown-expert",
        ["rollout", "--tokenizer", "{root}/tok16.json", "--env", ENV, "--expert", "lqx",
         "--out", "{root}/o/expert"],
        ["unknown expert 'lqx'", "Did you mean 'lqr'"]),
    Row("unknown-policy",
        ["train", "--dataset", "qbc/lin-v0", "--policy", "ar-transfomer", "--out",
         "{root}/o/policy"],
        ["unknown policy 'ar-transfomer'", "Did you mean 'ar-transformer'"]),
    Row("unknown-command", ["trian"], ["unknown command 'trian'", "Did you mean 'train'"]),
    Row("dataset-not-found",
        ["train", "--dataset", "qbc/lin-v9", "--out", "{root}/o/nf"],
        ["no Minari dataset 'qbc/lin-v9'", "qbc/lin-v0", "qbc collect"]),
    Row("malformed-dataset-id",
        ["collect", "--env", ENV, "--dataset", "lin data"],
        ["malformed dataset id 'lin data'", "name-v0"]),
    Row("dataset-does-not-fit-env",
        ["certify", "--dataset", "qbc/lin-v0", "--env", OTHER_ENV, "--out", "{root}/o/cert"],
        ["do not fit this env", "actions are (2,) but the action space is (1,)"]),
    Row("policy-does-not-fit-env",
        ["rollout", "--policy", "{root}/run", "--env", OTHER_ENV, "--out", "{root}/o/pe"],
        ["actions of shape (1,)", "gives 2-dimensional actions",
         "--env the policy was trained on"]),
    Row("nonfinite-dataset-refused",
        ["data", "--dataset", "qbc/nan-v0"],
        ["2 steps with NaN/inf", "1 episodes", "episode ids 1", "--drop-nonfinite"]),
    Row("nonfinite-dataset-dropped",
        ["data", "--dataset", "qbc/nan-v0", "--drop-nonfinite"],
        ["warning: dropped 2 steps with NaN/inf", "episode ids 1", "2 episodes remain"], rc=0),
    Row("nonfinite-actions-file",
        ["tokenize", "--actions", "{root}/actions_nan.npy", "--out", "{root}/o/n.json"],
        ["actions_nan.npy' hold 2 non-finite values", "rows (first rows: [3, 7])"]),
    Row("actions-outside-tokenizer-range",
        ["rollout", "--tokenizer", "{root}/narrow_tok.json", "--env", ENV, "--episodes", "2",
         "--num-envs", "2", "--horizons", "5", "--out", "{root}/o/clip"],
        ["warning: quantized_expert:", "expert action values", "clipped to its edge cells"],
        rc=0),
    Row("bins-below-2",
        ["tokenize", "--actions", "{root}/actions.npy", "--out", "{root}/o/b.json",
         "--bins", "1"],
        ["n_bins must be an integer >= 2, got 1"]),
    Row("episodes-zero",
        ["collect", "--env", ENV, "--dataset", "qbc/y-v0", "--episodes", "0"],
        ["--episodes must be an integer >= 1, got 0"]),
    Row("negative-learning-rate",
        ["train", "--dataset", "qbc/lin-v0", "--lr", "-1", "--out", "{root}/o/lr"],
        ["--lr must be positive, got -1"]),
    Row("unknown-obs-encoder-setting",
        ["train", "--dataset", "qbc/lin-v0", "--obs-encoder", "qrp:k=8,bit=2", "--out",
         "{root}/o/enc"],
        ["observation encoder setting 'bit=2'", "is not one of k=..., bits=..."]),
    Row("unknown-transition-head",
        ["train", "--dataset", "qbc/lin-v0", "--augment", "model", "--transition-head", "flow",
         "--out", "{root}/o/head"],
        ["--transition-head must be 'gaussian' or 'tokens', got 'flow'"]),
    Row("unknown-select-by",
        ["train", "--dataset", "qbc/lin-v0", "--select-by", "return", "--out", "{root}/o/sel"],
        ["--select-by must be one of action-mse, val-loss, rollout, got 'return'"]),
    Row("negative-patience",
        ["train", "--dataset", "qbc/lin-v0", "--patience", "-1", "--out", "{root}/o/pat"],
        ["--patience must be an integer >= 0, got -1"]),
    Row("bad-horizons",
        ["rollout", "--tokenizer", "{root}/tok16.json", "--env", ENV, "--horizons", "0,10",
         "--out", "{root}/o/h"],
        ["--horizons must be positive integers"]),
    Row("not-an-actor",
        ["rollout", "--policy", "os:sep", "--env", ENV, "--out", "{root}/o/na"],
        ["--policy 'os:sep' is not an actor", "act(obs (N, obs_dim))"]),
    Row("not-a-number",
        ["tokenize", "--actions", "{root}/actions.npy", "--bins", "many"],
        ["Error parsing --bins", "'many'", "'qbc tokenize --help' lists the flags"]),
    Row("unknown-flag",
        ["tokenize", "--actions", "{root}/actions.npy", "--bnis", "8"],
        ["Unrecognized options: --bnis", "perhaps you meant --bins"]),
    Row("truncated-checkpoint",
        ["rollout", "--policy", "{root}/run_truncated", "--out", "{root}/o/tc"],
        ["model.safetensors", "is damaged", "re-create it"]),
    Row("truncated-tokenizer-json",
        ["rollout", "--tokenizer", "{root}/truncated_tok.json", "--env", ENV, "--out",
         "{root}/o/tt"],
        ["tokenizer file", "truncated or not valid JSON"]),
    Row("corrupted-dataset-file",
        ["data", "--dataset", "qbc/broken-v0"],
        ["Minari dataset 'qbc/broken-v0'", "cannot be read", "collect it again"]),
    Row("dataset-metadata-not-an-object",
        ["data", "--dataset", "qbc/metalist-v0"],
        ["Minari dataset 'qbc/metalist-v0'", "cannot be read", "AttributeError"]),
    Row("tokenizer-does-not-match-policy",
        ["rollout", "--policy", "{root}/run_wrong_tok", "--out", "{root}/o/wt"],
        ["do not belong together", "tokenizer.json has 2 tokens of vocabulary 16",
         "vocabulary 8"]),
    Row("existing-output-directory",
        ["rollout", "--tokenizer", "{root}/tok16.json", "--env", ENV, "--episodes", "2",
         "--horizons", "5", "--out", "{root}/existing"],
        ["output folder", "exists and is not empty; pass --overwrite"]),
    Row("existing-run-directory",
        ["train", "--dataset", "qbc/lin-v0", "--out", "{root}/run", "--steps", "2"],
        ["run directory", "is not empty; pass --overwrite", "--resume"]),
    Row("resume-with-other-settings",
        ["train", "--dataset", "qbc/lin-v0", "--out", "{root}/run", "--bins", "16", "--resume",
         "--steps", "6", "--batch-size", "16", "--eval-interval", "2", "--warmup-steps", "1",
         "--rollout-episodes", "0", "--no-progress", *TINY_MODEL_FLAGS],
        ["--resume with settings that differ from the run in progress (bins: 8 -> 16)"]),
    Row("existing-dataset",
        ["collect", "--env", ENV, "--dataset", "qbc/lin-v0", "--episodes", "1"],
        ["Minari dataset 'qbc/lin-v0' already exists", "--overwrite"]),
    Row("unwritable-output",  # a folder that cannot be made: its parent is a file
        ["tokenize", "--actions", "{root}/actions.npy", "--out", "{root}/actions.npy/t.json"],
        ["Error", "actions.npy", "check the paths and their permissions"]),
    Row("sweep-unknown-key",
        ["sweep", "--config", "{root}/bad_sweep.toml", "--out", "{root}/o/sweep"],
        ["quantizer", "quantizers"]),
    Row("setting-ignored",  # issue 34: token flags of a continuous policy were ignored
        ["train", "--dataset", "qbc/lin-v0", "--policy", "mlp-mse", "--range-margin", "0.5",
         "--out", "{root}/o/si"],
        ["--range-margin sets the action tokens", "--policy mlp-mse", "would ignore"]),
    Row("quantile-ignored",  # issue 34: --quantile with a quantizer without a range
        ["tokenize", "--actions", "{root}/actions.npy", "--out", "{root}/o/qi.json",
         "--quantizer", "kmeans", "--quantile", "0.01"],
        ["--quantile fits the range", "'kmeans' would ignore it"]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory, cli, tiny_lin_copy):
    root = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        ws = _build(root, tiny_lin_copy)
    done = {row.id: cli([a.format(root=ws.root) for a in row.argv], cwd=ws.root,
                        env={"MINARI_DATASETS_PATH": str(ws.minari)}, python_warnings="default")
            for row in ROWS}
    return ws, done


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_cli_row(results, row):
    ws, done = results
    proc = done[row.id]
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode == row.rc, (proc.returncode, err[-2000:])
    if row.rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith(("qbc ", "qbc:")), lines[0]
        assert "error:" in lines[0]
    for text in row.expect:
        assert text in err, (text, err)


def test_table_in_docs_lists_every_row():
    """docs/errors.md and this file describe the same cases."""
    doc = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    for row in ROWS:
        assert f"`{row.id}`" in doc, row.id


def test_clipped_actions_are_counted_in_the_rollout_metrics(results):
    ws, done = results
    assert done["actions-outside-tokenizer-range"].returncode == 0
    metrics = json.loads((ws.root / "o" / "clip" / "metrics.json").read_text())
    counts = metrics["clipped_actions"]["quantized_expert"]
    assert counts["values"] == 2 * 5 * 2  # episodes x steps x action dims
    assert 0 < counts["clipped"] <= counts["values"]


def test_failed_commands_leave_no_output_behind(results):
    """A refused command creates no output directory (checks run before anything is made)."""
    ws, _ = results
    for name in ("expert", "pe", "tc", "tt", "wt", "h", "q.json", "b.json", "n.json"):
        assert not (ws.root / "o" / name).exists(), name
    assert (ws.root / "existing" / "keep.txt").read_text() == "an earlier result\n"


def test_console_script_and_module_agree(results):
    """The installed `qbc` script gives the same one-line error as `python -m qbc.cli`."""
    import shutil

    ws, done = results
    # the script installed beside this interpreter (another qbc may come first on PATH)
    beside = Path(sys.executable).with_name("qbc")
    script = str(beside) if beside.is_file() else shutil.which("qbc")
    if script is None:
        pytest.skip("the qbc console script is not on PATH")
    proc = subprocess.run([script, "trian"], capture_output=True, text=True, env=ws.env(),
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == done["unknown-command"].stderr


# -- the same cases in Python: typed exceptions ----------------------------------------------------
def test_python_unknown_names_are_typed_with_suggestions():
    from qbc.agents import make_expert
    from qbc.envs.make import make_env
    from qbc.policy import build_policy
    from qbc.policy.registry import ModelConfig
    from qbc.quantizers import make_quantizer

    cases = [(lambda: make_env("qbc/LinearUnstabel-v0"), "qbc/LinearUnstable-v0"),
             (lambda: make_quantizer("unifrom"), "uniform"),
             (lambda: make_expert("lqx", ENV), "lqr"),
             (lambda: build_policy("ar-transfomer", ModelConfig(), 2, 2), "ar-transformer")]
    for make, close in cases:
        with pytest.raises(UnknownNameError, match=f"Did you mean '{close}'"):
            make()


def test_python_dataset_errors_are_typed(tmp_path):
    import gymnasium as gym

    from qbc.data import (
        DatasetNotFoundError,
        check_compatible,
        load_demonstrations,
        write_dataset,
    )

    write_dataset("qbc/nan-v0", _nan_episodes(), env=ENV)
    with pytest.raises(DatasetNotFoundError, match="qbc/nan-v0"):
        load_demonstrations("qbc/nan-v1")
    with pytest.raises(InvalidValueError, match=r"episode ids 1\b"):
        load_demonstrations("qbc/nan-v0")
    with pytest.warns(UserWarning, match="dropped 2 steps"):
        demos = load_demonstrations("qbc/nan-v0", drop_nonfinite=True)
    assert demos.n_episodes == 2 and demos.metadata["dropped_nonfinite_episodes"] == [1]
    other = gym.make(OTHER_ENV)
    with pytest.raises(InvalidValueError, match="do not fit this env"):
        check_compatible(demos, other.observation_space, other.action_space)


def test_python_tokenizer_errors_and_clipping_warning(tmp_path):
    from qbc.tokenizer import ActionTokenizer

    acts = np.random.default_rng(0).uniform(-1, 1, size=(200, 2)).astype(np.float32)
    with pytest.raises(InvalidValueError, match="n_bins must be an integer >= 2"):
        ActionTokenizer.fit(acts, n_bins=1)
    tok = ActionTokenizer.fit(acts, n_bins=8)
    with pytest.raises(InvalidValueError, match="fitted on 2; use a tokenizer"):
        tok.encode(acts[:, :1].repeat(3, axis=1))
    wide = acts * 2  # about half the values fall outside [-1, 1]
    expected = int(tok.clipped_mask(wide).sum())
    with pytest.warns(ClippedActionsWarning, match=f"^{expected} of 400 action values"):
        assert tok.warn_clipped(wide) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tok.warn_clipped(acts) == 0  # inside the range: silent
    path = tmp_path / "tok.json"
    tok.save(path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        tok.save(path, overwrite=False)
    path.write_text(path.read_text()[:50])
    with pytest.raises(CorruptFileError, match="truncated or not valid JSON"):
        ActionTokenizer.load(path)


def test_python_checkpoint_errors_are_typed(tmp_path):
    import shutil

    from qbc.policy import load_policy
    from qbc.policy.registry import ModelConfig
    from qbc.tokenizer import ActionTokenizer
    from qbc.training import TrainConfig, train

    rng = np.random.default_rng(0)

    class Demos:
        observations = rng.normal(size=(120, 2)).astype(np.float32)
        actions = rng.normal(size=(120, 2)).astype(np.float32)
        episode_ids = np.repeat(np.arange(6), 20)
        env_id = ENV

        def __len__(self):
            return 120

    cfg = TrainConfig(dataset="x", out=tmp_path / "run", bins=8, steps=2, batch_size=8,
                      eval_interval=2, warmup_steps=0, progress=False, rollout_episodes=0,
                      val_fraction=0.0, model=ModelConfig(**TINY_MODEL))
    train(cfg, Demos())
    best = tmp_path / "run" / "best"
    shutil.copytree(best, tmp_path / "wrong")
    ActionTokenizer.fit(Demos.actions, n_bins=16).save(tmp_path / "wrong" / "tokenizer.json")
    with pytest.raises(CorruptFileError, match="do not belong together"):
        load_policy(tmp_path / "wrong")
    weights = best / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    with pytest.raises(CorruptFileError, match="is damaged"):
        load_policy(best)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        train(cfg, Demos())


def test_a_normalizer_number_beyond_float_range_is_a_damaged_file():
    """JSON allows integers of any size: 10**400 as a mean is refused as a damaged file, not an
    OverflowError (found by test_fuzz_loaders)."""
    from qbc.policy.wrapper import Normalizer

    with pytest.raises(CorruptFileError, match="normalizer is incomplete or damaged"):
        Normalizer.from_dict({"obs_mean": 10 ** 400, "obs_std": [1.0], "act_mean": [0.0],
                              "act_std": [1.0]})


def test_every_qbc_error_is_a_typed_subclass():
    """The CLI catches QbcError; each family is also the matching builtin for Python callers."""
    assert issubclass(UnknownNameError, KeyError) and issubclass(UnknownNameError, QbcError)
    assert issubclass(InvalidValueError, ValueError) and issubclass(CorruptFileError, ValueError)
    assert issubclass(OutputExistsError, FileExistsError)
    assert all(c.exit_code == 2 for c in (UnknownNameError, InvalidValueError, CorruptFileError,
                                          OutputExistsError))


# -- fuzzing: any shape, dtype, NaN, inf or huge value gives tokens or a documented error ------
# (tests/quantizers/test_quantizers.py and tests/tokenizer/test_tokenizer.py fuzz finite/NaN/inf
# float values of fixed shapes; these add shapes, dtypes, huge values, decoding and damaged saved
# states.)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import array_shapes, arrays  # noqa: E402

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_,
          np.complex64]
any_array = arrays(dtype=st.sampled_from(DTYPES),
                   shape=array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _quantizer_params(name):
    return {} if name in ("sign", "lloyd_max") else {"n_bins": 4}


def _check_tokens(q, x, tokens):
    tokens = np.asarray(tokens)
    assert tokens.dtype == np.int64
    assert tokens.shape == (x.shape[:1] if q.joint else x.shape)
    assert np.all((tokens >= 0) & (tokens < q.n_levels))
    out = q.decode(tokens)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))


@pytest.mark.slow
@FUZZ
@given(x=any_array, name=st.sampled_from(["uniform", "smooth", "kmeans", "lloyd_max", "sign",
                                          "vq"]))
def test_fuzz_quantizers_any_array(x, name):
    from qbc.quantizers import make_quantizer

    clean = make_quantizer(name, **_quantizer_params(name)).fit(
        np.random.default_rng(0).normal(size=(40, 2) if name == "vq" else 40))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for q in (clean, make_quantizer(name, **_quantizer_params(name))):
            try:
                if q is not clean:
                    q.fit(x)
                tokens = q.encode(x)
            except QbcError:
                continue  # a documented, typed error
            _check_tokens(q, np.asarray(x), tokens)


@FUZZ
@given(a=any_array, name=st.sampled_from(["uniform", "smooth", "kmeans", "vq"]))
def test_fuzz_tokenizer_any_array(a, name):
    from qbc.tokenizer import ActionTokenizer

    clean = ActionTokenizer.fit(np.random.default_rng(0).normal(size=(40, 2)), quantizer=name,
                                n_bins=4)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for tok in (clean, None):
            try:
                tok = tok or ActionTokenizer.fit(a, quantizer=name, n_bins=4)
                tokens = tok.encode(a)
                n_clipped = tok.warn_clipped(a)
                rep = tok.report(a)
            except QbcError:
                continue
            arr = np.asarray(a)
            rows = arr.shape[0] if arr.ndim == 2 else arr.size
            assert tokens.shape == (rows, tok.n_tokens)
            assert np.all((tokens >= 0) & (tokens < tok.vocab_size))
            assert np.all(np.isfinite(tok.decode(tokens)))
            assert 0 <= n_clipped <= arr.size
            json.dumps(rep, allow_nan=False)  # reports stay JSON-safe


@FUZZ
@given(tokens=arrays(dtype=st.sampled_from([np.int64, np.int32, np.uint64, np.float64,
                                            np.bool_]),
                     shape=array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_fuzz_tokenizer_decode(tokens):
    from qbc.tokenizer import ActionTokenizer

    tok = ActionTokenizer.fit(np.random.default_rng(0).normal(size=(40, 2)), n_bins=4)
    try:
        out = tok.decode(tokens)
    except QbcError:
        return
    assert out.shape == (tokens.shape[0], 2) and out.dtype == np.float32


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(["uniform", "smooth", "kmeans", "lloyd_max", "vq"]),
       path_seed=st.integers(0, 10**6), value=json_values, drop=st.booleans())
def test_fuzz_damaged_tokenizer_state(name, path_seed, value, drop):
    """A tokenizer JSON with one entry replaced or removed loads as a working tokenizer or
    raises CorruptFileError, nothing else."""
    from qbc.tokenizer import ActionTokenizer

    acts = np.random.default_rng(0).normal(size=(40, 2))
    state = json.loads(json.dumps(ActionTokenizer.fit(acts, quantizer=name, n_bins=4)
                                  .state_dict()))
    rng = np.random.default_rng(path_seed)
    node, key = state, None
    while True:  # walk to a random entry
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = keys[rng.integers(len(keys))]
        if isinstance(node[key], (dict, list)) and node[key] and rng.random() < 0.6:
            node = node[key]
            continue
        break
    if key is not None:
        if drop and isinstance(node, dict):
            del node[key]
        else:
            node[key] = value
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            tok = ActionTokenizer.from_state_dict(state)
            tok.decode(tok.encode(acts))
        except CorruptFileError:
            pass
        except QbcError:
            pass  # the damage surfaced when the tokenizer was used: still a typed error
