"""Learned quantizers (codebooks fitted to data): ``kmeans``, ``lloyd_max`` and joint ``vq``.

Their cells follow the data, so only the in-distribution error is small: ``error_bound`` is None.
"""

from __future__ import annotations

import numpy as np

from qbc.errors import InvalidValueError
from qbc.quantizers.base import Quantizer, register_quantizer
from qbc.quantizers.gaussian import lloyd_max_gaussian

#: k-means is fitted on at most this many values (a seeded subsample beyond it).
MAX_FIT_SAMPLES = 200_000


def _subsample(x: np.ndarray, seed: int) -> np.ndarray:
    if len(x) <= MAX_FIT_SAMPLES:
        return x
    rng = np.random.default_rng(seed)
    return x[rng.choice(len(x), MAX_FIT_SAMPLES, replace=False)]


def _check_n_bins(name: str, n_bins) -> None:
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise InvalidValueError(f"{name}: n_bins must be an integer >= 2, got {n_bins!r}")


def _check_kmeans_params(q: Quantizer) -> None:
    """n_init and seed of a k-means quantizer as qbc's errors (scikit-learn raised its own
    InvalidParameterError for ``n_init=0`` or ``seed=-1``, at fit time)."""
    _check_n_bins(q.name, q.n_bins)
    n_init, seed = q.n_init, q.seed
    if not isinstance(n_init, (int, np.integer)) or isinstance(n_init, bool) or n_init < 1:
        raise InvalidValueError(f"{q.name}: n_init must be an integer >= 1, got {n_init!r}")
    if (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)
            or not 0 <= seed < 2**32):
        raise InvalidValueError(f"{q.name}: seed must be an integer in [0, 2^32), got {seed!r}")


class _SortedCodebookQuantizer(Quantizer):
    """Scalar quantizer with sorted codewords; nearest-codeword encoding by binary search."""

    _fitted_attrs = ("codebook_",)

    @property
    def codebook(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.codebook_, dtype=np.float64)

    @property
    def thresholds(self) -> np.ndarray:
        """Cell boundaries (K-1,): midpoints between neighbouring codewords."""
        c = self.codebook
        return 0.5 * (c[1:] + c[:-1])

    def encode(self, x, rng=None) -> np.ndarray:
        x = self._as_float(x)
        return np.searchsorted(self.thresholds, x, side="right").astype(np.int64)


@register_quantizer("kmeans")
class KMeansQuantizer(_SortedCodebookQuantizer):
    """1-D k-means codebook (scikit-learn ``KMeans``), codewords sorted.

    Args:
        n_bins: number of codewords K.
        n_init: k-means restarts.
        seed: random state of the initialisation (and of the subsample beyond 200k values).
    """

    def __init__(self, n_bins: int = 64, n_init: int = 4, seed: int = 0):
        self.n_bins = n_bins
        self.n_init = n_init
        self.seed = seed

    def _validate_params(self) -> None:
        _check_kmeans_params(self)

    def _fit(self, x: np.ndarray | None) -> None:
        if x is None:
            raise InvalidValueError("kmeans: fit needs data")
        x = _subsample(x.reshape(-1), self.seed)
        n_unique = len(np.unique(x))
        if n_unique < self.n_bins:
            # Fewer distinct values than codewords: every value is its own codeword; the spare
            # codewords repeat the largest one (tokens stay valid, the vocabulary size fixed).
            values = np.unique(x)
            self.codebook_ = np.concatenate([values, np.full(self.n_bins - n_unique, values[-1])])
            return
        from sklearn.cluster import KMeans  # imported here: scikit-learn is slow to import

        km = KMeans(n_clusters=self.n_bins, n_init=self.n_init, random_state=self.seed)
        km.fit(x[:, None])
        self.codebook_ = np.sort(km.cluster_centers_[:, 0])

    @property
    def n_levels(self) -> int:
        return int(self.n_bins)


@register_quantizer("lloyd_max")
class LloydMaxQuantizer(_SortedCodebookQuantizer):
    """Minimum-MSE scalar quantizer with ``2**bits`` (or ``n_bins``) levels.

    ``design="gaussian"`` (default) designs it for N(0,1) in closed form and ignores the data;
    ``design="data"`` runs Lloyd iterations on the data (initialised at its quantiles).

    Args:
        bits: number of bits b (K = 2**b); ignored when ``n_bins`` is given.
        n_bins: number of levels K, for K not a power of two.
        design: "gaussian" or "data".
        max_iter, tol: Lloyd iterations for ``design="data"``.
    """

    def __init__(self, bits: int = 2, n_bins: int | None = None, design: str = "gaussian",
                 max_iter: int = 300, tol: float = 1e-9):
        self.bits = bits
        self.n_bins = n_bins
        self.design = design
        self.max_iter = max_iter
        self.tol = tol

    @property
    def n_levels(self) -> int:
        return int(self.n_bins) if self.n_bins is not None else 2 ** int(self.bits)

    def _validate_params(self) -> None:
        if self.n_bins is not None:
            _check_n_bins(self.name, self.n_bins)
        elif not isinstance(self.bits, (int, np.integer)) or not 1 <= self.bits <= 16:
            raise InvalidValueError(
                f"lloyd_max: bits must be an integer in 1..16, got {self.bits!r}"
            )
        if self.design not in ("gaussian", "data"):
            raise InvalidValueError(
                f"lloyd_max: design must be 'gaussian' or 'data', got {self.design!r}"
            )

    def _fit(self, x: np.ndarray | None) -> None:
        k = self.n_levels
        if self.design == "gaussian":
            self.codebook_ = lloyd_max_gaussian(k)[0]
            return
        if x is None:
            raise InvalidValueError("lloyd_max: design='data' needs data to fit")
        x = np.sort(x.reshape(-1))
        codebook = np.quantile(x, (np.arange(k) + 0.5) / k)
        # Prefix sums give every cell's mean in O(K log N) per iteration.
        csum = np.concatenate([[0.0], np.cumsum(x)])
        for _ in range(self.max_iter):
            edges = np.searchsorted(x, 0.5 * (codebook[1:] + codebook[:-1]))
            lo = np.concatenate([[0], edges])
            hi = np.concatenate([edges, [len(x)]])
            count = hi - lo
            means = np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), codebook)
            shift = np.max(np.abs(means - codebook))
            codebook = np.sort(means)
            if shift < self.tol:
                break
        self.codebook_ = codebook


@register_quantizer("vq")
class VectorQuantizer(Quantizer):
    """Joint vector quantization: k-means over whole action vectors (BeT-style), one token per
    row. Takes ``(N, D)``, gives ``(N,)`` tokens; ``decode`` gives ``(N, D)``.

    Distances are measured after scaling each dimension by its standard deviation, so that
    dimensions in large units do not dominate; codewords are stored in the original units.

    Args:
        n_bins: number of codewords K.
        n_init: k-means restarts.
        seed: random state.
        standardize: scale dimensions by their standard deviation before clustering.
    """

    joint = True
    _fitted_attrs = ("codebook_", "scale_")

    def __init__(self, n_bins: int = 64, n_init: int = 4, seed: int = 0,
                 standardize: bool = True):
        self.n_bins = n_bins
        self.n_init = n_init
        self.seed = seed
        self.standardize = standardize

    def _validate_params(self) -> None:
        _check_kmeans_params(self)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise InvalidValueError(f"vq: standardize must be true or false, got "
                                    f"{self.standardize!r}")

    def _fit(self, x: np.ndarray | None) -> None:
        if x is None:
            raise InvalidValueError("vq: fit needs data")
        if x.ndim != 2:
            raise InvalidValueError(f"vq: fit needs an (N, D) array, got shape {x.shape}")
        x = _subsample(x, self.seed)
        scale = x.std(axis=0) if self.standardize else np.ones(x.shape[1])
        scale = np.where(scale > 1e-12, scale, 1.0)
        z = x / scale
        n_unique = len(np.unique(z, axis=0))
        if n_unique < self.n_bins:
            values = np.unique(z, axis=0)
            z_codes = np.concatenate([values, np.repeat(values[-1:], self.n_bins - n_unique, 0)])
        else:
            from sklearn.cluster import KMeans

            km = KMeans(n_clusters=self.n_bins, n_init=self.n_init, random_state=self.seed).fit(z)
            z_codes = km.cluster_centers_
        self.scale_ = scale
        self.codebook_ = z_codes * scale

    @property
    def codebook(self) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.codebook_, dtype=np.float64)

    @property
    def n_levels(self) -> int:
        return int(self.n_bins)

    def encode(self, x, rng=None, chunk: int = 65_536) -> np.ndarray:
        x = self._as_float(x)
        if x.ndim != 2 or x.shape[1] != self.codebook.shape[1]:
            raise InvalidValueError(
                f"vq: encode needs (N, {self.codebook.shape[1]}) actions, got shape {x.shape}"
            )
        scale = np.asarray(self.scale_, dtype=np.float64)
        codes = self.codebook / scale
        code_sq = np.sum(codes**2, axis=1)
        out = np.empty(len(x), dtype=np.int64)
        for start in range(0, len(x), chunk):  # chunks bound the (chunk, K) distance matrix
            z = x[start:start + chunk] / scale
            dist = code_sq[None, :] - 2.0 * z @ codes.T
            out[start:start + chunk] = np.argmin(dist, axis=1)
        return out
