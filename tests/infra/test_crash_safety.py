"""Crash safety and safe loading: atomic writes, file modes, SIGKILL + --resume, no pickle."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from in_process import run_cli
from repository import ROOT as REPO
from tiny import TINY_MODEL_FLAGS

from qbc.infra.files import atomic_write, atomic_write_json, atomic_write_text

ENV = "qbc/LinearUnstable-v0"


# -- atomic writes ---------------------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    folder = tmp_path / "out"
    path = atomic_write_text(folder / "report.json", "old\n")

    def half_then_fail(p: Path) -> None:
        p.write_text("new but cut")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in folder.iterdir()) == ["report.json"]


def test_final_files_get_normal_permissions(tmp_path):
    """mkstemp makes 0600 files; the final file gets 0666 minus the umask, like open()."""
    old = os.umask(0o022)
    try:
        a = atomic_write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        b = atomic_write_text(tmp_path / "b.txt", "private\n")
        os.umask(0o002)
        c = atomic_write_text(tmp_path / "c.txt", "group\n")
    finally:
        os.umask(old)
    assert (a.stat().st_mode & 0o777) == 0o644
    assert (b.stat().st_mode & 0o777) == 0o600
    assert (c.stat().st_mode & 0o777) == 0o664


_KILL_MID_WRITE = r"""
import os, sys, time
from qbc.infra.files import atomic_write, atomic_write_text
path = sys.argv[1]
atomic_write_text(path, "complete old content\n")
def slow(p):
    with open(p, "w") as f:
        f.write("partial new con")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
atomic_write(path, slow)
"""


def test_sigkill_in_the_middle_of_a_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "out" / "table.csv"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_MID_WRITE, str(target)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert target.read_text() == "complete old content\n"
    leftovers = [p.name for p in target.parent.iterdir() if p != target]
    assert len(leftovers) == 1 and re.fullmatch(r"\.table\.csv\..*\.tmp", leftovers[0])


# -- SIGKILL a training run, then --resume ---------------------------------------------------------
def _train_argv(out: Path, *extra: str) -> list[str]:
    """``qbc train`` arguments (without ``qbc``)."""
    return ["train", "--dataset", "qbc/lin-v0", "--out",
            str(out), "--steps", "160", "--eval-interval", "8", "--batch-size", "32",
            "--bins", "16", "--warmup-steps", "10", "--rollout-episodes", "0", "--no-progress",
            "--device", "cpu", *TINY_MODEL_FLAGS, *extra]


def _env(tmp_path: Path) -> dict[str, str]:
    # One thread in every process, so the killed, resumed and reference runs do the same
    # floating-point reductions.
    return {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _checkpoint_step(last: Path) -> int | None:
    """The step of the checkpoint in last/, or None while there is none (or while the folder is
    being swapped, when a read can miss it)."""
    try:
        return int(json.loads((last / "trainer_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return None


def _kill_after_a_checkpoint(proc: subprocess.Popen, last: Path, min_step: int) -> int:
    """Wait until last/ holds a checkpoint of step >= min_step, then SIGKILL the process at
    whatever it is doing (last/ is replaced as a whole, so any moment must be safe). Returns the
    step of the checkpoint found after the kill."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("the training run ended before it could be killed; raise --steps")
        step = _checkpoint_step(last)
        if step is not None and step >= min_step:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            from qbc.infra.run_folder import recover_dir

            recover_dir(last)  # what the resumed run does first
            return _checkpoint_step(last)
        time.sleep(0.002)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def _no_partial_files(run: Path) -> None:
    """Every file under a final name reads back; temporary files are hidden '.*.tmp' ones."""
    from safetensors.torch import load_file

    for p in run.rglob("*"):
        hidden = [part for part in p.relative_to(run).parts if part.startswith(".")]
        if hidden:  # temporary files and folders of interrupted writes
            assert hidden[0].endswith((".tmp", ".old")), p
            continue
        if p.is_dir():
            continue
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
        elif p.suffix == ".safetensors":
            load_file(str(p))


@pytest.mark.slow
def test_sigkilled_training_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    from qbc.data.collect import CollectConfig, collect

    collect(CollectConfig(env=ENV, dataset_id="qbc/lin-v0", episodes=6, num_envs=6,
                          max_episode_steps=40))
    env = _env(tmp_path)
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # The doomed run in a process of its own (to be SIGKILLed); the uninterrupted reference
    # and the resumed run in this one (one torch thread, as the doomed run has), same seed.
    doomed = subprocess.Popen([sys.executable, "-m", "qbc.cli", *_train_argv(killed)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    step = _kill_after_a_checkpoint(doomed, killed / "last", min_step=16)
    assert doomed.returncode == -signal.SIGKILL
    assert 16 <= step < 160
    _no_partial_files(killed)

    resumed = run_cli(_train_argv(killed, "--resume"), env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ref = run_cli(_train_argv(reference), env=env)
    assert ref.returncode == 0, ref.stderr[-2000:]

    for sub in ("last", "best"):
        a = load_file(str(killed / sub / "model.safetensors"))
        b = load_file(str(reference / sub / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:  # exact: same seed, same RNG states restored, one thread
            assert a[k].equal(b[k]), (sub, k)
    a = load_file(str(killed / "last" / "trainer.safetensors"))
    b = load_file(str(reference / "last" / "trainer.safetensors"))
    assert all(a[k].equal(b[k]) for k in a) and a.keys() == b.keys()

    def records(run):
        return [{k: v for k, v in json.loads(line).items()
                 if k not in ("elapsed_s", "samples_per_s")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert records(killed) == records(reference)
    assert [r["step"] for r in records(killed)] == list(range(8, 161, 8))
    for name in ("tokenizer.json", "normalizer.json"):
        assert (killed / "best" / name).read_bytes() == (reference / "best" / name).read_bytes()


# -- safe loading ----------------------------------------------------------------------------------
_UNSAFE = re.compile(r"\b(import\s+(cloud)?pickle|from\s+(cloud)?pickle\s+import|"
                     r"(cloud)?pickle\.(loads?|Unpickler)|dill\.loads?|joblib\.load|"
                     r"allow_pickle\s*=\s*True|marshal\.loads?)")


def _code_lines(root: Path):
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            yield path.relative_to(REPO), n, code


def test_no_pickle_and_no_unsafe_torch_load_in_the_code_base():
    """torch.load only with weights_only=True; no pickle, cloudpickle, dill, joblib loading or
    np.load(allow_pickle=True) in qbc/, envs/, agents/ (SB3's own loader is the one documented
    exception: docs/errors.md)."""
    problems = []
    for folder in ("qbc", "envs", "agents"):
        for path, n, code in _code_lines(REPO / folder):
            if _UNSAFE.search(code):
                problems.append(f"{path}:{n}: {code.strip()}")
            if "torch.load(" in code and "weights_only=True" not in code:
                problems.append(f"{path}:{n}: torch.load without weights_only=True")
    assert not problems, "\n".join(problems)


def test_the_grep_would_catch_an_unsafe_load(tmp_path):
    """The pattern of the test above is not vacuous."""
    bad = tmp_path / "bad" / "m.py"
    bad.parent.mkdir()
    bad.write_text("import pickle\nx = pickle.load(f)\ny = np.load(p, allow_pickle=True)\n"
                   "import cloudpickle\nz = joblib.load(q)\nsafe = np.load(p)\n")
    hits = [n for n, line in enumerate(bad.read_text().splitlines(), 1) if _UNSAFE.search(line)]
    assert hits == [1, 2, 3, 4, 5]


def test_sb3_experts_load_only_from_a_path_the_user_names():
    """make_expert('sb3', ...) needs an explicit path; the docs say what loading one implies."""
    from qbc.agents import make_expert
    from qbc.errors import InvalidValueError

    with pytest.raises(InvalidValueError, match="path"):
        make_expert("sb3", ENV)
    doc = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    assert "pickled" in doc and "--expert-path" in doc


def test_last_checkpoint_is_replaced_as_a_whole(tmp_path):
    """A crash between the two renames of atomic_write_dir leaves the old folder in .last.old;
    the next run puts it back before resuming."""
    from qbc.infra.run_folder import atomic_write_dir, recover_dir

    run = tmp_path / "run"
    last = run / "last"
    atomic_write_dir(last, lambda d: (d / "a.txt").write_text("1"))
    atomic_write_dir(last, lambda d: (d / "a.txt").write_text("2"))
    assert (last / "a.txt").read_text() == "2"
    assert sorted(p.name for p in run.iterdir()) == ["last"]  # nothing left behind
    # simulate the crash window: old moved aside, new not yet in place
    os.replace(last, run / ".last.old")
    assert recover_dir(last) and (last / "a.txt").read_text() == "2"
    assert not recover_dir(last)


def test_a_failing_fill_leaves_the_old_folder(tmp_path):
    from qbc.infra.run_folder import atomic_write_dir

    run = tmp_path / "run"
    last = run / "last"
    atomic_write_dir(last, lambda d: (d / "a.txt").write_text("1"))

    def broken(d):
        (d / "a.txt").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_dir(last, broken)
    assert (last / "a.txt").read_text() == "1"
    assert sorted(p.name for p in run.iterdir()) == ["last"]


def test_resume_refuses_a_folder_without_a_resumable_run(tmp_path):
    from qbc.errors import OutputExistsError
    from qbc.training import TrainConfig, run_dir

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's files")
    with pytest.raises(OutputExistsError, match="no resumable run") as err:
        with run_dir(TrainConfig(dataset="unused", out=out, resume=True)):
            pass
    assert "--overwrite" not in str(err.value)  # it would delete what is there
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    for name, what in (("fresh", "does not exist"), ("empty", "is empty")):
        # nothing to continue: refused (it started a new run without a word), nothing written
        with pytest.raises(OutputExistsError, match=f"no resumable run \\(it {what}\\)"):
            with run_dir(TrainConfig(dataset="unused", out=tmp_path / name, resume=True)):
                pass
    assert not (tmp_path / "fresh").exists() and not any((tmp_path / "empty").iterdir())
