"""The two-layer binary network of Jeong, Xin & Yin and its STE-gradient training, batched over
seeded trials.

Model (a reconstruction, docs/theory.md §2; every choice below is a field of
:class:`TwoLayerModel`): a sample is a matrix Z of shape (m, n) (m hidden units sharing one weight
vector w in R^n); the network outputs ``vᵀ σ(Z w)`` with a fixed second layer v in R^m; the teacher
is ``y = vᵀ σ(Z w*) + ξ`` with w* in {±1}^n. STE iteration on the loss
``(1/2N) Σ_i (vᵀσ(Z_i q) − y_i)²``::

    q^t = sign(w^t);   w^{t+1} = w^t − η · (1/N) Σ_i (vᵀσ(Z_i q^t) − y_i) · Z_iᵀ v

(σ' replaced by 1). Since ``Z_iᵀ v`` does not depend on w it is computed once, so one iteration
costs one batched matrix product ``Z q`` over all trials: shapes (B, N·m, n) @ (B, n, 1).

Units of the step size: with ``lr_scaling="population"`` the step is ``η = lr·sqrt(πn/2)/‖v‖²``
for σ = sign (``lr·sqrt(2πn)/‖v‖²`` for σ = step), so that one step of the *population* STE
gradient moves every wrong coordinate by ``2·lr`` toward its correct sign at any n, m and v.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from qbc.errors import InvalidValueError
from qbc.infra.validate import check_memory

ACTIVATIONS = ("sign", "step")
V_KINDS = ("ones", "uniform", "rademacher", "gaussian")
INPUTS = ("gaussian", "rademacher", "uniform", "shifted_uniform", "exponential")
INITS = ("gaussian", "zeros", "uniform_sign")
LR_SCALINGS = ("population", "none")

#: Largest number of floats in one batch of inputs Z (B·N·m·n); trials are chunked beyond it.
MAX_BATCH_FLOATS = 24_000_000


@dataclass
class TwoLayerModel:
    """Every modelling choice of the two-layer STE experiment (defaults: the
    reconstruction of docs/theory.md §2 with a normalised step size)."""

    m: int = 16
    """hidden units sharing the first-layer weight vector."""
    activation: str = "sign"
    """hidden activation σ: 'sign' (±1) or 'step' (1{z>0})."""
    v: str = "ones"
    """second layer: 'ones', 'uniform' (U[0,1], drawn per trial), 'rademacher', 'gaussian'."""
    inputs: str = "gaussian"
    """entries of Z: 'gaussian', 'rademacher', 'uniform' (zero mean), 'shifted_uniform' (U[0,1]),
    'exponential' (Exp(1), skewed, mean 1)."""
    normalize: bool = False
    """standardise every input coordinate by its training-set mean and std before the student
    sees it (the teacher labels the raw inputs)."""
    noise: float = 0.0
    """label noise std (Gaussian), in units of ‖v‖ (the scale of vᵀσ(Zw))."""
    init: str = "gaussian"
    """w^0: 'gaussian' (N(0, init_scale²)), 'zeros' (sign(0) = +1), 'uniform_sign' (±init_scale)."""
    init_scale: float = 1.0
    """scale of the initial weights."""
    lr: float = 1.0
    """step size (see lr_scaling); with 'population' scaling, lr = 1 flips a wrong coordinate of
    a unit-scale initialisation in about one step, so the ergodic average is not dominated by
    the transient (lr = 0.1 keeps it there for ~T/10 of the budget)."""
    lr_scaling: str = "population"
    """'population': lr in units where the population STE step moves a wrong coordinate by
    2·lr; 'none': lr is the raw η."""
    iters: int = 300
    """STE iterations T (the ergodic average is over w^1..w^T)."""

    def validate(self) -> None:
        for field, value, allowed in (("activation", self.activation, ACTIVATIONS),
                                      ("v", self.v, V_KINDS), ("inputs", self.inputs, INPUTS),
                                      ("init", self.init, INITS),
                                      ("lr_scaling", self.lr_scaling, LR_SCALINGS)):
            if value not in allowed:
                raise InvalidValueError(
                    f"{field} must be one of {', '.join(allowed)}; got {value!r}")
        if self.m < 1 or self.iters < 1:
            raise InvalidValueError(f"need m >= 1 and iters >= 1; got m={self.m}, "
                                    f"iters={self.iters}")
        if not (self.lr > 0 and self.init_scale >= 0 and self.noise >= 0):
            raise InvalidValueError("need lr > 0, init_scale >= 0 and noise >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def _sigma(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "sign":
        return torch.where(h >= 0, 1.0, -1.0)
    return (h > 0).to(h.dtype)


def _sign(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0)


def _draw_inputs(kind: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if kind == "gaussian":
        return torch.randn(shape, generator=gen)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=gen).float() * 2.0 - 1.0
    u = torch.rand(shape, generator=gen)
    if kind == "uniform":
        return (u - 0.5) * math.sqrt(12.0)  # zero mean, unit variance
    if kind == "shifted_uniform":
        return u
    return -torch.log1p(-u)  # Exp(1)


@dataclass
class Problem:
    """One batch of B independent trials of size (n, N). Shapes: ``Z`` (B, N·m, n) inputs as the
    student sees them, ``U = Zᵀv`` per sample (B, N, n), ``y`` (B, N), ``v`` (B, m),
    ``w_star`` (B, n) in {±1}, ``w0`` (B, n)."""

    Z: torch.Tensor
    U: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor
    w_star: torch.Tensor
    w0: torch.Tensor
    eta: torch.Tensor  # (B, 1) raw step size per trial


def check_problem_memory(model: TwoLayerModel, n: int, N: int, trials: int, fix: str) -> None:
    """Refuse a problem whose inputs (trials, N * m, n) float32, with working copies and the
    recorded traces, would not fit in memory (:func:`qbc.infra.validate.check_memory`)."""
    check_memory(12.0 * trials * N * model.m * n + 12.0 * trials * model.iters,
                 f"STE trials ({trials:,} x N={N:,} x m={model.m:,} x n={n:,})", fix)


def make_problem(model: TwoLayerModel, n: int, N: int, trials: int, seed: int) -> Problem:
    """Draw ``trials`` independent problems of dimension ``n`` with ``N`` samples each, from one
    seed (the same seed gives the same problems)."""
    model.validate()
    if n < 1 or N < 1 or trials < 1:
        raise InvalidValueError(f"need n, N, trials >= 1; got n={n}, N={N}, trials={trials}")
    gen = torch.Generator().manual_seed(int(seed))
    B, m = trials, model.m
    Z = _draw_inputs(model.inputs, (B, N * m, n), gen)
    w_star = _sign(torch.randn((B, n), generator=gen))
    if model.v == "ones":
        v = torch.ones((B, m))
    elif model.v == "uniform":
        v = torch.rand((B, m), generator=gen)
    elif model.v == "rademacher":
        v = _sign(torch.randn((B, m), generator=gen))
    else:
        v = torch.randn((B, m), generator=gen)
    v_norm = v.norm(dim=1, keepdim=True)
    # w0 before the label noise, so that runs differing only in noise share data, w* and w0
    if model.init == "gaussian":
        w0 = model.init_scale * torch.randn((B, n), generator=gen)
    elif model.init == "zeros":
        w0 = torch.zeros((B, n))
    else:
        w0 = model.init_scale * _sign(torch.randn((B, n), generator=gen))
    y = (_sigma(torch.bmm(Z, w_star[:, :, None]), model.activation).view(B, N, m) * v[:, None]
         ).sum(-1)
    if model.noise > 0:
        y = y + model.noise * v_norm * torch.randn((B, N), generator=gen)
    if model.normalize:
        mean = Z.mean(dim=1, keepdim=True)
        std = Z.std(dim=1, keepdim=True).clamp_min(1e-6)
        Z = (Z - mean) / std
    U = torch.einsum("bjmn,bm->bjn", Z.view(B, N, m, n), v)
    if model.lr_scaling == "population":
        slope = math.sqrt(2.0 / (math.pi * n)) * (1.0 if model.activation == "sign" else 0.5)
        eta = model.lr / (slope * v_norm**2)
    else:
        eta = torch.full((B, 1), float(model.lr))
    return Problem(Z, U, y, v, w_star, w0, eta)


@dataclass
class STERun:
    """Result of :func:`run_ste`. Shapes: (B, n) for iterates, (B,) for flags, (B, T) traces."""

    w_last: torch.Tensor
    w_ergodic: torch.Tensor
    recovered_last: np.ndarray
    recovered_ergodic: np.ndarray
    frozen_at: np.ndarray  # iteration at which the gradient became exactly 0 (-1: never)
    distance: np.ndarray | None = None  # ‖w^t − w*‖, t = 1..T
    hamming: np.ndarray | None = None  # #coordinates where sign(w^t) ≠ w*
    loss: np.ndarray | None = None  # (1/2N) Σ (vᵀσ(Z_i sign(w^t)) − y_i)²


def run_ste(model: TwoLayerModel, problem: Problem, record: bool = False) -> STERun:
    """Run ``model.iters`` STE iterations on every trial of ``problem`` at once.

    A trial whose STE gradient is exactly zero (noiseless data fitted exactly) keeps its weights
    forever; once every trial is frozen the remaining iterations are added to the ergodic sum in
    closed form, which changes nothing in the result and saves the time.
    """
    Z, U, y, v = problem.Z, problem.U, problem.y, problem.v
    B, N, n = U.shape
    m = v.shape[1]
    T = model.iters
    w = problem.w0.clone()
    w_sum = torch.zeros_like(w)
    frozen_at = np.full(B, -1)
    traces = {k: np.zeros((B, T), dtype=np.float32) for k in ("distance", "hamming", "loss")}
    for t in range(T):
        q = _sign(w)
        h = _sigma(torch.bmm(Z, q[:, :, None]), model.activation).view(B, N, m)
        r = (h * v[:, None]).sum(-1) - y  # (B, N) residuals
        g = torch.bmm(r[:, None, :], U)[:, 0] / N  # (B, n)
        if record:
            traces["loss"][:, t] = (0.5 * (r**2).mean(1)).numpy()
        w = w - problem.eta * g
        w_sum += w
        if record:
            traces["distance"][:, t] = (w - problem.w_star).norm(dim=1).numpy()
            traces["hamming"][:, t] = (_sign(w) != problem.w_star).sum(1).numpy()
        zero = (r == 0).all(dim=1).numpy()
        frozen_at[(frozen_at < 0) & zero] = t
        if not record and zero.all():
            w_sum += (T - 1 - t) * w
            break
    w_bar = w_sum / T
    return STERun(
        w_last=w, w_ergodic=w_bar,
        recovered_last=(_sign(w) == problem.w_star).all(1).numpy(),
        recovered_ergodic=(_sign(w_bar) == problem.w_star).all(1).numpy(),
        frozen_at=frozen_at,
        **({k: a for k, a in traces.items()} if record else {}),
    )


def recovery_trials(model: TwoLayerModel, n: int, N: int, trials: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean arrays (trials,) of ergodic and last-iterate recovery for one (n, N) cell,
    chunking the trials so that no batch holds more than ``MAX_BATCH_FLOATS`` inputs."""
    per_trial = N * model.m * n
    chunk = max(1, min(trials, MAX_BATCH_FLOATS // max(per_trial, 1)))
    erg, last = [], []
    for k, start in enumerate(range(0, trials, chunk)):
        b = min(chunk, trials - start)
        run = run_ste(model, make_problem(model, n, N, b, seed=seed * 1_000_003 + k))
        erg.append(run.recovered_ergodic)
        last.append(run.recovered_last)
    return np.concatenate(erg), np.concatenate(last)
