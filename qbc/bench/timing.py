"""Repeated, interleaved wall-clock measurements and a description of the machine they ran on.

Other processes share the CPU, so every figure is the median of several timed blocks taken after
a warm-up, with the spread (smallest and largest block) beside it; variants that are compared are
timed in alternation, block by block, so a burst of load hits both sides of a ratio alike.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements (any unit)."""
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "repeats": len(v)}


def calibrate(fn: Callable[[], Any], target_s: float, max_calls: int = 100_000) -> int:
    """Calls of ``fn`` that take about ``target_s`` seconds (at least 1), after a warm-up call."""
    fn()  # warm-up: first-call costs (allocation, dispatch caches) are not throughput
    n, elapsed = 1, 0.0
    while n < max_calls:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s / 4:
            break
        n *= 4
    per_call = max(elapsed / n, 1e-9)
    return int(min(max_calls, max(1, round(target_s / per_call))))


def interleaved_rates(fns: Mapping[str, Callable[[], Any]], work: Mapping[str, float],
                      repeats: int, target_s: float) -> dict[str, dict[str, list[float]]]:
    """Rates (work units per second) of each variant over ``repeats`` blocks, timed in turn.

    ``fns[name]`` does ``work[name]`` units (e.g. env steps per vector step) per call; each block
    calls it a calibrated number of times (about ``target_s`` seconds). Returns, per variant,
    ``{"wall": [...], "cpu": [...]}``: rates by wall-clock time and by this process's CPU time
    (the latter is what an otherwise idle machine would give, when torch runs one thread)."""
    calls = {name: calibrate(fn, target_s) for name, fn in fns.items()}
    rates: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = calls[name]
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rates[name]["wall"].append(work[name] * n / wall)
            rates[name]["cpu"].append(work[name] * n / max(cpu, 1e-9))
    return rates


def figure(values: dict[str, list[float]], scale: float = 1.0, invert: bool = False
           ) -> dict[str, Any]:
    """``{"wall": summary, "cpu": summary}`` of per-block values (x ``scale``, or scale / x when
    ``invert``, e.g. a latency from a rate)."""
    f = (lambda x: scale / x) if invert else (lambda x: scale * x)
    return {clock: summarize([f(x) for x in v]) for clock, v in values.items()}


def paired_ratio(num: dict[str, list[float]], den: dict[str, list[float]]) -> dict[str, Any]:
    """Summaries of block-by-block ratios num[i] / den[i] (the blocks were timed side by side),
    by wall-clock and by CPU time."""
    return {clock: summarize([a / b for a, b in zip(num[clock], den[clock], strict=True)])
            for clock in num}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model and cores, library versions, torch threads and the current load average."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_model(), "cores": cores, "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
