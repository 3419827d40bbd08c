"""Forward/backward quantizer pairs (ProxConnect++ view) as torch autograd functions.

A pair (F, B) acts on latent real weights θ: the forward pass uses ``w = F(θ)``, the backward pass
multiplies the incoming gradient ∂f/∂w by ``B'(θ)`` (so θ ← θ − η·B'(θ)⊙∇f(w)). Pairs by name
(docs/theory.md §3):

==========  ==============================  ==========================  ===============
name        forward F                       backward B'                 deployed map
==========  ==============================  ==========================  ===============
``bc``      sign                            1 (straight through)        sign
``pc``      P_μ (μ annealed up, → sign)     1                           sign
``bnn``     sign                            1{|θ| ≤ clip}               sign
``bnn+``    sign                            SS_β'                       sign
``bnn++``   SS_β (β annealed up, → sign)    SS_β'                       sign
any scalar  registry quantizer's nearest    1, or 1{θ in range}         same as forward
registry    codeword (``uniform``,          (``backward="clip"``)
name        ``lloyd_max``, ``kmeans``, ...)
==========  ==============================  ==========================  ===============

``sign`` is the registry's ``sign`` quantizer (θ ≥ 0 → +1), applied in torch through its codebook.

SignSwish ``SS_β(x) = 2σ(βx)[1 + βx(1 − σ(βx))] − 1``, with derivative
``SS_β'(x) = 2βσ(1−σ)[2 + βx(1 − 2σ)]`` (σ = σ(βx)).

P_μ [ours, a reconstruction]: the proximal map of the W-shaped regulariser
``μ·dist(w, {−1, +1})``, i.e. ``argmin_w ½(w − θ)² + μ·min(|w − 1|, |w + 1|)``, in closed form
``P_μ(θ) = sign(θ)·(1 + soft(|θ| − 1, μ))`` with ``soft(u, μ) = sign(u)·max(|u| − μ, 0)``.
P_0 is the identity; for μ ≥ 1 it equals sign on |θ| ≤ 1 + μ, so annealing μ upward moves it to
sign.

Selection is Larq-style: :func:`get_ste` resolves a name, a dict or an instance, and
:func:`serialize_ste` gives back the name (default parameters) or the dict. The pairs are entries
of :data:`STE_PAIRS` (an :class:`STEPair` each: defaults, annealed parameter, F and B'); a new
pair is one ``STE_PAIRS.add(name, STEPair(...))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.quantizers import Quantizer, available_quantizers, make_quantizer
from qbc.registry import Registry

Map = Callable[[torch.Tensor], torch.Tensor]


# -- closed-form maps ---------------------------------------------------------------------------
def signswish(x: torch.Tensor, beta: float) -> torch.Tensor:
    """SS_β(x), same shape as x."""
    s = torch.sigmoid(beta * x)
    return 2.0 * s * (1.0 + beta * x * (1.0 - s)) - 1.0


def signswish_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """dSS_β/dx in closed form, same shape as x."""
    s = torch.sigmoid(beta * x)
    return 2.0 * beta * s * (1.0 - s) * (2.0 + beta * x * (1.0 - 2.0 * s))


def prox_w(x: torch.Tensor, mu: float) -> torch.Tensor:
    """P_μ(x): proximal map of μ·dist(·, {±1}) (see the module docstring)."""
    u = x.abs() - 1.0
    soft = torch.sign(u) * torch.clamp(u.abs() - mu, min=0.0)
    return torch.where(x >= 0, 1.0, -1.0) * (1.0 + soft)


class ForwardBackward(torch.autograd.Function):
    """``y = forward_map(x)``; backward returns ``grad · backward_grad(x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, forward_map: Map, backward_grad: Map) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.backward_grad = backward_grad
        return forward_map(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.backward_grad(x), None, None


def _nearest_codeword(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The registry's deterministic scalar encoding: nearest codeword of a sorted codebook, ties
    (exactly on a midpoint) going to the upper cell, as ``np.searchsorted(..., side='right')``."""
    thresholds = 0.5 * (codebook[1:] + codebook[:-1])
    return codebook[torch.bucketize(x, thresholds, right=True)]


# -- annealing ----------------------------------------------------------------------------------
class Anneal:
    """Schedule of β or μ over ``steps`` trainer steps: ``kind='exp'`` (geometric, needs
    start > 0), ``'linear'`` or ``'constant'`` (stays at ``start``); stays at ``end`` after."""

    KINDS = ("exp", "linear", "constant")

    def __init__(self, start: float, end: float, steps: int = 1000, kind: str = "exp"):
        if kind not in self.KINDS:
            raise InvalidValueError(f"anneal kind must be one of {self.KINDS}, got {kind!r}")
        if steps < 1 or not (math.isfinite(start) and math.isfinite(end)):
            raise InvalidValueError(f"anneal needs steps >= 1 and finite start/end, got "
                                    f"start={start}, end={end}, steps={steps}")
        if kind == "exp" and (start <= 0 or end <= 0):
            raise InvalidValueError("anneal kind 'exp' needs start > 0 and end > 0; "
                                    "use kind='linear' to start from 0")
        self.start, self.end, self.steps, self.kind = float(start), float(end), int(steps), kind

    def value(self, t: int) -> float:
        """The scheduled value after ``t`` steps."""
        if self.kind == "constant":
            return self.start
        frac = min(max(t, 0), self.steps) / self.steps
        if self.kind == "linear":
            return self.start + frac * (self.end - self.start)
        return self.start * (self.end / self.start) ** frac

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "steps": self.steps, "kind": self.kind}


# -- the quantizer module -----------------------------------------------------------------------
@dataclass(frozen=True)
class STEPair:
    """A forward/backward pair: its parameters' defaults, the one annealed (``mu``, ``beta``;
    None: none), F and B' as functions of the :class:`STEQuantizer` and θ. The deployed map of
    every pair is sign."""

    defaults: dict[str, Any]
    anneal: str | None
    forward: Callable[[STEQuantizer, torch.Tensor], torch.Tensor]
    backward: Callable[[STEQuantizer, torch.Tensor], torch.Tensor]


def _sign(q: STEQuantizer, x: torch.Tensor) -> torch.Tensor:
    return _nearest_codeword(x, q._codebook(x))


def _straight(q: STEQuantizer, x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x)


def _signswish_grad(q: STEQuantizer, x: torch.Tensor) -> torch.Tensor:
    return signswish_grad(x, q.value)


#: The forward/backward pairs by name (docs/theory.md §3); any scalar quantizer of the quantizer
#: registry is an STE quantizer too (:func:`available_ste`).
STE_PAIRS: Registry[STEPair] = Registry("STE pair", name_attr=None)
STE_PAIRS.add("bc", STEPair({}, None, _sign, _straight))
STE_PAIRS.add("pc", STEPair({"mu": {"start": 0.0, "end": 2.0, "steps": 1000, "kind": "linear"}},
                            "mu", lambda q, x: prox_w(x, q.value), _straight))
STE_PAIRS.add("bnn", STEPair({"clip": 1.0}, None, _sign,
                             lambda q, x: (x.abs() <= q.params["clip"]).to(x.dtype)))
STE_PAIRS.add("bnn+", STEPair({"beta": {"start": 5.0, "end": 5.0, "steps": 1, "kind": "constant"}},
                              "beta", _sign, _signswish_grad))
STE_PAIRS.add("bnn++", STEPair({"beta": {"start": 1.0, "end": 20.0, "steps": 1000, "kind": "exp"}},
                               "beta", lambda q, x: signswish(x, q.value), _signswish_grad))
_REGISTRY_DEFAULTS = {"backward": "identity"}


def available_ste() -> list[str]:
    """Names accepted by :func:`get_ste`: the five pairs and every scalar registry quantizer."""
    scalar = [n for n in available_quantizers() if n != "vq"]
    return list(STE_PAIRS) + scalar


class STEQuantizer(nn.Module):
    """A forward/backward quantizer pair. ``q(θ)`` is the training-time forward map with the
    pair's backward; ``q.deploy(θ)`` the deployed map (no gradient); ``q.step()`` advances the
    annealing of β or μ by one trainer step (its counter is a buffer, so it is checkpointed).

    Build it with :func:`get_ste`; ``params`` are the pair's (``mu``/``beta`` as
    :class:`Anneal` dicts, ``clip``) or, for a registry name, the quantizer's constructor arguments
    plus ``backward`` ('identity' or 'clip').
    """

    def __init__(self, name: str, **params: Any):
        super().__init__()
        if name not in available_ste():
            raise UnknownNameError("STE quantizer", name, available_ste())
        self.name = name
        pair = STE_PAIRS[name] if name in STE_PAIRS else None
        defaults = _REGISTRY_DEFAULTS if pair is None else pair.defaults
        self.params = {**defaults, **params}
        self.register_buffer("t", torch.zeros((), dtype=torch.long))
        self.anneal: Anneal | None = None
        self.quantizer: Quantizer | None = None
        self.pair = pair
        if pair is not None:
            unknown = set(params) - set(defaults)
            if unknown:
                raise InvalidValueError(f"{name}: unknown parameters {sorted(unknown)}; it takes "
                                        f"{sorted(defaults) or 'none'}")
            key = pair.anneal
            if key is not None:
                spec = self.params[key]
                spec = spec if isinstance(spec, dict) else {"start": spec, "end": spec,
                                                            "steps": 1, "kind": "constant"}
                self.params[key] = spec
                self.anneal = Anneal(**spec)
            sign = make_quantizer("sign").fit()
            self.register_buffer("codebook", torch.tensor(sign.codebook, dtype=torch.float32))
        else:
            backward = self.params.pop("backward")
            if backward not in ("identity", "clip"):
                raise InvalidValueError(f"{name}: backward must be 'identity' or 'clip', "
                                        f"got {backward!r}")
            self.backward_kind = backward
            self.quantizer = make_quantizer(name, **self.params)
            self.params["backward"] = backward
            self.register_buffer("codebook", torch.empty(0))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:
        """A data-fitted registry quantizer's codebook is empty until its first input; a saved
        one (a checkpoint, ``last/`` to resume from) has its fitted size: take that size."""
        stored = state_dict.get(prefix + "codebook")
        if (self.quantizer is not None and self.codebook.numel() == 0
                and isinstance(stored, torch.Tensor) and stored.ndim == 1):
            self.codebook = torch.empty(stored.shape, dtype=self.codebook.dtype,
                                        device=self.codebook.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- annealing ---------------------------------------------------------------------------
    @property
    def value(self) -> float | None:
        """Current β (bnn+, bnn++) or μ (pc); None for pairs without one."""
        return None if self.anneal is None else self.anneal.value(int(self.t))

    def step(self, n: int = 1) -> None:
        """Advance the annealing schedule by ``n`` trainer steps."""
        self.t += n

    # -- maps --------------------------------------------------------------------------------
    def _codebook(self, x: torch.Tensor) -> torch.Tensor:
        if self.codebook.numel() == 0:  # data-fitted registry quantizer: fit on the first input
            q = self.quantizer
            if not q.is_fitted:
                try:
                    q.fit(None)
                except InvalidValueError:
                    q.fit(x.detach().cpu().double().numpy())
            self.codebook = torch.tensor(np.sort(q.codebook), dtype=x.dtype, device=x.device)
        return self.codebook.to(dtype=x.dtype, device=x.device)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) without any gradient rule."""
        if self.pair is not None:
            return self.pair.forward(self, x)
        return _nearest_codeword(x, self._codebook(x))

    def backward_grad(self, x: torch.Tensor) -> torch.Tensor:
        """B'(x): the factor that multiplies the incoming gradient."""
        if self.pair is not None:
            return self.pair.backward(self, x)
        if self.backward_kind == "identity":
            return torch.ones_like(x)
        cb = self._codebook(x)
        return ((x >= cb[0]) & (x <= cb[-1])).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ForwardBackward.apply(x, self.forward_map, self.backward_grad)

    @torch.no_grad()
    def deploy(self, x: torch.Tensor) -> torch.Tensor:
        """The deployed map: sign for the binary pairs (bnn++ and pc included), the registry
        quantizer's codewords otherwise."""
        if self.quantizer is None:
            return _nearest_codeword(x, self.codebook.to(dtype=x.dtype, device=x.device))
        return self.forward_map(x)

    @property
    def n_levels(self) -> int:
        return 2 if self.quantizer is None else self.quantizer.n_levels

    def get_config(self) -> dict[str, Any]:
        """``{"name": ..., **params}`` with every parameter (round trip through get_ste)."""
        return {"name": self.name, **self.params}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())


def get_ste(spec: str | dict | STEQuantizer | None) -> STEQuantizer | None:
    """Resolve an STE quantizer from a name, a ``{"name": ..., **params}`` dict, an instance
    (returned as is) or None (no quantization)."""
    if spec is None or isinstance(spec, STEQuantizer):
        return spec
    if isinstance(spec, str):
        return STEQuantizer(spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise InvalidValueError("an STE quantizer dict needs a 'name' entry")
        return STEQuantizer(name, **spec)
    raise InvalidValueError(f"cannot make an STE quantizer from {type(spec).__name__}; "
                            f"give a name ({', '.join(available_ste())}), a dict or an instance")


def serialize_ste(q: STEQuantizer | None) -> str | dict[str, Any] | None:
    """The name when every parameter is at its default, else the full dict (Larq style)."""
    if q is None:
        return None
    default = STEQuantizer(q.name).get_config()
    config = q.get_config()
    return q.name if config == default else config
