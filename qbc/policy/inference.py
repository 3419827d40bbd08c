"""The context that policy decoding runs in: no autograd, and no oneDNN on CPU.

Why oneDNN is switched off: on CPU, PyTorch sends every contiguous float32 ``F.gelu`` through
oneDNN, which builds a primitive per call. For the activations of a small policy (a few hundred
numbers per step) that set-up costs 5-20 us per call, more than the arithmetic. Measured with
``qbc bench --quick`` (default ar-transformer, 2-core EPYC, 1 thread), batch-1 decoding took
0.99-1.04 ms with oneDNN and 0.80-0.84 ms without (``QBC_KEEP_ONEDNN=1`` vs the default, two
runs each); batch-1024 decoding and training showed no consistent change.
The results differ only in rounding (GELU outputs by < 1e-6).

``torch.backends.mkldnn.enabled`` is a process-wide switch, so it is turned off while at least
one thread is decoding and turned back on (if it was on) when the last one leaves; another
thread running torch code at the same moment runs it without oneDNN too (same results up to
rounding). Set ``QBC_KEEP_ONEDNN=1`` to leave the switch alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_active = 0  # threads inside decoding_context() that turned oneDNN off
_was_enabled = False  # oneDNN's setting before the first of them entered


@contextmanager
def decoding_context(device: torch.device | str = "cpu") -> Iterator[None]:
    """``torch.inference_mode()``, plus oneDNN off for the duration when ``device`` is a CPU."""
    global _active, _was_enabled
    switch = torch.device(device).type == "cpu" and os.environ.get("QBC_KEEP_ONEDNN") != "1"
    if switch:
        with _lock:
            if _active == 0:
                _was_enabled = torch.backends.mkldnn.enabled
                torch.backends.mkldnn.enabled = False
            _active += 1
    try:
        with torch.inference_mode():
            yield
    finally:
        if switch:
            with _lock:
                _active -= 1
                if _active == 0 and _was_enabled:
                    torch.backends.mkldnn.enabled = True
