"""The one ``Actor`` protocol: anything that acts on a batch of observations.

``act(obs (N, obs_dim)) -> actions (N, act_dim)`` numpy, and optionally ``reset(mask=None)``:
called with no argument before the first ``act`` of every batch of episodes (every row starts
afresh); with ``mask`` (N,) bool only the rows where it is true restart. Experts
(:mod:`qbc.agents`), trained policies (:class:`qbc.policy.Policy`), the quantized expert
(:class:`qbc.rollout.QuantizedExpert`), chunk executors, model-based deployment and a user's own
object all satisfy it. Extra arguments some of them take (``deterministic``, ``rng``,
``generator``) are optional keywords, so ``act(obs)`` works on every one.

:func:`load_actor` imports a user's actor from ``"module:object"`` (``qbc rollout --policy``).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qbc.errors import InvalidValueError


@runtime_checkable
class Actor(Protocol):
    """``act(obs (N, obs_dim)) -> actions (N, act_dim)``; ``reset(mask=None)`` is optional
    (see the module docstring)."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...


def reset_actor(actor: Any) -> None:
    """Start a new batch of episodes: ``actor.reset()`` when the actor has one."""
    reset = getattr(actor, "reset", None)
    if callable(reset):
        reset()


class BoundActor:
    """``actor`` with keyword arguments fixed for every ``act`` (e.g. ``deterministic=False,
    rng=...`` for an expert), so that it satisfies the one-argument protocol."""

    def __init__(self, actor: Any, **act_kwargs: Any):
        self.actor, self.act_kwargs = actor, act_kwargs

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.actor.act(obs, **self.act_kwargs)

    def reset(self) -> None:
        reset_actor(self.actor)

    def __getattr__(self, name: str) -> Any:  # name, params, obs_dim, ... of the wrapped actor
        if name == "actor":
            raise AttributeError(name)
        return getattr(self.actor, name)


def is_module_object(text: str) -> bool:
    """True for ``"package.module:object"`` (a colon, no path separator before it): the
    spelling of an importable actor, as opposed to a checkpoint directory."""
    module, sep, obj = str(text).partition(":")
    return bool(sep and module and obj and "/" not in module and "\\" not in module
                and all(part.isidentifier() for part in module.split("."))
                and all(part.isidentifier() for part in obj.split(".")))


def _import_from_cwd(module_name: str) -> Any:
    """``importlib.import_module(module_name)`` with the current directory searched first, as
    ``python -m`` does (the ``qbc`` console script leaves it off ``sys.path``); ``sys.path`` is
    as before afterwards."""
    import os
    import sys

    cwd = os.getcwd()
    inserted = sys.path[:1] not in ([cwd], [""])
    if inserted:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if inserted and cwd in sys.path:
            sys.path.remove(cwd)  # the first occurrence: the one inserted above


def load_actor(spec: str) -> Any:
    """The actor named by ``"module:object"``: the module is imported from the current directory
    first, then from the installed packages (as ``python -m`` finds modules; no ``PYTHONPATH=.``
    needed); ``object`` is looked up in the imported module (dotted attributes allowed); an
    object with ``act`` is used as it is, a callable without one (a class, a factory) is called
    with no arguments and must return an object with ``act``.
    Anything else raises InvalidValueError."""
    module_name, _, attr = spec.partition(":")
    if not is_module_object(spec):
        raise InvalidValueError(f"--policy {spec!r} is neither a checkpoint directory nor an "
                                "importable actor 'module:object'")
    try:
        obj: Any = _import_from_cwd(module_name)
    except ImportError as exc:
        raise InvalidValueError(f"--policy {spec!r}: cannot import {module_name!r} ({exc}); "
                                "is it in the current directory or on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidValueError(f"--policy {spec!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, type) or (callable(obj) and not callable(getattr(obj, "act", None))):
        obj = obj()  # a class or a factory
    if not callable(getattr(obj, "act", None)):
        raise InvalidValueError(
            f"--policy {spec!r} is not an actor: it needs a method act(obs (N, obs_dim)) -> "
            "actions (N, act_dim) (or be a zero-argument factory returning such an object)")
    return obj
