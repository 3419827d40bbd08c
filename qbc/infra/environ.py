"""Process-wide settings (environment variables, torch's thread count) set for a while and put
back: library code never leaves the process changed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scoped_environ(**values: str) -> Iterator[None]:
    """Set ``values`` (only those not already set, so a user's choice wins) for the body; on
    exit, restore the whole environment as found, undoing whatever the body (or a library it
    started, e.g. wandb or pygame) added or changed."""
    saved = dict(os.environ)
    for key, value in values.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextmanager
def scoped_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the body (``None`` or 0: left as it is),
    then restored."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def scoped_torch_rng() -> Iterator[None]:
    """torch's global random generators (CPU and every CUDA device) as they were before the
    body, whatever the body seeds or draws: a library function that seeds torch (training,
    model initialisation) leaves the caller's random stream untouched."""
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield
