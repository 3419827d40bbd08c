"""The quantizer base class and the registry every part of qbc uses.

A quantizer maps real values to integer tokens in ``[0, n_levels)`` and tokens back to codewords.
Scalar quantizers work element-wise on arrays of any shape; joint (vector) quantizers take
``(N, D)`` arrays and give ``(N,)`` tokens. Numpy in, numpy out, no Python loop over samples.

Conventions follow scikit-learn estimators: constructor arguments are stored as given, ``fit``
returns ``self``, learned attributes end in ``_``. Unlike scikit-learn, the arguments are checked
(their annotated kinds, then :meth:`Quantizer._validate_params`) as soon as a quantizer is made,
and again by :meth:`Quantizer.fit` (an attribute may have been changed in between).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from qbc.errors import InvalidValueError, NotFittedError
from qbc.infra.validate import check_argument_types
from qbc.registry import Registry, json_value

#: The quantizers by name, each class registered in its own module (:func:`register_quantizer`).
QUANTIZERS: Registry[type[Quantizer]] = Registry("quantizer")
_F32_MAX = float(np.finfo(np.float32).max)


def as_real_array(x: Any, what: str = "values", dtype: Any = np.float64,
                  booleans: bool = False) -> np.ndarray:
    """``x`` as an array of ``dtype``; ragged lists and non-numeric dtypes (complex, strings,
    objects, and booleans unless ``booleans``) raise :class:`InvalidValueError` instead of
    numpy's ValueError or a silent cast. Values beyond ``dtype``'s range become inf without
    numpy's overflow warning (the caller's finiteness check names them)."""
    try:
        arr = np.asarray(x)
    except ValueError as exc:
        raise InvalidValueError(f"{what} must be a rectangular array of numbers "
                                f"({exc})") from None
    if arr.dtype.kind not in ("biuf" if booleans else "iuf"):
        raise InvalidValueError(
            f"{what} must be real numbers, got an array of dtype {arr.dtype}; convert them to "
            "float32 first")
    with np.errstate(over="ignore"):
        return arr.astype(dtype)


def action_matrix(x: Any, what: str = "actions", non_empty: bool = False) -> np.ndarray:
    """``x`` as a real, finite (N, D) float64 array with D >= 1 (a 1-D array is N actions of one
    dimension). Refused in one line naming ``what``: not real numbers, not 1-D or 2-D, no
    dimensions, no rows (only with ``non_empty``: an empty batch is a valid input to encode), or
    NaN/inf values (their count and first rows)."""
    arr = as_real_array(x, what)
    shape = arr.shape
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or (non_empty and arr.size == 0):
        kind = "a non-empty (N, D)" if non_empty else "an (N, D)"
        raise InvalidValueError(f"{what} must be {kind} array, got shape {shape}")
    if arr.shape[1] == 0:
        raise InvalidValueError(f"{what} have 0 dimensions (shape {shape}); give (N, D), D >= 1")
    finite = np.isfinite(arr)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        raise InvalidValueError(f"{what} hold {int((~finite).sum())} non-finite values (NaN or "
                                f"inf) in {len(rows)} rows (first rows: {rows[:5].tolist()}); "
                                "drop or repair them")
    return arr


class _CheckedWhenMade(type):
    """Makes every quantizer check its parameters once its ``__init__`` (a subclass's whole
    chain of them) has run, so that ``make_quantizer("uniform", quantile="x")`` or
    ``SmoothQuantizer(n_bins=1)`` is refused where it is made, not at ``fit`` or never."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        quantizer = super().__call__(*args, **kwargs)
        quantizer._check_params()
        return quantizer


class Quantizer(metaclass=_CheckedWhenMade):
    """Base class. Subclasses set ``name`` (via :func:`register_quantizer`) and implement
    ``_fit``, ``encode``, ``codebook`` and the learned attributes listed in ``_fitted_attrs``;
    parameters out of range raise InvalidValueError from ``_validate_params`` (their kinds, as
    annotated in ``__init__``, are checked before it)."""

    name: ClassVar[str] = ""
    #: True for vector quantizers that take (N, D) and give one token per row.
    joint: ClassVar[bool] = False
    #: True when ``encode(x, rng=...)`` draws tokens at random (smooth binning).
    stochastic: ClassVar[bool] = False
    #: Learned attributes (ending in ``_``) saved by ``state_dict``.
    _fitted_attrs: ClassVar[tuple[str, ...]] = ()

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, x: np.ndarray | None = None) -> Quantizer:
        """Fit the quantizer to data ``x`` (any shape for scalar quantizers, (N, D) for joint
        ones) and return ``self``. Quantizers fully fixed by their parameters accept ``None``."""
        self._validate_params()
        if x is not None:
            x = as_real_array(x, f"{self.name}: fitting data")
            if x.size == 0:
                raise InvalidValueError(f"{self.name}: cannot fit on an empty array")
            if not np.all(np.isfinite(x)):
                bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
                raise InvalidValueError(
                    f"{self.name}: {bad} non-finite values (NaN or inf) in the fitting data; "
                    "drop or repair them first"
                )
            if np.abs(x).max() > _F32_MAX:
                raise InvalidValueError(
                    f"{self.name}: fitting data reach {np.abs(x).max():.3g}, beyond the float32 "
                    f"range ({_F32_MAX:.3g}) that codewords are returned in; rescale the data"
                )
        self._fit(x)
        return self

    def _check_params(self) -> None:
        """The parameters' kinds (as annotated in ``__init__``: ``quantile="x"`` for a float),
        then their ranges (:meth:`_validate_params`), as InvalidValueError naming the
        quantizer."""
        init = type(self).__init__
        given = {p: getattr(self, p) for p in inspect.signature(init).parameters
                 if p != "self" and hasattr(self, p)}
        check_argument_types(init, given, self.name or type(self).__name__)
        self._validate_params()

    def _validate_params(self) -> None:
        """Raise :class:`InvalidValueError` for parameters out of range."""

    def _fit(self, x: np.ndarray | None) -> None:
        raise NotImplementedError

    @property
    def is_fitted(self) -> bool:
        return all(hasattr(self, a) for a in self._fitted_attrs)

    def _check_fitted_state(self) -> None:
        """Raise InvalidValueError unless loaded fitted attributes are in range (e.g. low <
        high); subclasses with such constraints override it."""

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"quantizer {self.name!r} is not fitted; call fit(x) first")

    # -- coding ----------------------------------------------------------------------------
    def encode(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Values -> int64 tokens in ``[0, n_levels)``, same shape (scalar) or (N,) (joint)."""
        raise NotImplementedError

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Tokens -> float32 codewords: same shape (scalar) or (N, D) (joint)."""
        self._check_fitted()
        tokens = check_tokens(tokens, self.n_levels, f"{self.name}: ")
        return self.codebook[tokens].astype(np.float32)

    def quantize(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``decode(encode(x))``: the quantized values, float32."""
        return self.decode(self.encode(x, rng=rng))

    @property
    def codebook(self) -> np.ndarray:
        """Codewords, ``(n_levels,)`` for scalar or ``(n_levels, D)`` for joint quantizers."""
        raise NotImplementedError

    @property
    def n_levels(self) -> int:
        """Number of distinct tokens."""
        return int(len(self.codebook))

    @property
    def error_bound(self) -> float | None:
        """Worst-case ``|decode(encode(x)) - x|`` for x inside :attr:`range`, or None where no
        worst-case bound exists (learned quantizers, unbounded cells)."""
        return None

    @property
    def range(self) -> tuple[float, float] | None:
        """``(low, high)`` inside which :attr:`error_bound` holds; values outside are clipped to
        the edge cells. None for quantizers without a finite range."""
        return None

    def _as_float(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        x = as_real_array(x, f"{self.name}: values to encode")
        if np.isnan(x).any():
            raise InvalidValueError(
                f"{self.name}: {int(np.isnan(x).sum())} NaN values cannot be encoded"
            )
        return x

    # -- serialisation ---------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as given (JSON-safe)."""
        sig = inspect.signature(type(self).__init__)
        return {p: json_value(getattr(self, p)) for p in sig.parameters if p != "self"}

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe dict: ``{"name", "params", "fitted"}``; exact round trip through
        :meth:`from_state_dict` (floats are stored as Python floats, i.e. exactly)."""
        fitted = ({a: json_value(getattr(self, a)) for a in self._fitted_attrs}
                  if self.is_fitted else None)
        return {"name": self.name, "params": self.get_params(), "fitted": fitted}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Quantizer:
        """Rebuild a quantizer (of whatever registered class ``state["name"]`` names)."""
        try:
            klass = QUANTIZERS[state["name"]] if cls is Quantizer else cls
            q = klass(**state.get("params", {}))
            fitted = state.get("fitted")
            if fitted is not None:
                q._check_params()
                for attr in klass._fitted_attrs:
                    value = fitted[attr]
                    setattr(q, attr, np.asarray(value) if isinstance(value, list) else value)
                q._check_fitted_state()
        except KeyError as exc:
            raise InvalidValueError(f"quantizer state is missing the entry {exc}") from None
        except TypeError as exc:
            raise InvalidValueError(f"quantizer state has bad parameters: {exc}") from None
        return q

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def check_tokens(tokens: Any, n_levels: int, prefix: str = "") -> np.ndarray:
    """``tokens`` as an integer array with every value in ``[0, n_levels)``, or
    InvalidValueError (its message starts with ``prefix``)."""
    tokens = np.asarray(tokens)
    if not np.issubdtype(tokens.dtype, np.integer):
        raise InvalidValueError(f"{prefix}tokens must be integers, got {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= n_levels):
        raise InvalidValueError(
            f"{prefix}tokens must lie in [0, {n_levels}), "
            f"got values in [{tokens.min()}, {tokens.max()}]"
        )
    return tokens


def check_probabilities(probs: Any, shape: tuple[int, int], what: str = "probabilities"
                        ) -> np.ndarray:
    """``probs`` as a float64 (N, *shape) array of distributions over its last axis: real,
    finite, non-negative, each summing to 1 (within 1e-3, for float32 and float16 softmax
    outputs), or InvalidValueError saying which (numpy raised its own ValueError for a wrong
    shape, and NaN or negative entries gave NaN or meaningless means without a word)."""
    arr = as_real_array(probs, what)
    if arr.ndim != 3 or arr.shape[1:] != tuple(shape):
        raise InvalidValueError(f"{what} must have shape (N, {shape[0]}, {shape[1]}) (one "
                                f"distribution over the tokens per position), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise InvalidValueError(f"{what} hold {int((~np.isfinite(arr)).sum())} non-finite and "
                                f"{int((arr < 0).sum())} negative values; give probabilities")
    sums = arr.sum(axis=-1)
    if arr.size and np.abs(sums - 1).max() > 1e-3:
        raise InvalidValueError(f"{what} must sum to 1 over the tokens of each position; sums "
                                f"range over [{sums.min():.4g}, {sums.max():.4g}] (normalise "
                                "them, e.g. with a softmax)")
    return arr


def register_quantizer(name: str):
    """Class decorator: register a :class:`Quantizer` subclass under ``name``."""
    return QUANTIZERS.register(name)


def available_quantizers() -> list[str]:
    """Registered quantizer names, sorted."""
    return QUANTIZERS.names()


def get_quantizer_class(name: str) -> type[Quantizer]:
    """The class registered under ``name``; unknown names list the valid ones."""
    return QUANTIZERS.get(name)


def make_quantizer(spec: str | dict | Quantizer, **params: Any) -> Quantizer:
    """Resolve a quantizer from a name, a dict or an instance (Larq style).

    ``make_quantizer("uniform", n_bins=16)``; ``make_quantizer({"name": "uniform", "n_bins": 16})``;
    a state dict (with ``params``/``fitted``) restores a fitted quantizer; an instance is returned
    unchanged (``params`` must then be empty).
    """
    if isinstance(spec, Quantizer):
        if params:
            raise InvalidValueError("cannot pass parameters together with a quantizer instance")
        return spec
    if isinstance(spec, dict):
        if "params" in spec or "fitted" in spec:
            return Quantizer.from_state_dict(spec)
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise InvalidValueError("a quantizer dict needs a 'name' entry")
        return make_quantizer(name, **{**spec, **params})
    if not isinstance(spec, str):
        raise InvalidValueError(f"cannot make a quantizer from {type(spec).__name__}")
    klass = get_quantizer_class(spec)
    try:
        return klass(**params)
    except TypeError as exc:
        allowed = [p for p in inspect.signature(klass.__init__).parameters if p != "self"]
        raise InvalidValueError(
            f"bad parameters for quantizer {spec!r} ({exc}); it takes {', '.join(allowed)}"
        ) from None


def tokenizer_params(quantizer: str, n_bins: int, per_dim: bool,
                     quantizer_params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters an :class:`~qbc.tokenizer.ActionTokenizer` with these settings gives each
    of its quantizers, after checking the settings (InvalidValueError, UnknownNameError): their
    kinds as annotated here (``per_dim="no"`` would be taken as true), the quantizer's name and
    its parameters (by making one)."""
    check_argument_types(tokenizer_params, {"quantizer": quantizer, "n_bins": n_bins,
                                            "per_dim": per_dim}, "ActionTokenizer")
    if quantizer_params is not None and not (isinstance(quantizer_params, dict) and all(
            isinstance(k, str) for k in quantizer_params)):
        raise InvalidValueError("ActionTokenizer: quantizer_params must be a dict of parameter "
                                f"names to values, got {quantizer_params!r}")
    params = dict(quantizer_params or {})
    klass = get_quantizer_class(quantizer)
    if "n_bins" in inspect.signature(klass.__init__).parameters:
        params["n_bins"] = n_bins
    make_quantizer(quantizer, **params)
    return params


def serialize_quantizer(q: Quantizer) -> dict[str, Any]:
    """Alias of ``q.state_dict()``, for symmetry with :func:`make_quantizer`."""
    return q.state_dict()
