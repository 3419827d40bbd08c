"""The adversarial learned quantizer of Cao & Xie's Theorem 6, as a registry entry.

Scalar system x' = A·x + B·u, expert u = arctan(x). Three state intervals
I_P = [−kε/2, kε/2], I_T1 = [dε, (d+1)ε], I_T2 = A·I_T1 + B map, through arctan, to three disjoint
*action* ranges. This quantizer gives each of those ranges one cell whose codeword is adversarial:

- arctan(I_P)  -> ((d + 1/2)/B)·ε          (pushes the state from I_P into I_T1)
- arctan(I_T1) -> 1                        (pushes it from I_T1 into I_T2)
- arctan(I_T2) -> ((d+1)(1 − A²)/B)·ε − A  (sends it back into I_T1)

and covers every other action with a uniform grid of width ε (error ≤ ε/2). Its error on the
expert's action distribution is O(ε), yet the deployed policy cycles I_T1 ↔ I_T2 at a per-step
loss of order one, not O(ε): with A = 0.2, B = 0.3 the cycle's mean loss tends to
(1 + 0.49)/2 ≈ 0.74 as ε → 0 (docs/results/counterexample measures 0.47 at ε = 0.1 and 0.70 at
ε = 0.01, H = 1000). This reading of the construction as a state-independent quantizer is our
reconstruction (docs/theory.md §1); :func:`check_theorem6_conditions` enforces the theorem's
conditions.
"""

from __future__ import annotations

import numpy as np

from qbc.errors import InvalidValueError
from qbc.quantizers.base import Quantizer, register_quantizer


def check_theorem6_conditions(A: float, B: float, k: float, d: float, eps: float) -> None:
    """Raise :class:`InvalidValueError` naming every violated condition of Theorem 6.

    Conditions: 0 < A, 0 < B, λ = A + B < 1, d > k/2, k/2 > B/(1 − λ), A·k < 1, ε > 0, and ε
    small enough that I_T1 and I_T2 do not overlap (A·d·ε + B > (d + 1)·ε).
    """
    lam = A + B
    problems = []
    if not (A > 0 and B > 0):
        problems.append(f"A and B must be positive (A={A}, B={B})")
    if not lam < 1:
        problems.append(f"lambda = A + B = {lam:g} must be < 1 (stable closed loop)")
    if not d > k / 2:
        problems.append(f"d > k/2 fails: d = {d:g}, k/2 = {k / 2:g}")
    if lam < 1 and not k / 2 > B / (1 - lam):
        problems.append(f"k/2 > B/(1 - lambda) fails: k/2 = {k / 2:g}, "
                        f"B/(1 - lambda) = {B / (1 - lam):g}")
    if not A * k < 1:
        problems.append(f"A*k < 1 fails: A*k = {A * k:g}")
    if not eps > 0:
        problems.append(f"eps must be positive, got {eps:g}")
    elif not A * d * eps + B > (d + 1) * eps:
        problems.append(f"eps = {eps:g} is too large: I_T1 and I_T2 overlap")
    if problems:
        raise InvalidValueError("Theorem 6 conditions violated: " + "; ".join(problems))


@register_quantizer("theorem6")
class Theorem6Quantizer(Quantizer):
    """The adversarial codebook of Theorem 6 over actions of the ``arctan`` expert.

    Tokens 0, 1, 2 are the cells of arctan(I_P), arctan(I_T1), arctan(I_T2); tokens 3.. are a
    uniform grid of width ε over [−π/2, π/2] (the range of arctan). Fixed by its parameters:
    ``fit`` needs no data.

    Args:
        A, B: the system x' = A·x + B·u.
        k, d: interval sizes (in units of ε); see :func:`check_theorem6_conditions`.
        eps: ε, the scale of the in-distribution error.
    """

    _fitted_attrs = ("special_cells_", "grid_low_")

    def __init__(self, A: float = 0.2, B: float = 0.3, k: float = 2.0, d: float = 1.2,
                 eps: float = 0.1):
        self.A, self.B, self.k, self.d, self.eps = A, B, k, d, eps

    def _validate_params(self) -> None:
        check_theorem6_conditions(self.A, self.B, self.k, self.d, self.eps)

    def _fit(self, x) -> None:
        A, B, k, d, e = self.A, self.B, self.k, self.d, self.eps
        states = [(-k * e / 2, k * e / 2), (d * e, (d + 1) * e),
                  (A * d * e + B, A * (d + 1) * e + B)]
        self.special_cells_ = np.arctan(np.array(states, dtype=np.float64))  # (3, 2) action ranges
        self.grid_low_ = -np.pi / 2

    @property
    def n_grid(self) -> int:
        return int(np.ceil(np.pi / self.eps))

    @property
    def codebook(self) -> np.ndarray:
        self._check_fitted()
        A, B, d, e = self.A, self.B, self.d, self.eps
        special = [(d + 0.5) / B * e, 1.0, (d + 1) * (1 - A**2) / B * e - A]
        grid = self.grid_low_ + (np.arange(self.n_grid) + 0.5) * e
        return np.concatenate([special, grid])

    def encode(self, x, rng=None) -> np.ndarray:
        x = self._as_float(x)
        tokens = 3 + np.clip(np.floor((x - self.grid_low_) / self.eps), 0, self.n_grid - 1)
        tokens = tokens.astype(np.int64)
        for i, (lo, hi) in enumerate(self.special_cells_):
            tokens = np.where((x >= lo) & (x <= hi), i, tokens)
        return tokens
