"""Quantizers designed for a standard normal source, computed in closed form.

For a cell ``[a, b]`` with codeword ``c``, the distortion ``∫_a^b (x - c)² φ(x) dx`` has a closed
form in the normal pdf ``φ`` and cdf ``Φ``; Lloyd–Max iterations and the MSE-optimal uniform step
are computed from it to near machine precision, no sampling involved.
"""

from __future__ import annotations

import numpy as np


def _cell_moments(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zeroth, first and second moments of N(0,1) restricted to cells [a, b] (a, b may be ±inf)."""
    from scipy import stats  # imported here: scipy.stats takes a second to import

    pa, pb = stats.norm.pdf(a), stats.norm.pdf(b)
    m0 = stats.norm.cdf(b) - stats.norm.cdf(a)
    m1 = pa - pb
    # x·φ(x) -> 0 at ±inf; substitute 0 for the infinite edges to avoid inf·0.
    a_pa = np.where(np.isfinite(a), np.nan_to_num(a, posinf=0.0, neginf=0.0) * pa, 0.0)
    b_pb = np.where(np.isfinite(b), np.nan_to_num(b, posinf=0.0, neginf=0.0) * pb, 0.0)
    m2 = m0 + a_pa - b_pb
    return m0, m1, m2


def gaussian_distortion(thresholds: np.ndarray, codebook: np.ndarray) -> float:
    """Mean squared error of a scalar quantizer on N(0,1).

    thresholds: (K-1,) sorted cell boundaries; codebook: (K,) codewords, one per cell.
    """
    edges = np.concatenate([[-np.inf], np.asarray(thresholds, float), [np.inf]])
    c = np.asarray(codebook, float)
    m0, m1, m2 = _cell_moments(edges[:-1], edges[1:])
    return float(np.sum(m2 - 2 * c * m1 + c**2 * m0))


def lloyd_max_gaussian(n_levels: int, tol: float = 1e-12, max_iter: int = 10_000):
    """Lloyd–Max (minimum-MSE) quantizer for N(0,1).

    Returns ``(codebook (K,), thresholds (K-1,))``. Alternates centroid and midpoint conditions
    starting from a uniform codebook over ±2 standard deviations.
    """
    codebook = np.linspace(-2.0, 2.0, n_levels) if n_levels > 1 else np.zeros(1)
    for _ in range(max_iter):
        thresholds = 0.5 * (codebook[1:] + codebook[:-1])
        edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
        m0, m1, _ = _cell_moments(edges[:-1], edges[1:])
        new = m1 / m0
        if np.max(np.abs(new - codebook)) < tol:
            codebook = new
            break
        codebook = new
    return codebook, 0.5 * (codebook[1:] + codebook[:-1])


def uniform_gaussian_step(n_levels: int) -> float:
    """MSE-optimal step Δ of a symmetric uniform quantizer with ``n_levels`` cells on N(0,1).

    Cells are ``[iΔ, (i+1)Δ)`` around zero with codewords at their middles (midrise for even K,
    midtread for odd K); the outer cells extend to ±inf.
    """

    def distortion(step: float) -> float:
        codebook, thresholds = uniform_symmetric_cells(n_levels, step)
        return gaussian_distortion(thresholds, codebook)

    from scipy import optimize

    res = optimize.minimize_scalar(distortion, bounds=(1e-4, 8.0), method="bounded",
                                   options={"xatol": 1e-10})
    return float(res.x)


def uniform_symmetric_cells(n_levels: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Codebook (K,) and thresholds (K-1,) of a symmetric uniform quantizer with step ``step``."""
    codebook = (np.arange(n_levels) - (n_levels - 1) / 2.0) * step
    return codebook, 0.5 * (codebook[1:] + codebook[:-1])
