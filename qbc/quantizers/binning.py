"""Binning quantizers: ``uniform`` and ``smooth``, with a worst-case error bound inside their
range, and ``sign``, which has none (its two cells are unbounded: ``error_bound`` is None)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from qbc.errors import InvalidValueError
from qbc.infra.validate import Rule
from qbc.quantizers.base import Quantizer, get_quantizer_class, register_quantizer
from qbc.quantizers.gaussian import uniform_gaussian_step

#: Quantizers that fit their range to the data, so that a command's ``--quantile`` and
#: ``--range-margin`` apply.
QUANTILE_QUANTIZERS = ("uniform", "smooth")
#: The range of ``quantile``, [0, 0.5): commands check their ``--quantile`` flag with it.
QUANTILE_RANGE = Rule(lo=0, hi=0.5, hi_open=True)


def check_quantile(quantile: float, who: str = "quantile") -> float:
    """``quantile`` if it lies in [0, 0.5) (the range is fitted to the [q, 1-q] quantiles),
    else InvalidValueError naming ``who``."""
    if not QUANTILE_RANGE.holds(quantile):
        raise InvalidValueError(
            f"{who} must be in [0, 0.5), e.g. 0.01 for a 1%-99% range; got {quantile!r}")
    return quantile


#: The range of ``margin``: >= 0 (0 keeps the fitted range).
MARGIN_RANGE = Rule(lo=0)


def range_settings(quantizer: str) -> frozenset[str]:
    """Which of ``quantile`` and ``margin`` the quantizer registered as ``quantizer`` takes:
    both for those whose levels come from a range fitted to the data (uniform, smooth, or a
    user's quantizer built the same way), none for the others (kmeans, lloyd_max, vq, sign,
    theorem6). An unknown name raises UnknownNameError."""
    return frozenset(p for p in ("quantile", "margin") if p in _settings_of(quantizer))


def _settings_of(quantizer: str) -> Mapping[str, inspect.Parameter]:
    """The constructor parameters of the quantizer registered as ``quantizer``."""
    return inspect.signature(get_quantizer_class(quantizer).__init__).parameters


def quantile_params(quantizer: str, quantile: float, margin: float = 0.0) -> dict[str, float]:
    """The parameters a command's ``--quantile`` (and ``--range-margin``) give ``quantizer``:
    ``{"quantile": q}`` (plus ``"margin": m`` when m > 0) for the range-fitting quantizers
    (:func:`range_settings`), ``{}`` for the others, whose levels do not come from a range:
    a non-zero ``quantile`` or ``margin`` for one of those is refused (InvalidValueError), as
    it would be ignored."""
    takes = range_settings(quantizer)
    for value, name, flag, what in (
            (quantile, "quantile", "--quantile", "fits the range to the [q, 1-q] quantiles of "
                                                 "the actions"),
            (margin, "margin", "--range-margin", "widens a fitted range")):
        if value and name not in takes:
            raise InvalidValueError(
                f"{flag} {what}, which only {', '.join(QUANTILE_QUANTIZERS)} have; quantizer "
                f"{quantizer!r} would ignore it: leave {flag} out or use one of those")
    params = {}
    if "quantile" in takes:
        params["quantile"] = check_quantile(quantile, "--quantile")
    if margin:
        params["margin"] = check_margin(margin, "--range-margin")
    return params


def check_bins_flag(quantizer: str, bins: int, default: int = 64) -> None:
    """Refuse a command's ``--bins`` other than its ``default`` for a quantizer whose number of
    levels is not a setting (``sign``: always 2): it would be ignored."""
    if bins != default and "n_bins" not in _settings_of(quantizer):
        raise InvalidValueError(
            f"--bins {bins}: quantizer {quantizer!r} has a fixed number of levels and would "
            "ignore it: leave --bins out")


def check_margin(margin: float, who: str = "margin") -> float:
    """``margin`` if it is finite and >= 0, else InvalidValueError naming ``who``."""
    if not (MARGIN_RANGE.holds(margin) and np.isfinite(margin)):
        raise InvalidValueError(
            f"{who} must be >= 0, e.g. 0.5 to widen the fitted range by half its width on each "
            f"side; got {margin!r}")
    return float(margin)


class _RangeQuantizer(Quantizer):
    """Shared range handling: ``[low, high]`` given, or fitted from data (min/max or quantiles,
    widened by ``margin``), or (``design="gaussian"``) the MSE-optimal symmetric range for
    N(0,1)."""

    _fitted_attrs = ("low_", "high_")

    def __init__(self, n_bins: int = 64, low: float | None = None, high: float | None = None,
                 quantile: float = 0.0, design: str = "data", margin: float = 0.0):
        self.n_bins = n_bins
        self.low = low
        self.high = high
        self.quantile = quantile
        self.design = design
        self.margin = margin

    def _validate_params(self) -> None:
        if not isinstance(self.n_bins, (int, np.integer)) or self.n_bins < 2:
            raise InvalidValueError(
                f"{self.name}: n_bins must be an integer >= 2, got {self.n_bins!r}"
            )
        check_quantile(self.quantile, f"{self.name}: quantile")
        check_margin(self.margin, f"{self.name}: margin")
        if self.design not in ("data", "gaussian"):
            raise InvalidValueError(
                f"{self.name}: design must be 'data' or 'gaussian', got {self.design!r}"
            )
        if (self.low is None) != (self.high is None):
            raise InvalidValueError(f"{self.name}: give both low and high, or neither")
        if self.low is not None and not (np.isfinite(self.low) and np.isfinite(self.high)
                                         and self.low < self.high):
            raise InvalidValueError(
                f"{self.name}: need finite low < high, got low={self.low}, high={self.high}"
            )

    def _fit(self, x: np.ndarray | None) -> None:
        if self.low is not None:
            low, high = float(self.low), float(self.high)
        elif self.design == "gaussian":
            low, high = self._gaussian_range()
        elif x is None:
            raise InvalidValueError(
                f"{self.name}: fit needs data, or give low and high (or design='gaussian')"
            )
        else:
            low, high = (float(v) for v in np.quantile(x, [self.quantile, 1.0 - self.quantile]))
            if high - low < 1e-12:  # constant data: open a tiny range around it
                pad = 1e-6 * max(1.0, abs(low))
                low, high = low - pad, high + pad
            widen = float(self.margin) * (high - low) / 2
            low, high = low - widen, high + widen
        self.low_, self.high_ = low, high

    def _gaussian_range(self) -> tuple[float, float]:
        raise NotImplementedError

    def _check_fitted_state(self) -> None:
        low, high = self.low_, self.high_
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float))
                and np.isfinite(low) and np.isfinite(high) and low < high):
            raise InvalidValueError(
                f"{self.name}: fitted range needs finite low < high, got {low!r}, {high!r}")

    @property
    def range(self) -> tuple[float, float]:
        self._check_fitted()
        return (self.low_, self.high_)

    @property
    def n_levels(self) -> int:
        return int(self.n_bins)


@register_quantizer("uniform")
class UniformQuantizer(_RangeQuantizer):
    """K equal cells over ``[low, high]``, codewords at the cell centres.

    Values outside the range fall into the edge cells. ``error_bound = (high - low) / (2K)``.
    ``design="gaussian"`` uses the MSE-optimal step Δ for N(0,1) (range ±KΔ/2).

    Args:
        n_bins: number of cells K (>= 2).
        low, high: the range; fitted from data when None.
        quantile: fit the range to the [q, 1-q] quantiles of the data instead of min/max.
        design: "data" (default) or "gaussian".
        margin: widen a range fitted from data by ``margin`` x its half-width on each side
            (0.5: 1.5x the width, same centre), so that actions somewhat beyond the data keep
            their own codewords instead of being clipped to the edge cells; ignored when
            ``low``/``high`` are given or ``design="gaussian"``.
    """

    def _gaussian_range(self) -> tuple[float, float]:
        half = 0.5 * self.n_bins * uniform_gaussian_step(self.n_bins)
        return -half, half

    @property
    def bin_width(self) -> float:
        self._check_fitted()
        return (self.high_ - self.low_) / self.n_bins

    @property
    def codebook(self) -> np.ndarray:
        return self.low_ + (np.arange(self.n_bins) + 0.5) * self.bin_width

    @property
    def error_bound(self) -> float:
        return 0.5 * self.bin_width

    def encode(self, x, rng=None) -> np.ndarray:
        x = self._as_float(x)
        idx = np.floor((x - self.low_) / self.bin_width)
        return np.clip(idx, 0, self.n_bins - 1).astype(np.int64)


@register_quantizer("smooth")
class SmoothQuantizer(_RangeQuantizer):
    """Smooth binning: K bin centres spaced evenly from ``low`` to ``high`` (both included);
    ``encode(x, rng=...)`` rounds stochastically to one of the two nearest centres with
    probabilities linear in the distance, so ``E[decode(encode(x, rng))] = x`` for x in range and
    the token distribution moves by at most ``|x - x'| / bin_width`` in total variation.

    Without ``rng``, ``encode`` rounds to the nearest centre (``error_bound = bin_width / 2``);
    a stochastic draw is off by less than ``bin_width`` (:attr:`stochastic_error_bound`).
    ``soft_targets(x)`` gives the two-hot distribution used as a log-loss target.

    Args: as for ``uniform``.
    """

    stochastic = True

    def _gaussian_range(self) -> tuple[float, float]:
        half = 0.5 * (self.n_bins - 1) * uniform_gaussian_step(self.n_bins)
        return -half, half

    @property
    def bin_width(self) -> float:
        self._check_fitted()
        return (self.high_ - self.low_) / (self.n_bins - 1)

    @property
    def codebook(self) -> np.ndarray:
        return self.low_ + np.arange(self.n_bins) * self.bin_width

    @property
    def error_bound(self) -> float:
        return 0.5 * self.bin_width

    @property
    def stochastic_error_bound(self) -> float:
        return self.bin_width

    def _lower_and_fraction(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the lower neighbouring centre, and the fraction of the way to the next one."""
        t = np.clip((x - self.low_) / self.bin_width, 0.0, self.n_bins - 1)
        lower = np.minimum(np.floor(t), self.n_bins - 2)
        return lower.astype(np.int64), t - lower

    def encode(self, x, rng: np.random.Generator | None = None) -> np.ndarray:
        x = self._as_float(x)
        if rng is None:
            t = np.clip(np.rint((x - self.low_) / self.bin_width), 0, self.n_bins - 1)
            return t.astype(np.int64)
        lower, frac = self._lower_and_fraction(x)
        return lower + (rng.random(x.shape) < frac).astype(np.int64)

    def soft_targets(self, x) -> np.ndarray:
        """Two-hot token distribution of ``encode(x, rng)``: shape ``x.shape + (n_bins,)``,
        float32, rows sum to 1, mass only on the two neighbouring centres."""
        x = self._as_float(x)
        lower, frac = self._lower_and_fraction(x)
        out = np.zeros(x.shape + (self.n_bins,), dtype=np.float32)
        np.put_along_axis(out, lower[..., None], (1.0 - frac)[..., None], axis=-1)
        upper = lower + 1
        np.put_along_axis(out, upper[..., None],
                          np.take_along_axis(out, upper[..., None], -1) + frac[..., None], axis=-1)
        return out


@register_quantizer("sign")
class SignQuantizer(Quantizer):
    """Binary quantizer: token 1 for x >= 0 (codeword ``+scale``), token 0 otherwise (``-scale``).

    Args:
        scale: magnitude of the two codewords.
        fit_scale: if True, ``fit`` sets the scale to mean |x| (the L2-optimal binary scale).
    """

    _fitted_attrs = ("scale_",)

    def __init__(self, scale: float = 1.0, fit_scale: bool = False):
        self.scale = scale
        self.fit_scale = fit_scale

    def _validate_params(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise InvalidValueError(f"sign: scale must be positive, got {self.scale!r}")

    def _check_fitted_state(self) -> None:
        s = self.scale_
        if not (isinstance(s, (int, float)) and np.isfinite(s) and s > 0):
            raise InvalidValueError(f"sign: fitted scale must be positive, got {s!r}")

    def _fit(self, x: np.ndarray | None) -> None:
        if self.fit_scale and x is not None:
            self.scale_ = float(np.mean(np.abs(x))) or float(self.scale)
        else:
            self.scale_ = float(self.scale)

    @property
    def codebook(self) -> np.ndarray:
        self._check_fitted()
        return np.array([-self.scale_, self.scale_])

    @property
    def n_levels(self) -> int:
        return 2

    def encode(self, x, rng=None) -> np.ndarray:
        return (self._as_float(x) >= 0).astype(np.int64)
