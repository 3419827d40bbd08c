"""Learners on (quantized) projections, behind one function: :func:`fit_score`.

- ``nn``: 1-nearest-neighbour classifier by the estimated cosine. For unit-norm data the debiased
  cosine ``α⁻¹(ρ̂)`` is an increasing function of the raw estimate ``ρ̂ = (1/k) Σ Q(u)Q(v)``, so
  the neighbour with the largest raw estimate is the one with the largest debiased estimate: the
  search uses ``ρ̂`` directly and needs no inversion.
- ``linear``: multinomial logistic regression (scikit-learn ``LogisticRegression``).
- ``ls``: ordinary least squares (scikit-learn ``LinearRegression``, min-norm when rank deficient).

Features are the quantized projections themselves: every coordinate has unit variance (before
quantization), so the logistic regression's default regularisation (C = 1) suits every k.
"""

from __future__ import annotations

import numpy as np

from qbc.errors import UnknownNameError

#: model name -> task it solves
MODELS = {"nn": "classification", "linear": "classification", "ls": "regression"}
#: name of the metric each task reports
METRICS = {"classification": "accuracy", "regression": "mse"}
#: query rows per block in the 1-NN search (bounds the (block, n_train) similarity matrix)
NN_BLOCK = 2048


def nearest_neighbour_predict(train: np.ndarray, y_train: np.ndarray,
                              test: np.ndarray) -> np.ndarray:
    """1-NN labels for ``test`` (M, k): the label of the train row (N, k) of largest inner
    product (ties: the first such row)."""
    out = np.empty(len(test), dtype=np.asarray(y_train).dtype)
    for start in range(0, len(test), NN_BLOCK):
        sims = test[start:start + NN_BLOCK] @ train.T
        out[start:start + NN_BLOCK] = y_train[np.argmax(sims, axis=1)]
    return out


def fit_score(model: str, z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
              y_test: np.ndarray, seed: int = 0) -> float:
    """Train ``model`` on projections ``z_train`` (N, k) and score it on ``z_test`` (M, k).

    Args:
        model: ``nn``, ``linear`` or ``ls`` (see the module docstring).
        y_train, y_test: (N,), (M,) class labels (classification) or targets (regression).
        seed: random state of the solver (unused by nn and ls, which are deterministic).

    Returns:
        test accuracy in [0, 1] for ``nn`` and ``linear``; test mean squared error for ``ls``.
    """
    if model not in MODELS:
        raise UnknownNameError("model", model, MODELS)
    a = np.asarray(z_train, np.float64)
    b = np.asarray(z_test, np.float64)
    if model == "nn":
        return float(np.mean(nearest_neighbour_predict(a, np.asarray(y_train), b) == y_test))
    if model == "linear":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
        clf.fit(a, y_train)
        return float(clf.score(b, y_test))
    from sklearn.linear_model import LinearRegression

    reg = LinearRegression().fit(a, y_train)
    return float(np.mean((reg.predict(b) - y_test) ** 2))
