"""What the round-three reliability tests share (tests/cli/test_round_three_*.py): a tiny
dataset, the flags of a tiny training run, a tiny sweep file, a lock file held by another
process, and the check that a refused command says one line and changes nothing on disk."""

from pathlib import Path

import pytest


@pytest.fixture
def tiny_dataset():
    from qbc.cli import main

    assert main(["collect", "--env", "qbc/ScalarStable-v0", "--dataset", "test/t-v0",
                 "--episodes", "3", "--max-episode-steps", "8", "--no-progress"]) == 0
    return "test/t-v0"


TRAIN_TINY = ["--steps", "2", "--rollout-episodes", "0", "--no-progress", "--model.d-model",
              "16", "--model.n-heads", "2", "--model.n-layers", "1"]


SWEEP = """
[grid]
envs = ["qbc/ScalarStable-v0"]
quantizers = ["uniform"]
bins = 8
n_demos = 4
seeds = [0]
horizons = [10]
[data]
episode_steps = 10
[train]
policies = ["quantized-expert"]
[rollout]
episodes = 2
num_envs = 2
"""


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding a lock file: start(path) -> (pid, path); released at the end."""
    import subprocess
    import sys
    import time

    procs = []

    def start(lock):
        code = ("import sys, time\nfrom qbc.infra.run_folder import exclusive\n"
                "with exclusive(sys.argv[1], 'test holder'):\n"
                "    print('held', flush=True); time.sleep(60)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        deadline = time.monotonic() + 10
        while not Path(lock).read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def files_under(root: Path) -> dict[Path, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``, by relative path."""
    return {p.relative_to(root): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def refused(capsys, root: Path, argv: list[str], *needles: str) -> str:
    """Run ``qbc argv`` in-process and assert it is refused: exit 2, one line on stderr with no
    traceback holding every needle, nothing under ``root`` changed. Returns that line."""
    from qbc.cli import main

    before = files_under(root)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    assert files_under(root) == before
    return err
