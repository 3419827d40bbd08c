"""Datasets for the compressive-learning experiments: the ones scikit-learn ships, plus a
seeded synthetic one. Nothing is downloaded.

``digits`` (1797×64, 10 classes), ``breast_cancer`` (569×30, 2 classes), ``diabetes`` (442×10,
regression) and ``synthetic`` (classification or regression, see :func:`synthetic`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qbc.errors import InvalidValueError, UnknownNameError

#: dataset name -> tasks it offers
DATASETS = {
    "digits": ("classification",),
    "breast_cancer": ("classification",),
    "diabetes": ("regression",),
    "synthetic": ("classification", "regression"),
}


@dataclass
class Split:
    """A train/test split. ``x_*``: (N, d) float32 features (preprocessed, not yet unit-norm);
    ``y_*``: (N,) int64 labels, or float32 targets standardised with the train mean and std."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str


def synthetic(task: str, n: int = 1500, d: int = 256, n_classes: int = 10,
              within_cosine: float = 0.8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded synthetic dataset in the high-similarity regime.

    Classification: class centres are random unit vectors in R^d; a sample is its centre plus
    isotropic noise of total variance ``1/within_cosine - 1``, so two samples of one class have
    cosine ≈ ``within_cosine`` and samples of different classes ≈ 0. Regression: the same
    features; the target is a fixed random linear function of them plus 10% noise.

    Returns ``(x (n, d) float32, y (n,))``.
    """
    if not 0.0 < within_cosine < 1.0:
        raise InvalidValueError(f"within_cosine must be in (0, 1), got {within_cosine}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, n_classes, size=n)
    noise_sd = np.sqrt((1.0 / within_cosine - 1.0) / d)
    x = centres[labels] + noise_sd * rng.standard_normal((n, d))
    if task == "classification":
        return x.astype(np.float32), labels.astype(np.int64)
    w = rng.standard_normal(d)
    signal = x @ w
    y = signal + 0.1 * signal.std() * rng.standard_normal(n)
    return x.astype(np.float32), y.astype(np.float32)


def load(name: str, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(x (N, d) float32, y (N,))`` of dataset ``name`` for ``task``."""
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    if task not in DATASETS[name]:
        raise InvalidValueError(
            f"dataset {name!r} offers {', '.join(DATASETS[name])}, not {task}; pick a "
            f"{task} dataset ({', '.join(n for n, t in DATASETS.items() if task in t)}) "
            "or another model"
        )
    if name == "synthetic":
        return synthetic(task)
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    y = bunch.target.astype(np.int64 if task == "classification" else np.float32)
    return bunch.data.astype(np.float32), y


def make_split(name: str, task: str, test_fraction: float = 0.2, seed: int = 0,
               standardize: bool = True) -> Split:
    """Load ``name``, split it (stratified for classification) and preprocess with train-set
    statistics: features z-scored if ``standardize`` (constant features left at zero), regression
    targets always z-scored so the reported MSE is in units of the target variance."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.model_selection import train_test_split

    x, y = load(name, task)
    strat = y if task == "classification" else None
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                              stratify=strat)
    if standardize:
        mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    if task == "regression":
        mu, sd = float(y_tr.mean()), float(y_tr.std()) or 1.0
        y_tr, y_te = (y_tr - mu) / sd, (y_te - mu) / sd
    # A row that preprocessing made all-zero has no direction; nudge it so it can be normalised.
    x_tr, x_te = (_no_zero_rows(a.astype(np.float32)) for a in (x_tr, x_te))
    return Split(x_tr, np.asarray(y_tr), x_te, np.asarray(y_te), task)


def _no_zero_rows(x: np.ndarray) -> np.ndarray:
    zero = ~np.any(x != 0, axis=1)
    if zero.any():
        x = x.copy()
        x[zero, 0] = 1e-6
    return x
