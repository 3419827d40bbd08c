"""The context decoding runs in (no autograd), and the opt-in switch that turns oneDNN off.

Why one might switch oneDNN off: on CPU, PyTorch sends every contiguous float32 ``F.gelu``
through oneDNN, which builds a primitive per call. For the activations of a small policy (a few
hundred numbers per step) that set-up costs 5-20 us per call, more than the arithmetic. Measured
with ``qbc bench --quick`` (default ar-transformer, 2-core EPYC, 1 thread; at commit 47cef66,
2026-11-24; the default model has changed since), batch-1 decoding took
0.99-1.04 ms with oneDNN and 0.80-0.84 ms without (two runs each); batch-1024 decoding and
training showed no consistent change. The results differ only in rounding (GELU outputs by
< 1e-6).

The switch is **opt-in**: ``torch.backends.mkldnn.enabled`` is process-wide, so qbc never turns
it off by itself. Ask for it with ``Policy(..., disable_onednn=True)`` (or
``policy.disable_onednn = True`` after :func:`~qbc.policy.loading.load_policy`), which wraps each
decoding call in :func:`onednn_disabled`, or enter that context yourself around a loop of calls.
``qbc bench`` measures decoding with it (``--no-disable-onednn`` measures torch's default).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_active = 0  # threads inside onednn_disabled()
_was_enabled = False  # oneDNN's setting before the first of them entered


@contextmanager
def decoding_context(device: torch.device | str = "cpu") -> Iterator[None]:
    """``torch.inference_mode()`` for the duration; changes no process-wide setting. (``device``
    is accepted for callers that pass it; the context is the same on every device.)"""
    with torch.inference_mode():
        yield


@contextmanager
def onednn_disabled(enabled: bool = True) -> Iterator[None]:
    """oneDNN switched off (``torch.backends.mkldnn.enabled = False``) for the body and restored
    afterwards; ``enabled=False`` makes this a no-op. The setting is process-wide: while any
    thread is inside, torch code in every thread runs without oneDNN (same results up to
    rounding). Overlapping entries from several threads are counted, so the setting comes back
    when the last one leaves."""
    global _active, _was_enabled
    if not enabled:
        yield
        return
    with _lock:
        if _active == 0:
            _was_enabled = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _was_enabled:
                torch.backends.mkldnn.enabled = True
