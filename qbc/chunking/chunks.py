"""Action chunks: cutting episodes into (N, k, D) windows, checking chunk arrays, and the
per-dimension quantile normalisation that FAST and residual VQ share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qbc.errors import InvalidValueError
from qbc.quantizers.base import as_real_array


def check_chunk_len(k: object, what: str = "chunk length k") -> int:
    """``k`` as a positive int, or InvalidValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidValueError(f"{what} must be an integer >= 1, got {k!r}")
    return int(k)


def make_chunks(episodes: Sequence[np.ndarray], k: int, stride: int = 1) -> np.ndarray:
    """Cut each episode's actions (T_i, D) into windows of ``k`` consecutive steps.

    Windows start at steps 0, stride, 2 stride, ... while they fit inside the episode (the tail
    shorter than a window is not padded). Returns float32 chunks (N, k, D).
    Episodes shorter than ``k`` are refused: a chunk never spans two episodes.
    """
    k = check_chunk_len(k)
    stride = check_chunk_len(stride, "stride")
    if len(episodes) == 0:
        raise InvalidValueError("no episodes to cut into chunks; give at least one")
    out, dim = [], None
    for i, ep in enumerate(episodes):
        ep = as_real_array(ep, f"episode {i} actions")
        ep = ep[:, None] if ep.ndim == 1 else ep
        if ep.ndim != 2 or (dim is not None and ep.shape[1] != dim):
            raise InvalidValueError(
                f"episode {i} actions have shape {ep.shape}; every episode must be (T, D) with "
                f"the same D{'' if dim is None else f' ({dim})'}")
        dim = ep.shape[1]
        if len(ep) < k:
            raise InvalidValueError(
                f"episode {i} has {len(ep)} actions, fewer than the chunk length k={k}; use "
                f"k <= {len(ep)} or drop episodes shorter than k")
        windows = np.lib.stride_tricks.sliding_window_view(ep, k, axis=0)[::stride]
        out.append(np.swapaxes(windows, 1, 2))  # (n, D, k) -> (n, k, D)
    return np.concatenate(out).astype(np.float32)


def check_chunks(chunks: object, what: str = "chunks",
                 shape: tuple[int, int] | None = None) -> np.ndarray:
    """``chunks`` as a finite float64 array (N, k, D) with N >= 1, k >= 1, D >= 1 (and (k, D)
    equal to ``shape`` when given), or InvalidValueError naming the problem."""
    x = as_real_array(chunks, what)
    if x.ndim != 3:
        raise InvalidValueError(
            f"{what} must be an (N, k, D) array (N chunks of k steps of D-dim actions), got "
            f"shape {x.shape}; cut episodes with qbc.chunking.make_chunks")
    n, k, d = x.shape
    if k < 1 or d < 1 or n < 1:
        raise InvalidValueError(
            f"{what} have shape {x.shape}; need N >= 1 chunks, chunk length k >= 1, D >= 1")
    if shape is not None and (k, d) != tuple(shape):
        raise InvalidValueError(
            f"{what} have (k, D) = {(k, d)} but the tokenizer was fitted on {tuple(shape)}; "
            "use chunks of the fitted length and action dimension")
    if not np.isfinite(x).all():
        raise InvalidValueError(
            f"{int((~np.isfinite(x)).sum())} non-finite values (NaN or inf) in {what}; drop or "
            "repair them")
    return x


class QuantileNormalizer:
    """Per-dimension affine map of actions to [-1, 1] by their ``quantile`` and
    ``1 - quantile`` quantiles (FAST uses the 1st/99th percentiles); values beyond them map
    outside [-1, 1] and are not clipped. Constant dimensions get scale 1.

    Attributes after ``fit``: ``low_`` and ``high_`` (D,), in action units.
    """

    def __init__(self, quantile: float = 0.01):
        self.quantile = quantile

    def fit(self, x: np.ndarray) -> QuantileNormalizer:
        """Fit to values (..., D) and return self."""
        if not 0.0 <= float(self.quantile) < 0.5:
            raise InvalidValueError(f"quantile must lie in [0, 0.5), got {self.quantile!r}")
        flat = x.reshape(-1, x.shape[-1])
        self.low_ = np.quantile(flat, self.quantile, axis=0)
        self.high_ = np.quantile(flat, 1.0 - self.quantile, axis=0)
        return self

    def _center_scale(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = np.asarray(self.low_, float), np.asarray(self.high_, float)
        half = (high - low) / 2.0
        return (high + low) / 2.0, np.where(half > 1e-12, half, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Actions (..., D) -> normalised values (..., D), float64."""
        center, scale = self._center_scale()
        return (x - center) / scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Normalised values (..., D) -> actions (..., D), float64."""
        center, scale = self._center_scale()
        return z * scale + center

    @property
    def half_range(self) -> np.ndarray:
        """(D,) action units per normalised unit."""
        return self._center_scale()[1]
