"""Gaussian random projections of unit-norm rows, and their b-bit quantization.

Rows are scaled to unit Euclidean norm and multiplied by ``R ∈ R^{d×k}`` with iid N(0,1)
entries, so every projected coordinate of every row is exactly N(0,1) and two rows with cosine
``ρ`` give coordinate pairs that are standard bivariate normal with correlation ``ρ``. That is why
the quantizers are designed for N(0,1) and need no data.

>>> proj = GaussianProjection(k=64, seed=0).fit(X)       # X: (N, d)
>>> Z = proj.transform(X)                                # (N, 64), float32, N(0,1) coordinates
>>> q = projection_quantizer("lloyd_max", bits=2)
>>> ZQ = q.quantize(Z)                                   # (N, 64), four values
"""

from __future__ import annotations

import numpy as np

from qbc.errors import InvalidValueError
from qbc.quantizers import Quantizer, make_quantizer

#: Quantizer names with a closed-form N(0,1) design; other registry names are fitted to a sample.
GAUSSIAN_DESIGNS = ("lloyd_max", "uniform")
#: Size and seed of the N(0,1) sample that fits quantizers without a closed-form design.
GAUSSIAN_SAMPLE_SIZE = 50_000
GAUSSIAN_SAMPLE_SEED = 12345


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale each row of ``x`` (N, d) to unit Euclidean norm; float32 (N, d).

    Raises :class:`InvalidValueError` for all-zero rows (they have no direction).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidValueError(f"expected a 2-D (N, d) array of rows, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = np.flatnonzero(norms[:, 0] == 0)
    if bad.size:
        raise InvalidValueError(
            f"{bad.size} rows are all zero (first: row {bad[0]}) and cannot be normalised; "
            "drop them or centre the features differently"
        )
    return (x / norms).astype(np.float32)


class GaussianProjection:
    """``x ↦ (x / ‖x‖) R`` with ``R`` (d, k) iid N(0,1), drawn from ``seed`` at :meth:`fit`.

    Args:
        k: number of projections (output dimension).
        seed: seed of the numpy Generator that draws ``R``.
    """

    def __init__(self, k: int = 64, seed: int = 0):
        self.k = k
        self.seed = seed

    def fit(self, x: np.ndarray | int) -> GaussianProjection:
        """Draw ``R`` for inputs of dimension ``d`` (an int, or the width of an (N, d) array)."""
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise InvalidValueError(f"k (number of projections) must be an integer >= 1, got "
                                    f"{self.k!r}")
        d = int(x) if np.isscalar(x) else int(np.shape(x)[1])
        if d < 1:
            raise InvalidValueError(f"input dimension must be >= 1, got {d}")
        rng = np.random.default_rng(self.seed)
        self.matrix_ = rng.standard_normal((d, int(self.k)), dtype=np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(N, d) rows -> (N, k) float32 projections of the unit-normalised rows."""
        if not hasattr(self, "matrix_"):
            raise InvalidValueError("GaussianProjection is not fitted; call fit(X) first")
        x = normalize_rows(x)
        if x.shape[1] != self.matrix_.shape[0]:
            raise InvalidValueError(
                f"rows have {x.shape[1]} features but the projection was drawn for "
                f"{self.matrix_.shape[0]}"
            )
        return x @ self.matrix_


def projection_quantizer(spec: str | dict | Quantizer, bits: int) -> Quantizer:
    """A fitted b-bit scalar quantizer designed for N(0,1) projections.

    ``"lloyd_max"``: minimum-MSE quantizer for N(0,1) (closed form). ``"uniform"``: 2**b equal
    cells with the MSE-optimal step for N(0,1). Any other registry name (or dict) is built with
    ``n_bins=2**bits`` (unless the dict sets it) and fitted to a fixed-seed N(0,1) sample; a fitted
    instance is returned as is.
    """
    if isinstance(spec, Quantizer):
        return spec if spec.is_fitted else spec.fit(_gaussian_sample())
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 12:
        raise InvalidValueError(f"bits must be an integer in 1..12, got {bits!r}")
    if spec == "lloyd_max":
        return make_quantizer("lloyd_max", bits=int(bits)).fit()
    if spec == "uniform":
        return make_quantizer("uniform", n_bins=2 ** int(bits), design="gaussian").fit()
    if spec == "sign":
        if bits != 1:
            raise InvalidValueError(f"the sign quantizer has 1 bit, got bits={bits}")
        return make_quantizer("sign").fit()
    params = {} if isinstance(spec, dict) and "n_bins" in spec else {"n_bins": 2 ** int(bits)}
    q = make_quantizer(spec, **params)
    if q.joint:
        raise InvalidValueError(f"quantizer {q.name!r} is joint (vector); projections need a "
                                "scalar quantizer such as lloyd_max or uniform")
    return q.fit(_gaussian_sample())


def quantizer_cells(q: Quantizer) -> tuple[np.ndarray, np.ndarray]:
    """``(codebook (K,), thresholds (K-1,))`` of a fitted scalar quantizer, sorted.

    The registry's scalar quantizers all put cell boundaries midway between neighbouring codewords
    (``uniform``'s cell edges coincide with them); a quantizer that exposes ``thresholds`` is
    taken at its word.
    """
    codebook = np.asarray(q.codebook, dtype=np.float64)
    if codebook.ndim != 1:
        raise InvalidValueError(f"quantizer {q.name!r} is not scalar")
    order = np.argsort(codebook, kind="stable")
    codebook = codebook[order]
    thresholds = getattr(q, "thresholds", None)
    if thresholds is None:
        thresholds = 0.5 * (codebook[1:] + codebook[:-1])
    return codebook, np.asarray(thresholds, dtype=np.float64)


def _gaussian_sample() -> np.ndarray:
    rng = np.random.default_rng(GAUSSIAN_SAMPLE_SEED)
    return rng.standard_normal(GAUSSIAN_SAMPLE_SIZE)
