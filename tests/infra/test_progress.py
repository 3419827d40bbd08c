"""qbc.infra.progress: tqdm on a terminal, one plain line per interval elsewhere (fake clock)."""

import io

import pytest

from qbc.infra.progress import PlainProgress, progress_bar


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeTty(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_once_per_interval_and_a_closing_line():
    clock, out = FakeClock(), io.StringIO()
    bar = progress_bar(total=100, desc="train", unit="step", file=out, interval=10.0, clock=clock)
    assert isinstance(bar, PlainProgress)
    for _ in range(100):
        clock.t += 1.0  # one step per second: a line at steps 10, 20, ... 100
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # 10 periodic + the closing line
    assert "\r" not in out.getvalue()
    assert lines[0] == "train: 10/100 step (10%), 1 step/s, eta 1m30s, loss=0.5"
    assert lines[-1].startswith("train: 100/100 step (100%)") and "done in 1m40s" in lines[-1]


def test_short_job_is_silent_and_disable_prints_nothing():
    clock, out = FakeClock(), io.StringIO()
    with progress_bar(total=5, desc="x", file=out, clock=clock) as bar:
        for _ in range(5):
            clock.t += 0.1
            bar.update(1)
    assert out.getvalue() == ""
    bar = progress_bar(total=5, desc="x", file=out, clock=clock, disable=True)
    clock.t += 100
    bar.update(5)
    bar.close()
    assert out.getvalue() == ""


def test_iterable_and_initial():
    clock, out = FakeClock(), io.StringIO()
    seen = []
    for item in progress_bar(range(3), desc="it", file=out, clock=clock, interval=0.5):
        clock.t += 1
        seen.append(item)
    assert seen == [0, 1, 2]
    assert out.getvalue().splitlines()[0].startswith("it: 1/3 it (33%)")
    bar = PlainProgress(total=10, initial=4, file=out, clock=clock)
    assert bar.n == 4


def test_terminal_gets_tqdm():
    tqdm = pytest.importorskip("tqdm")
    bar = progress_bar(total=3, desc="tty", file=FakeTty())
    assert isinstance(bar, tqdm.tqdm)
    bar.close()


def test_scoped_threads_restores_torchs_thread_count():
    import torch

    from qbc.infra.environ import scoped_threads

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with scoped_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), scoped_threads(target):
        raise RuntimeError("the body fails")
    assert torch.get_num_threads() == before
    with scoped_threads(None):
        assert torch.get_num_threads() == before
