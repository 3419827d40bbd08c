"""Progress that reads well on a terminal and in a log file.

:func:`progress_bar` takes tqdm's arguments and returns a tqdm bar when the stream (stderr by
default) is a terminal. Otherwise (a log file, a pipe, a batch job) it returns a
:class:`PlainProgress`: one plain line every ``interval`` seconds, instead of the carriage-return
frames tqdm would write there, and a closing line when it printed anything before.

    with progress_bar(total=n, desc="collect", unit="ep", disable=not progress) as bar:
        for ...:
            bar.update(1)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

#: Seconds between two plain progress lines.
INTERVAL_S = 10.0

#: Where a library function sends the lines a command shows while it runs (``print`` on the
#: command line): library code takes one as ``log`` and never prints itself.
Log = Callable[[str], None]


def silent(line: str) -> None:
    """The default :data:`Log`: the lines are dropped."""


class PlainProgress:
    """The part of tqdm's interface qbc uses, printing ``desc: n/total unit (pct), rate, eta,
    postfix`` every ``interval`` seconds of ``clock`` (injectable for tests)."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: float = 0, disable: bool = False,
                 file: TextIO | None = None, interval: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.disable, self.file, self.interval, self.clock = disable, file, interval, clock
        self.postfix = ""
        self.lines = 0  # plain lines printed so far
        self.start = self.last = clock()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            self._print(self.line(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def write(self, s: str) -> None:
        self._print(s)

    def close(self) -> None:
        """A closing line, only when periodic lines were printed (a short job stays silent)."""
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.lines:
            self._print(self.line(self.clock(), done=True))

    def line(self, now: float, done: bool = False) -> str:
        """One progress line at time ``now`` of the clock."""
        elapsed = max(now - self.start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        count = f"{_num(self.n)}/{_num(self.total)}" if self.total else _num(self.n)
        parts = [f"{self.desc}: {count} {self.unit}" if self.desc else f"{count} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s")
        if done:
            parts.append(f"done in {_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"eta {_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _print(self, text: str) -> None:
        stream = self.file if self.file is not None else sys.stderr
        print(text, file=stream, flush=True)
        self.lines += 1


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None,
                 interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> Any:
    """tqdm on a terminal, :class:`PlainProgress` elsewhere; ``kwargs`` are tqdm's (``total``,
    ``desc``, ``unit``, ``initial``, ``disable``, ``leave``, ``dynamic_ncols``, ...)."""
    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    plain = {k: kwargs[k] for k in ("total", "desc", "unit", "initial", "disable") if k in kwargs}
    return PlainProgress(iterable, file=file, interval=interval, clock=clock, **plain)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
