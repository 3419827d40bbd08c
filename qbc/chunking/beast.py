"""``beast``: B-spline control points of each chunk (Zhou et al. 2025, BEAST), binned uniformly.

Per action dimension, a chunk of k steps (times t = 0, 1/(k-1), ..., 1) is approximated by a
clamped B-spline of ``degree`` with ``n_control_points`` control points on uniform knots, fitted by
least squares (one pseudo-inverse of the k x n design matrix, shared by all chunks). Each control
point is then binned by an :class:`~qbc.tokenizer.ActionTokenizer` (one ``uniform`` quantizer per
control point and dimension, ``bins`` levels, range fitted on the data). Tokens per chunk:
``n_control_points * D``, control-point-major; every sequence of that length decodes. Choices
of ours where the reference (as secondary sources describe it) differs or is not known to us:
the least squares is a plain pseudo-inverse (the reference is described as switching to ridge
regression when the fit is ill-conditioned); the bin ranges are the min and max of each control
point and dimension over the fitting data; the first control point is never pinned to the
current action (the reference can pin it for continuity between chunks).

Error: B-spline basis functions are non-negative and sum to 1, so the decoded chunk differs from
the least-squares spline by at most the largest half bin width of a dimension
(:attr:`BeastTokenizer.quantization_error_bound`), for control points inside the fitted range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.chunking.base import ChunkTokenizer, check_int, register_chunk_tokenizer
from qbc.errors import InvalidValueError
from qbc.tokenizer import ActionTokenizer


def bspline_design(k: int, n_control_points: int, degree: int) -> np.ndarray:
    """Design matrix (k, n_control_points) of a clamped B-spline on uniform knots over [0, 1],
    evaluated at k equally spaced times: ``chunk = design @ control_points``."""
    knots = np.r_[np.zeros(degree), np.linspace(0.0, 1.0, n_control_points - degree + 1),
                  np.ones(degree)]
    times = np.linspace(0.0, 1.0, k) if k > 1 else np.zeros(1)
    from scipy.interpolate import BSpline  # deferred: 0.3 s of every command's start otherwise

    return BSpline.design_matrix(times, knots, degree).toarray()


@register_chunk_tokenizer("beast")
class BeastTokenizer(ChunkTokenizer):
    """Args:
        n_control_points: control points per dimension (tokens per dimension), <= k.
        degree: B-spline degree, < n_control_points.
        bins: uniform bins per control point (the vocabulary size).
    """

    _fitted_attrs = ("tokenizer_",)

    def __init__(self, n_control_points: int = 10, degree: int = 4, bins: int = 256):
        self.n_control_points = n_control_points
        self.degree = degree
        self.bins = bins
        self._validate_params()

    def _validate_params(self) -> None:
        for what, value, low in (("n_control_points", self.n_control_points, 1),
                                 ("degree", self.degree, 0), ("bins", self.bins, 2)):
            check_int("beast", what, value, low)
        if self.degree >= self.n_control_points:
            raise InvalidValueError(
                f"beast: degree {self.degree} needs more than {self.degree} control points, got "
                f"n_control_points={self.n_control_points}; use degree < n_control_points")

    def _fit(self, chunks: np.ndarray) -> None:
        if self.chunk_len_ < self.n_control_points:
            raise InvalidValueError(
                f"beast: chunk length k={self.chunk_len_} is shorter than n_control_points="
                f"{self.n_control_points}; use n_control_points <= {self.chunk_len_}")
        ctrl = self.control_points(chunks)
        self.tokenizer_ = ActionTokenizer("uniform", self.bins).fit(ctrl.reshape(len(ctrl), -1))

    def _design(self) -> tuple[np.ndarray, np.ndarray]:
        """(design (k, n_control_points), its pseudo-inverse) for the fitted k, cached."""
        cache = getattr(self, "_design_cache", None)
        if cache is None or cache[0] != self.chunk_len_:
            design = bspline_design(self.chunk_len_, self.n_control_points, self.degree)
            cache = self._design_cache = (self.chunk_len_, design, np.linalg.pinv(design))
        return cache[1], cache[2]

    def control_points(self, chunks: np.ndarray) -> np.ndarray:
        """Least-squares control points (N, n_control_points, D) of chunks (N, k, D)."""
        return np.einsum("ck,nkd->ncd", self._design()[1], chunks)

    def spline(self, control_points: np.ndarray) -> np.ndarray:
        """Control points (N, n_control_points, D) -> chunks (N, k, D)."""
        return np.einsum("kc,ncd->nkd", self._design()[0], control_points)

    @property
    def quantization_error_bound(self) -> np.ndarray:
        """(D,) worst |decode(encode(x)) - spline(control_points(x))| per dimension."""
        half = np.array([self.tokenizer_._quantizer_for(j).error_bound
                         for j in range(self.tokenizer_.action_dim_)])
        return half.reshape(self.n_control_points, self.action_dim_).max(axis=0)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_.vocab_size

    @property
    def n_tokens(self) -> int:
        return self.n_control_points * self.action_dim_

    def _encode(self, chunks: np.ndarray) -> np.ndarray:
        ctrl = self.control_points(chunks)
        return self.tokenizer_.encode(ctrl.reshape(len(ctrl), -1))

    def _decode(self, tokens: np.ndarray) -> np.ndarray:
        ctrl = self.tokenizer_.decode(tokens).astype(np.float64)
        return self.spline(ctrl.reshape(len(tokens), self.n_control_points, self.action_dim_))

    def _fitted_state(self) -> dict[str, Any]:
        return {"tokenizer_": self.tokenizer_.state_dict()}

    def _load_fitted(self, fitted: dict[str, Any]) -> None:
        self.tokenizer_ = ActionTokenizer.from_state_dict(fitted["tokenizer_"])
        if self.tokenizer_.action_dim_ != self.n_tokens:
            raise ValueError(f"{self.tokenizer_.action_dim_} binned values for {self.n_tokens}")
