"""Commands started by a driver end with it (qbc.infra.child_processes)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: A driver that runs three 60-second commands, two at once from a thread pool (or one in
#: its main thread), each writing its pid to OUT/child<i> first. It takes Ctrl-C as a driver
#: started from a terminal does (a test run started as a background job of a non-interactive
#: shell has SIGINT ignored, and children inherit that).
DRIVER = """
import signal
import sys
from qbc.infra import child_processes

signal.signal(signal.SIGINT, signal.default_int_handler)

out, in_pool = sys.argv[1], sys.argv[2] == "pool"
sleeper = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"

def command(i):
    with open(f"{out}/child{i}", "w") as fh:
        return child_processes.run([sys.executable, "-c", sleeper], stdout=fh)

with child_processes.stopped_on_exit():
    if in_pool:
        with child_processes.thread_pool(2) as pool:
            list(pool.map(command, range(3)))
    else:
        for i in range(3):
            command(i)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's wait is missing


def _pids(out: Path, n: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [p.read_text().strip() for p in sorted(out.glob("child*"))]
        if len([t for t in texts if t]) >= n:
            return [int(t) for t in texts if t]
        time.sleep(0.1)
    raise AssertionError(f"the driver did not start {n} commands in {timeout} s")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(("mode", "sig", "running"), [("pool", signal.SIGTERM, 2),
                                                      ("main", signal.SIGINT, 1)])
@pytest.mark.slow
def test_a_stopped_driver_stops_its_commands_and_starts_no_more(tmp_path, mode, sig, running):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), mode])
    try:
        pids = _pids(tmp_path, running)
        assert all(_alive(p) for p in pids)
        driver.send_signal(sig)
        driver.wait(timeout=30)
    finally:
        driver.kill()
    assert driver.returncode != 0
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert not (tmp_path / f"child{running}").exists()  # the next command never started
