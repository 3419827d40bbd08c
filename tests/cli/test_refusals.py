"""A refused command changes nothing; --overwrite never loses the old result; one writer per
output; damaged files are refused; every exception ends in one line (issue 19).

The refusals run the real CLI against one workspace whose whole tree (paths, sizes, mtimes) is
compared before and after: in this process through ``qbc.cli.main`` (stdout, stderr and the exit
code as a fresh ``python -m qbc.cli`` would give them), except the two refused because another
process holds a lock, which run as ``python -m qbc.cli`` subprocesses. The other mechanisms are
checked in-process too (monkeypatched failures).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_MODEL, TINY_MODEL_FLAGS

from qbc.errors import CorruptFileError, InvalidValueError, NonFiniteObservationError

ENV = "qbc/LinearUnstable-v0"
TRAIN = ["train", "--dataset", "qbc/lin-v0", "--steps", "4", "--batch-size", "16",
         "--eval-interval", "2", "--warmup-steps", "1", "--rollout-episodes", "0",
         "--no-progress", *TINY_MODEL_FLAGS]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (hidden ones too) -> (mtime_ns, size); folders included, so a
    created, deleted or rewritten file or folder changes the snapshot."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return out


def changes(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _tiny_cfg(out: Path, **kw):
    from qbc.policy import ModelConfig
    from qbc.training import TrainConfig

    return TrainConfig(dataset="qbc/lin-v0", out=out, bins=8, steps=4, batch_size=16,
                       eval_interval=2, warmup_steps=1, progress=False, rollout_episodes=0,
                       model=ModelConfig(**TINY_MODEL), **kw)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_lin_copy):
    """A dataset qbc/lin-v0 and a run trained on it as _tiny_cfg trains (conftest's
    tiny_lin_run, copied) in a fresh workspace."""
    root = tmp_path_factory.mktemp("refusals")
    tiny_lin_copy(root)
    np.save(root / "acts.npy", np.linspace(-1, 1, 40, dtype=np.float32).reshape(20, 2))
    (root / "tok.json").write_text("{}\n")  # an existing output file
    (root / "huge.toml").write_text('[grid]\nenvs = ["qbc/LinearUnstable-v0"]\n'
                                    'horizons = [1000000000000000]\n')
    (root / "lr_inf.toml").write_text('[grid]\nenvs = ["qbc/LinearUnstable-v0"]\n'
                                      '[train]\nlr = inf\n')
    (root / "cut").mkdir()
    (root / "cut" / "results.csv").write_text("cell,policy,H,regret\na,p,10,1.2")  # cut
    (root / "old").mkdir()
    (root / "old" / "results.csv").write_text("an older result\n")  # an existing output folder
    return root


# -- refusals through the CLI: one line, exit 2, nothing changed -------------------------------
RUN = ["--out", "{root}/run", "--overwrite"]
ROLLOUT = ["rollout", "--policy", "{root}/run", "--out", "{root}/ro", "--episodes", "2",
           "--horizons", "5"]
CASES = {
    "lr-inf": ([*TRAIN, *RUN, "--lr", "inf"], "--lr must be positive, got inf"),
    "grad-clip-nan": ([*TRAIN, *RUN, "--grad-clip", "nan"], "--grad-clip must be"),
    "weight-decay-nan": ([*TRAIN, *RUN, "--weight-decay", "nan"], "--weight-decay must be"),
    "min-lr-ratio": ([*TRAIN, *RUN, "--min-lr-ratio", "-5"], "--min-lr-ratio must be"),
    "seed-negative": ([*TRAIN, *RUN, "--seed", "-1"], "--seed must be an integer in [0, "),
    "d-model-0": ([*TRAIN, *RUN, "--model.d-model", "0"], "--model.d-model must be"),
    "dropout-5": ([*TRAIN, *RUN, "--model.dropout", "5"], "--model.dropout must be"),
    "n-heads-3": ([*TRAIN, *RUN, "--model.n-heads", "3"], "divisible by --model.n-heads (3)"),
    "device-meta": ([*TRAIN, *RUN, "--device", "meta"], "--device 'meta'"),
    "quantile-0.7": ([*TRAIN, *RUN, "--quantile", "0.7"], "--quantile must be"),
    "range-margin-negative": ([*TRAIN, *RUN, "--range-margin", "-1"], "--range-margin must be"),
    "bins-1e9": ([*TRAIN, *RUN, "--bins", "1000000000"], "of memory, more than"),
    "new-out-refused": ([*TRAIN, "--out", "{root}/fresh", "--lr", "-1"], "--lr must be"),
    "divergence-nan": ([*ROLLOUT, "--divergence-threshold", "nan"],
                       "--divergence-threshold must be positive, got nan"),
    "divergence-negative": ([*ROLLOUT, "--divergence-threshold", "-1"],
                            "--divergence-threshold must be positive"),
    "rollout-seed": ([*ROLLOUT, "--seed", "-1"], "--seed must be an integer"),
    "horizons-huge": ([*ROLLOUT, "--horizons", "1000000000000000"], "of memory, more than"),
    "certify-k": (["certify", "--dataset", "qbc/lin-v0", "--out", "{root}/cert", "--k", "-1"],
                  "--k must be positive"),
    "collect-seed": (["collect", "--env", ENV, "--dataset", "qbc/new-v0", "--episodes", "2",
                      "--seed", "200000000000000000000"], "--seed must be an integer"),
    "expert-params": (["collect", "--env", ENV, "--dataset", "qbc/new-v0", "--episodes", "2",
                       "--expert", "linear", "--expert-params", '{"gain_scale": "x"}'],
                      "parameter 'gain_scale' of expert 'linear' must be"),
    # the other commands that write outputs (one bad input each; --overwrite of a folder or file)
    "tokenize": (["tokenize", "--actions", "{root}/acts.npy", "--out", "{root}/tok.json",
                  "--overwrite", "--quantile", "0.7"], "--quantile must be"),
    "tokenize-new-folder": (["tokenize", "--actions", "{root}/acts.npy", "--out",
                             "{root}/new/sub/t.json", "--quantizer", "unifrom"],
                            "unknown quantizer 'unifrom'"),
    "tokenize-exists": (["tokenize", "--actions", "{root}/acts.npy", "--out", "{root}/tok.json"],
                        "exists; pass --overwrite"),
    "ste-recover": (["ste", "recover", "--out", "{root}/old", "--overwrite", "--ratios", "nan"],
                    "--ratios must be a finite number, got nan"),
    "ste-recurrence": (["ste", "recurrence", "--out", "{root}/old", "--overwrite", "--seed",
                        "-1"], "--seed must be an integer in [0, "),
    "ste-benchmark": (["ste", "benchmark", "--out", "{root}/old", "--overwrite", "--seeds",
                       "-1"], "--seeds must be an integer in [0, "),
    "compressive": (["compressive", "run", "--out", "{root}/old", "--overwrite",
                     "--test-fraction", "inf"], "--test-fraction must be"),
    "compressive-exists": (["compressive", "run", "--out", "{root}/old", "--seeds", "1"],
                           "exists and is not empty"),
    "quickstart": (["quickstart", "--out", "{root}/qs", "--threads", "-1"], "--threads must be"),
    "quickstart-exists": (["quickstart", "--out", "{root}/old", "--tiny"],
                          "exists and is not empty"),
    "dagger": (["dagger", "--env", ENV, "--out", "{root}/old", "--overwrite", "--beta-value",
                "nan"], "--beta-value must be"),
    "tokenize-bins-memory": (["tokenize", "--actions", "{root}/acts.npy", "--out",
                              "{root}/tok.json", "--overwrite", "--bins", "1000000000"],
                             "of memory, more than"),
    "tokenize-not-npy": (["tokenize", "--actions", "{root}/tok.json", "--out", "{root}/t.json"],
                         "is not a .npy file"),
    "ste-memory": (["ste", "recover", "--out", "{root}/old", "--overwrite", "--n", "100000",
                    "--ratios", "64"], "of memory, more than"),
    "sweep-memory": (["sweep", "--config", "{root}/huge.toml", "--out", "{root}/sw"],
                     "of memory, more than"),
    "sweep-report": (["sweep", "report", "{root}/nosweep"], "is missing or empty"),
    # found by the independent harness (issue 19): integers past 64 bits, sizes past memory
    "d-model-beyond-64-bits": ([*TRAIN, *RUN, "--model.d-model", "100000000000000000000"],
                               "--model.d-model must be an integer that fits in 64 bits"),
    "closing-rollout-memory": ([*TRAIN, "--out", "{root}/fresh", "--rollout-episodes",
                                "1000000000000000"], "of memory, more than"),
    "closing-rollout-seeds": ([*TRAIN, "--out", "{root}/fresh", "--rollout-episodes", "10",
                               "--rollout-seed", "4294967290"], "pass 2^32"),
    "chunked-seed": (["train-chunked", "--dataset", "qbc/lin-v0", "--out", "{root}/fresh",
                      "--seed", "-1"], "--seed must be an integer in [0, "),
    "chunked-grad-clip": (["train-chunked", "--dataset", "qbc/lin-v0", "--out", "{root}/fresh",
                           "--grad-clip", "nan"], "--grad-clip must be"),
    "collect-horizon-memory": (["collect", "--env", ENV, "--dataset", "qbc/new-v0", "--episodes",
                                "2", "--max-episode-steps", "100000000000000"],
                               "of memory, more than"),
    "sign-bins-train": ([*TRAIN, *RUN, "--quantizer", "sign", "--bins", "16"],
                        "--bins 16: quantizer 'sign' has a fixed number of levels"),
    "sign-bins-tokenize": (["tokenize", "--actions", "{root}/acts.npy", "--out", "{root}/s.json",
                            "--quantizer", "sign", "--bins", "8"], "would ignore it"),
    "dagger-dataset-base": (["dagger", "--env", ENV, "--out", "{root}/db", "--dataset-base",
                             "bad base"], "--dataset-base 'bad base' cannot begin a Minari"),
    "dagger-eval-memory": (["dagger", "--env", ENV, "--out", "{root}/old", "--overwrite",
                            "--rounds", "1", "--episodes-per-round", "2", "--max-episode-steps",
                            "10", "--steps", "4", *TINY_MODEL_FLAGS, "--eval-seed", "100",
                            "--eval-episodes", "100000000000000"], "of memory, more than"),
    "certify-bins-memory": (["certify", "--dataset", "qbc/lin-v0", "--out", "{root}/cert",
                             "--bins", "1000000000"], "of memory, more than"),
    "bench-seed": (["bench", "--quick", "--json", "{root}/b.json", "--seed", "-1"],
                   "--seed must be an integer in [0, "),
    "expert-train-seed": (["expert", "train", "--env", ENV, "--out", "{root}/ex.zip",
                           "--seed", "-1"], "--seed must be an integer in [0, "),
    "expert-train-lr": (["expert", "train", "--env", ENV, "--out", "{root}/ex.zip",
                         "--learning-rate", "nan"], "--learning-rate must be positive"),
    "expert-train-env": (["expert", "train", "--env", "nope", "--out", "{root}/ex.zip"],
                         "unknown env id 'nope'"),
    # issue 34: the user's own code, envs that need arguments, sweep cells, damaged tables
    "user-actor-needs-arguments": (["rollout", "--policy", "json:JSONDecoder.decode", "--env",
                                    ENV, "--out", "{root}/ua"], "no arguments"),
    "user-actor-import-fails": (["rollout", "--policy", "qbc_no_such_module:Actor", "--env",
                                 ENV, "--out", "{root}/old", "--overwrite"], "cannot import"),
    "collect-env-needs-arguments": (["collect", "--env", "qbc/LinearSystem-v0", "--dataset",
                                     "qbc/ls-v0"], "cannot be made"),
    "sweep-lr-inf": (["sweep", "--config", "{root}/lr_inf.toml", "--out", "{root}/sw2"],
                     "[train] lr must be a finite number, got inf"),
    "sweep-report-cut-table": (["sweep", "report", "{root}/cut"], "cut mid-row"),
    "expert-export-missing-zip": (["expert", "export", "--expert-path", "{root}/none.zip",
                                   "--env", ENV, "--out", "{root}/old", "--overwrite"],
                                  "none.zip"),
    # issue 34, round three: settings the run would ignore
    "mlp-range-margin": ([*TRAIN, *RUN, "--policy", "mlp-mse", "--range-margin", "0.5"],
                         "would ignore"),
    "kmeans-quantile": ([*TRAIN, *RUN, "--quantizer", "kmeans", "--quantile", "0.01"],
                        "'kmeans' would ignore it"),
    "chunked-mlp-tokenizer": (["train-chunked", "--dataset", "qbc/lin-v0", "--out",
                               "{root}/fresh", "--policy", "chunk-mlp-l1", "--chunk-tokenizer",
                               "fast"], "would ignore"),
    "run-locked": ([*TRAIN, "--out", "{root}/run", "--overwrite"], "pid {pid}"),
    "dataset-locked": (["collect", "--env", ENV, "--dataset", "qbc/held-v0", "--episodes",
                        "2"], "pid {pid}"),
}


# Refused because another process holds a lock: these run as their own processes (in this one,
# a lock it holds is re-entrant), at the same time as the rest.
CROSS_PROCESS = ("run-locked", "dataset-locked")


@pytest.fixture(scope="module")
def refusals(ws, cli):
    """Run every case while this process holds the locks of the run folder and of qbc/held-v0:
    the cases refused by a lock in subprocesses, the others in this process through
    ``qbc.cli.main`` (meanwhile, one after the other); the workspace snapshot is taken inside
    the locks."""
    from qbc.data import dataset_lock
    from qbc.infra.run_folder import exclusive, lock_path_for

    env = {"MINARI_DATASETS_PATH": str(ws / "minari")}

    def argv(case):
        return [a.replace("{root}", str(ws)) for a in CASES[case][0]]

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(ws / "minari")
    try:
        with ExitStack() as held:
            held.enter_context(exclusive(lock_path_for(ws / "run"), "test"))
            held.enter_context(dataset_lock("qbc/held-v0"))
            before = snapshot(ws)
            procs = {case: subprocess.Popen([sys.executable, "-m", "qbc.cli", *argv(case)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True, env={**os.environ, **env}, cwd=ws)
                     for case in CROSS_PROCESS}
            results = {case: cli(argv(case), cwd=ws, env=env)
                       for case in CASES if case not in CROSS_PROCESS}
            for case, proc in procs.items():
                stdout, stderr = proc.communicate(timeout=300)
                results[case] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout,
                                                            stderr)
            after = snapshot(ws)
    finally:
        os.environ.pop("MINARI_DATASETS_PATH") if old is None else os.environ.update(
            MINARI_DATASETS_PATH=old)
    return results, changes(before, after)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.slow
def test_refused_in_one_line(refusals, case):
    proc = refusals[0][case]
    expect = CASES[case][1].format(pid=os.getpid())
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expect in lines[0], lines[0]
    assert proc.stdout == ""  # refused before any work (a rollout prints its coupling first)


def test_refusals_change_nothing(refusals):
    assert refusals[1] == []


# -- --overwrite: the old result survives any failure ------------------------------------------
def test_overwrite_failing_midway_keeps_the_old_run(ws, tmp_path, monkeypatch):
    import qbc.training.loop as qt
    from qbc.data import load_demonstrations

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ws / "minari"))
    shutil.copytree(ws / "run", tmp_path / "run")
    before = snapshot(tmp_path)
    calls = []

    def failing_eval(*args, **kw):  # the second evaluation fails: a checkpoint exists by then
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return real_eval(*args, **kw)

    real_eval = qt.evaluate_split
    monkeypatch.setattr(qt, "evaluate_split", failing_eval)
    with pytest.raises(RuntimeError, match="injected"):
        qt.train(_tiny_cfg(tmp_path / "run", overwrite=True, seed=3),
                 load_demonstrations("qbc/lin-v0"))
    assert len(calls) == 2
    assert changes(before, snapshot(tmp_path)) == []  # no staging folder, old run as it was


def test_overwrite_replaces_the_run_at_the_end(ws, tmp_path, monkeypatch):
    from qbc.data import load_demonstrations
    from qbc.training import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ws / "minari"))
    shutil.copytree(ws / "run", tmp_path / "run")
    (tmp_path / "run" / "notes.txt").write_text("mine\n")
    old = json.loads((tmp_path / "run" / "train_config.json").read_text())
    train(_tiny_cfg(tmp_path / "run", overwrite=True, seed=3), load_demonstrations("qbc/lin-v0"))
    new = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (old["seed"], new["seed"]) == (0, 3)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine\n"  # not ours: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["minari", "run"]  # nothing left over


# -- integrity ---------------------------------------------------------------------------------
def test_damaged_checkpoint_parts_are_refused(ws, tmp_path):
    from qbc.policy import load_policy

    run = shutil.copytree(ws / "run" / "best", tmp_path / "flip")
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    (run / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="sha256"):
        load_policy(run)

    run = shutil.copytree(ws / "run" / "best", tmp_path / "range")
    tok = json.loads((run / "tokenizer.json").read_text())
    fitted = tok["quantizers"][0]["fitted"]
    fitted["low_"], fitted["high_"] = fitted["high_"], fitted["low_"]
    (run / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(CorruptFileError, match="low < high"):
        load_policy(run)

    run = shutil.copytree(ws / "run" / "best", tmp_path / "std")
    norm = json.loads((run / "normalizer.json").read_text())
    norm["obs_std"][0] = 0.0
    (run / "normalizer.json").write_text(json.dumps(norm))
    with pytest.raises(CorruptFileError, match="standard deviation"):
        load_policy(run)


def test_resume_finds_the_run_by_its_folder_and_checks_the_data(ws, tmp_path, monkeypatch):
    from qbc.data import load_demonstrations
    from qbc.training import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ws / "minari"))
    monkeypatch.chdir(tmp_path)
    demos = load_demonstrations("qbc/lin-v0")
    train(_tiny_cfg(Path("r")), demos, stop_at=2)
    shutil.move("r", "moved")
    with pytest.raises(InvalidValueError, match="differ from those the run"):
        train(_tiny_cfg(tmp_path / "moved", resume=True), demos.select([0, 1, 2]))
    run_id = json.loads(Path("moved/train_config.json").read_text())["run_id"]
    result = train(_tiny_cfg(tmp_path / "moved", resume=True), demos)
    assert result.step == 4 and result.out == tmp_path / "moved"
    for rel in ("train_config.json", "last/config.json", "best/config.json"):  # one run id
        stored = json.loads(Path("moved", rel).read_text())
        assert stored.get("run_id", stored.get("train", {}).get("run_id")) == run_id, rel


def test_resume_refuses_a_folder_mixing_two_runs(ws, tmp_path, monkeypatch):
    """Two runs with the same settings and data differ only by their run id: a last/ copied
    from one into the other's folder is refused, and the folder is left as it was."""
    from qbc.data import load_demonstrations
    from qbc.training import train

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ws / "minari"))
    demos = load_demonstrations("qbc/lin-v0")
    for name in ("a", "b"):
        train(_tiny_cfg(tmp_path / name), demos, stop_at=2)
    shutil.rmtree(tmp_path / "a" / "last")
    shutil.copytree(tmp_path / "b" / "last", tmp_path / "a" / "last")
    before = snapshot(tmp_path)
    with pytest.raises(CorruptFileError, match="belong to different runs"):
        train(_tiny_cfg(tmp_path / "a", resume=True), demos)
    assert changes(before, snapshot(tmp_path)) == []


def test_every_spelling_of_a_folder_has_one_lock(tmp_path, monkeypatch):
    from qbc.infra.run_folder import lock_path_for

    (tmp_path / "r").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    spellings = ["r", "./r", str(tmp_path / "r"), "link", "r/../r"]
    assert {lock_path_for(p) for p in spellings} == {tmp_path / ".r.lock"}


def test_policy_refuses_nonfinite_observations(ws):
    from qbc.policy import load_policy

    policy = load_policy(ws / "run")
    obs = np.zeros((3, policy.obs_dim), dtype=np.float32)
    assert np.isfinite(policy.act(obs)).all()
    obs[1, 0] = np.nan
    with pytest.raises(NonFiniteObservationError, match=r"1 row\(s\) \(first: \[1\]\)"):
        policy.act(obs)


# -- the command boundary ----------------------------------------------------------------------
def _enospc(*args, **kw):
    raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")


def test_disk_full_while_training_is_one_line(ws, tmp_path, monkeypatch, capsys):
    import qbc.policy.loading as loading
    from qbc.cli import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(ws / "minari"))
    monkeypatch.setattr(loading, "save_file", _enospc)
    (tmp_path / "w").mkdir()
    rc = main([*TRAIN, "--out", str(tmp_path / "w" / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0, err
    assert "disk full while writing model.safetensors" in err
    assert list((tmp_path / "w").iterdir()) == []  # no run folder, staging or temporary file


def test_disk_full_while_collecting_leaves_no_staging(ws, tmp_path, monkeypatch, capsys):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    from qbc.cli import main

    (tmp_path / "m").mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "m"))
    monkeypatch.setattr(HDF5Storage, "update_episodes", _enospc)  # the episodes' HDF5 writes
    rc = main(["collect", "--env", ENV, "--dataset", "qbc/full-v0", "--episodes", "2",
               "--max-episode-steps", "5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "disk full while writing" in err and err.count("\n") == 0, err
    assert list((tmp_path / "m").iterdir()) == []


def test_a_bug_is_reported_with_a_log(ws, tmp_path, monkeypatch, capsys):
    import qbc.rollout.evaluate as rc_mod
    from qbc.cli import main

    def bug(*args, **kw):
        return 1 / 0

    monkeypatch.setattr(rc_mod, "horizon_metrics", bug)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    rc = main(["rollout", "--policy", str(ws / "run"), "--out", str(tmp_path / "o"),
               "--episodes", "2", "--horizons", "5"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 1 and "internal error, please report it with the log" in err
    log = Path(err.rsplit(" ", 1)[-1])
    assert log.is_file() and "ZeroDivisionError" in log.read_text()
    assert not (tmp_path / "o").exists()  # the output folder it made is gone again


def test_overwrite_removes_stale_owned_outputs_and_keeps_other_files(tmp_path):
    from qbc.infra.run_folder import output_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "curves").mkdir()
    (out / "summary.json").write_text("old")
    (out / "notes.txt").write_text("mine")
    with output_dir(out, True, "test", owned=("curves", "summary.json")) as work:
        assert work != out and (out / "curves").is_dir()  # the old run is untouched meanwhile
        (work / "summary.json").write_text("new")
    assert (out / "summary.json").read_text() == "new"
    assert not (out / "curves").exists()  # the old run's, not written by the new one
    assert (out / "notes.txt").read_text() == "mine"


def test_torch_allocator_failure_is_out_of_memory():
    from qbc.cli import describe_error

    exc = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                       "can't allocate memory: you tried to allocate 40960000000000 bytes.")
    message, code = describe_error(exc, "ste recover")
    assert code == 2 and message.startswith("out of memory"), message


def test_a_gymnasium_error_is_a_user_error():
    """An env id or setting Gymnasium refuses (raised where qbc did not check it first)."""
    from gymnasium.error import NameNotFound

    from qbc.cli import describe_error

    message, code = describe_error(NameNotFound("Environment `nope` doesn't exist."), "train")
    assert code == 2 and message.startswith("Gymnasium refused the env"), message


# -- library warnings: one line each -----------------------------------------------------------
def test_a_library_warning_is_one_line_once(tmp_path, cli):
    """scikit-learn's KMeans warns 'Number of distinct clusters (2|3) found smaller than
    n_clusters (4)' once per action dimension here (near-duplicate values); the user sees one
    line in qbc's format, and Python's warning format is as before afterwards."""
    import warnings

    actions = np.zeros((300, 2), dtype=np.float32)
    actions[150:, 0] = 1
    actions[100:200, 1], actions[200:, 1] = 1, 2
    actions[0], actions[1] = 1e-30, 2e-30
    np.save(tmp_path / "near.npy", actions)
    before = warnings.formatwarning
    proc = cli(["tokenize", "--actions", "near.npy", "--quantizer", "kmeans", "--bins", "4",
                "--out", "t.json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("qbc tokenize: warning: Number of distinct clusters"), lines[0]

    from qbc.cli import main

    main(["tokenize", "--actions", str(tmp_path / "near.npy"), "--out",
          str(tmp_path / "t2.json")])
    assert warnings.formatwarning is before
