"""What ``qbc bench --device`` needs beyond the CPU: timing that waits for the GPU, and the GPU's
peak FLOP/s for model FLOP utilisation (MFU).

Peaks are dense (no structured sparsity) spec-sheet figures in FLOP/s, per GPU model: fp32 on CUDA
cores, and TF32 on tensor cores, which torch uses for fp32 matmuls only when
``torch.backends.cuda.matmul.allow_tf32`` is on (off by default). A GPU not in the table needs
``--peak-tflops``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: GPU name fragment -> (fp32 peak, TF32 tensor-core peak), dense FLOP/s; first match wins, so
#: the more specific names come first.
GPU_PEAKS: dict[str, tuple[float, float]] = {
    "H200": (67e12, 494.7e12),
    "H100 PCIe": (51e12, 378e12),
    "H100": (67e12, 494.7e12),   # SXM
    "A100": (19.5e12, 156e12),
    "L4": (30.3e12, 60e12),
    "A10": (31.2e12, 62.5e12),
}


def gpu_peak_flops(name: str, tf32: bool) -> float | None:
    """Dense peak FLOP/s of the GPU called ``name`` (``torch.cuda.get_device_name``) for fp32
    matmuls, on tensor cores when ``tf32``; None for a GPU not in :data:`GPU_PEAKS`."""
    for fragment, (fp32, tf32_peak) in GPU_PEAKS.items():
        if fragment in name:
            return tf32_peak if tf32 else fp32
    return None


def synchronized(fn: Callable[[], Any], device: Any) -> Callable[[], Any]:
    """``fn`` followed by waiting for the device's queued work (CUDA kernels run asynchronously,
    so without this a timer measures only the launches); ``fn`` itself on the CPU."""
    if getattr(device, "type", "cpu") != "cuda":
        return fn
    import torch

    def call():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return call


def peak_info(device: Any, peak_tflops: float | None) -> dict[str, Any]:
    """The device's name, whether fp32 matmuls use TF32, and the peak FLOP/s MFU is taken
    against (``peak_tflops`` x 1e12 when given, else :func:`gpu_peak_flops`; None on the CPU or
    for an unknown GPU)."""
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return {"device": str(device), "name": None, "tf32": False, "peak_flop_per_s": None,
                "peak_source": None}
    name = torch.cuda.get_device_name(device)
    tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
    if peak_tflops is not None:
        peak, source = peak_tflops * 1e12, "--peak-tflops"
    else:
        peak = gpu_peak_flops(name, tf32)
        source = None if peak is None else f"spec sheet, {'TF32' if tf32 else 'fp32'} dense"
    return {"device": str(device), "name": name, "tf32": tf32, "peak_flop_per_s": peak,
            "peak_source": source}
