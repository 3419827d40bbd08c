"""Inner-product (cosine) estimators from quantized random projections.

For unit-norm rows ``x, y`` with cosine ``ρ`` and projections ``u_j = xᵀr_j``, ``v_j = yᵀr_j``:

- raw estimator ``ρ̂ = (1/k) Σ_j Q(u_j) Q(v_j)``, with mean ``α(ρ) = E[Q(u)Q(v)]`` (biased);
- debiased estimator ``ρ̂_d = α⁻¹(ρ̂)`` (α is strictly increasing on [-1, 1]);
- delta-method variance ``Var(ρ̂_d) ≈ Var(Q(u)Q(v)) / (k α'(ρ)²)``.

``α``, ``α'`` and ``E[Q(u)²Q(v)²]`` are exact (see :mod:`qbc.compressive.moments`); ``α⁻¹`` is a
monotone (PCHIP) interpolant of ``α`` tabulated on a grid dense near ±1.

>>> est = InnerProductEstimator(projection_quantizer("lloyd_max", bits=2))
>>> rho_hat = est.debias(est.raw(ZQx, ZQy))      # ZQ*: (..., k) quantized projections
>>> est.variance(0.9, k=64)                      # delta-method variance of rho_hat at ρ=0.9
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qbc.compressive.moments import bivariate_step_moment
from qbc.compressive.projection import projection_quantizer, quantizer_cells
from qbc.errors import InvalidValueError
from qbc.quantizers import Quantizer

if TYPE_CHECKING:
    from scipy.interpolate import PchipInterpolator


class InnerProductEstimator:
    """Raw and debiased inner-product estimators for one quantizer (None: no quantization).

    Args:
        quantizer: a fitted scalar quantizer (designed for N(0,1)), or None for full precision,
            where ``α(ρ) = ρ`` and ``Var(uv) = 1 + ρ²``.
        grid_size: points of the ρ grid that tabulates α for the inversion.
    """

    def __init__(self, quantizer: Quantizer | None, grid_size: int = 4001):
        self.quantizer = quantizer
        self.grid_size = grid_size
        if quantizer is None:
            return
        self.codebook_, self.thresholds_ = quantizer_cells(quantizer)
        self._inverse = None  # tabulated on first use by debias()

    def _tabulate(self) -> PchipInterpolator:
        """α on a ρ grid and its monotone inverse (built once, on first use)."""
        if self._inverse is None:
            # sin of a uniform angle grid: dense near ±1, where α bends most.
            self.rho_grid_ = np.sin(np.linspace(-0.5 * np.pi, 0.5 * np.pi, self.grid_size))
            self.rho_grid_[0], self.rho_grid_[-1] = -1.0, 1.0
            self.alpha_grid_ = self.alpha(self.rho_grid_)
            if np.any(np.diff(self.alpha_grid_) <= 0):
                raise InvalidValueError(
                    f"α(ρ) of quantizer {self.quantizer.name!r} is not strictly increasing; it "
                    "cannot be debiased (use a quantizer with increasing codewords)"
                )
            from scipy.interpolate import PchipInterpolator  # deferred, as in moments.py

            self._inverse = PchipInterpolator(self.alpha_grid_, self.rho_grid_,
                                              extrapolate=False)
        return self._inverse

    # -- exact moments -------------------------------------------------------------------------
    def alpha(self, rho: np.ndarray | float) -> np.ndarray:
        """``α(ρ) = E[Q(u)Q(v)]`` for standard bivariate normal (u, v) with correlation ρ."""
        if self.quantizer is None:
            return np.asarray(rho, dtype=np.float64)
        c = self.codebook_
        return bivariate_step_moment(c, c, self.thresholds_, _check_rho(rho))

    def alpha_prime(self, rho: np.ndarray | float) -> np.ndarray:
        """``α'(ρ)``, finite for |ρ| < 1."""
        if self.quantizer is None:
            return np.ones_like(np.asarray(rho, dtype=np.float64))
        c = self.codebook_
        return bivariate_step_moment(c, c, self.thresholds_, _check_rho(rho), derivative=True)

    def product_variance(self, rho: np.ndarray | float) -> np.ndarray:
        """``Var(Q(u)Q(v)) = E[Q(u)²Q(v)²] - α(ρ)²`` (one projection)."""
        rho = _check_rho(rho)
        if self.quantizer is None:
            return 1.0 + rho**2
        c2 = self.codebook_**2
        return bivariate_step_moment(c2, c2, self.thresholds_, rho) - self.alpha(rho) ** 2

    # -- estimators ----------------------------------------------------------------------------
    @staticmethod
    def raw(zq_x: np.ndarray, zq_y: np.ndarray) -> np.ndarray:
        """``(1/k) Σ_j zq_x[..., j] zq_y[..., j]`` for quantized projections (..., k) each."""
        zq_x, zq_y = np.asarray(zq_x, np.float64), np.asarray(zq_y, np.float64)
        if zq_x.shape[-1] != zq_y.shape[-1]:
            raise InvalidValueError(
                f"projections differ in k: {zq_x.shape[-1]} vs {zq_y.shape[-1]}"
            )
        return np.einsum("...j,...j->...", zq_x, zq_y) / zq_x.shape[-1]

    def debias(self, raw: np.ndarray | float) -> np.ndarray:
        """``α⁻¹(raw)``: the debiased cosine estimate, clipped to [-1, 1]."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.quantizer is None:
            return np.clip(raw, -1.0, 1.0)
        inverse = self._tabulate()
        lo, hi = self.alpha_grid_[0], self.alpha_grid_[-1]
        out = inverse(np.clip(raw, lo, hi))
        return np.clip(out, -1.0, 1.0)

    def estimate(self, zq_x: np.ndarray, zq_y: np.ndarray) -> np.ndarray:
        """The debiased cosine of the rows behind two quantized projections (..., k)."""
        return self.debias(self.raw(zq_x, zq_y))

    # -- variances -----------------------------------------------------------------------------
    def raw_variance(self, rho: np.ndarray | float, k: int) -> np.ndarray:
        """Exact variance of the raw estimator from ``k`` projections."""
        return self.product_variance(rho) / k

    def variance(self, rho: np.ndarray | float, k: int) -> np.ndarray:
        """Delta-method variance of the debiased estimator: ``Var(Q(u)Q(v)) / (k α'(ρ)²)``."""
        return self.product_variance(rho) / (k * self.alpha_prime(rho) ** 2)

    def bias(self, rho: np.ndarray | float, k: int, step: float = 1e-4) -> np.ndarray:
        """Second-order (O(1/k)) bias of the debiased estimator, ``E ρ̂_d - ρ ≈ ½ g''(α) Var(ρ̂)``
        with ``g = α⁻¹``, i.e. ``-α''(ρ) Var(Q(u)Q(v)) / (2 k α'(ρ)³)``; for |ρ| < 1 - step.
        ``α''`` is a central difference of the exact ``α'``."""
        rho = _check_rho(rho)
        if self.quantizer is None:
            return np.zeros_like(rho)
        a2 = (self.alpha_prime(rho + step) - self.alpha_prime(rho - step)) / (2 * step)
        return -a2 * self.product_variance(rho) / (2 * k * self.alpha_prime(rho) ** 3)


def one_bit_variance(rho: np.ndarray | float, k: int = 1) -> np.ndarray:
    """Closed form of the debiased 1-bit (sign) estimator's delta-method variance:
    ``(π²/4)(1 - ρ²)(1 - ((2/π) arcsin ρ)²) / k``."""
    rho = np.asarray(rho, dtype=np.float64)
    return (np.pi**2 / 4) * (1 - rho**2) * (1 - (2 / np.pi * np.arcsin(rho)) ** 2) / k


def _check_rho(rho: np.ndarray | float) -> np.ndarray:
    rho = np.asarray(rho, dtype=np.float64)
    if rho.size and (np.nanmax(np.abs(rho)) > 1.0 or np.isnan(rho).any()):
        raise InvalidValueError("correlations ρ must lie in [-1, 1]")
    return rho


def variance_table(quantizers: list[str], bits: list[int], rhos: list[float],
                   k: int = 1) -> list[dict]:
    """Delta-method variance of the debiased estimator (times ``k``: per projection) for each
    quantizer, bit depth and ρ, plus full precision (``bits = "full"``, ``1 + ρ²``).

    Returns dicts ``quantizer, bits, rho, variance``: the numbers behind the expected pattern
    (qbc's reading of the paper's analysis, not a result quoted from it; see docs/theory.md §4)
    that the better quantizer for nearest-neighbour search depends on the similarity level.
    """
    out = []
    for name in quantizers:
        for b in bits:
            est = InnerProductEstimator(projection_quantizer(name, b))
            for rho, v in zip(rhos, est.variance(np.asarray(rhos, float), k), strict=True):
                out.append({"quantizer": name, "bits": b, "rho": float(rho), "variance": float(v)})
    full = InnerProductEstimator(None).variance(np.asarray(rhos, float), k)
    out += [{"quantizer": "none", "bits": "full", "rho": float(r), "variance": float(v)}
            for r, v in zip(rhos, full, strict=True)]
    return out
