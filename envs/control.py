"""Linear-control helpers used by ``describe`` and the experts: LQR gains, spectral radii."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from qbc.errors import InvalidValueError


def spectral_radius(M: np.ndarray) -> float:
    """Largest |eigenvalue| of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(M, dtype=np.float64)))))


def lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Infinite-horizon discrete LQR gain K (m, n), for u = -K x.

    Solves the discrete algebraic Riccati equation with :func:`scipy.linalg.solve_discrete_are`;
    K = (R + B'PB)^-1 B'PA. Raises InvalidValueError when no stabilising solution exists.
    """
    A, B, Q, R = (np.asarray(M, dtype=np.float64) for M in (A, B, Q, R))
    try:
        P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        raise InvalidValueError(
            f"LQR has no stabilising solution ({exc}); check that (A, B) is stabilisable "
            "and R is positive definite"
        ) from None
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def closed_loop(A: np.ndarray, B: np.ndarray, K: np.ndarray) -> np.ndarray:
    """A - B K, the linearised closed loop under u = -K x."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (B.shape[1], A.shape[0]):
        raise InvalidValueError(
            f"gain K must have shape (act_dim, obs_dim) = {(B.shape[1], A.shape[0])}, "
            f"got {K.shape}"
        )
    return A - B @ K
