"""The one ``Actor`` protocol: anything that acts on a batch of observations.

``act(obs (N, obs_dim)) -> actions (N, act_dim)`` numpy, and optionally ``reset(mask=None)``:
called with no argument before the first ``act`` of every batch of episodes (every row starts
afresh); with ``mask`` (N,) bool only the rows where it is true restart. Experts
(:mod:`qbc.agents`), trained policies (:class:`qbc.policy.Policy`), the quantized expert
(:class:`qbc.rollout.coupled.QuantizedExpert`), chunk executors, model-based deployment and a
user's own
object all satisfy it. Extra arguments some of them take (``deterministic``, ``rng``,
``generator``) are optional keywords, so ``act(obs)`` works on every one.

:func:`load_actor` imports a user's actor from ``"module:object"`` (``qbc rollout --policy``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qbc.errors import InvalidValueError, UserCodeError


@runtime_checkable
class Actor(Protocol):
    """``act(obs (N, obs_dim)) -> actions (N, act_dim)``; ``reset(mask=None)`` is optional
    (see the module docstring)."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...


def reset_actor(actor: Any, mask: np.ndarray | None = None) -> None:
    """Start a new batch of episodes: ``actor.reset()`` when the actor has one; with ``mask``
    (N,) bool, ``actor.reset(mask)``: only those rows restart."""
    reset = getattr(actor, "reset", None)
    if callable(reset):
        if mask is None:
            reset()
        else:
            reset(mask)


class BoundActor:
    """``actor`` with keyword arguments fixed for every ``act`` (e.g. ``deterministic=False,
    rng=...`` for an expert), so that it satisfies the one-argument protocol."""

    def __init__(self, actor: Any, **act_kwargs: Any):
        self.actor, self.act_kwargs = actor, act_kwargs

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.actor.act(obs, **self.act_kwargs)

    def reset(self, mask: np.ndarray | None = None) -> None:
        reset_actor(self.actor, mask)

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


def load_actor(spec: str, act_dim: int | None = None) -> UserActor:
    """The actor named by ``"module:object"``: the module is imported from the current
    directory first, then from the installed packages (as ``python -m`` finds modules; no
    ``PYTHONPATH=.`` needed); ``object`` is looked up in it (dotted attributes allowed); an
    object with ``act`` is used as it is, a callable without one (a class, a factory) is called
    with no arguments and must return an object with ``act``.

    The result is wrapped in :class:`UserActor`, which checks every action it returns. Whatever
    goes wrong in the user's code (an import or syntax error, a factory that raises or needs
    arguments) raises :class:`~qbc.errors.UserCodeError` naming ``spec``; a malformed ``spec``
    raises InvalidValueError."""
    if not is_module_object(spec):
        raise InvalidValueError(f"--policy {spec!r} is neither a checkpoint directory nor an "
                                "importable actor 'module:object'")
    obj = _build(spec, _lookup(spec, _import(spec)))
    with theirs(f"--policy {spec!r}: reading its act raised"):
        has_act = callable(getattr(obj, "act", None))
    if not has_act:
        raise InvalidValueError(
            f"--policy {spec!r} is not an actor: it needs a method act(obs (N, obs_dim)) -> "
            "actions (N, act_dim) (or be a zero-argument factory returning such an object)")
    return UserActor(obj, spec, act_dim)


def describe_exception(exc: BaseException) -> str:
    """``'TypeError: message'`` on one line (the first line of the message): how a fault in a
    user's code is quoted in its UserCodeError."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_what = describe_exception  # the short name the messages below use


@contextmanager
def theirs(what: str) -> Iterator[None]:
    """Run a piece of the user's code: whatever it raises (any exception, ``sys.exit``, a
    ``BaseException`` of its own) becomes a UserCodeError ``"<what> <Type>: <message>"``; only
    a KeyboardInterrupt (Ctrl-C arrives inside their code too) and qbc's own errors pass."""
    try:
        yield
    except (KeyboardInterrupt, UserCodeError):
        raise
    except BaseException as exc:  # noqa: BLE001  (the boundary around the user's code)
        raise UserCodeError(f"{what} {_what(exc)}") from None


def _import(spec: str) -> Any:
    """The module of ``spec``; any failure of the user's module is a UserCodeError."""
    module_name = spec.partition(":")[0]
    try:
        return _import_from_cwd(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise UserCodeError(f"--policy {spec!r}: cannot import {module_name!r} (no module "
                                f"named {exc.name!r}); is it in the current directory or on "
                                "PYTHONPATH?") from None
        raise UserCodeError(f"--policy {spec!r}: importing {module_name!r} failed "
                            f"({_what(exc)})") from None
    except SyntaxError as exc:
        raise UserCodeError(f"--policy {spec!r}: {module_name!r} has a syntax error "
                            f"({exc.filename}, line {exc.lineno}: {exc.msg})") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  (the user's module-level code, sys.exit too)
        raise UserCodeError(f"--policy {spec!r}: importing {module_name!r} failed "
                            f"({_what(exc)})") from None


def _lookup(spec: str, module: Any) -> Any:
    """The (dotted) attribute of ``spec`` in ``module``."""
    module_name, _, attr = spec.partition(":")
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidValueError(f"--policy {spec!r}: {module_name!r} has no {attr!r}") from None
        except Exception as exc:  # a property of the user's that raises
            raise UserCodeError(f"--policy {spec!r}: reading {part!r} raised "
                                f"{_what(exc)}") from None
    return obj


def _build(spec: str, obj: Any) -> Any:
    """``obj`` itself when it has ``act``; a class or factory called with no arguments."""
    if not (isinstance(obj, type) or (callable(obj) and not callable(getattr(obj, "act", None)))):
        return obj
    try:
        return obj()
    except TypeError as exc:
        if _needs_arguments(obj):
            raise UserCodeError(f"--policy {spec!r} must be callable with no arguments (a class "
                                f"or a zero-argument factory), but calling it raised "
                                f"{_what(exc)}") from None
        raise UserCodeError(f"--policy {spec!r}: calling it raised {_what(exc)}") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001  (the user's factory)
        raise UserCodeError(f"--policy {spec!r}: calling it raised {_what(exc)}") from None


def _needs_arguments(obj: Any) -> bool:
    """True when ``obj()`` cannot bind (required parameters without defaults)."""
    import inspect

    try:
        inspect.signature(obj).bind()
    except TypeError:
        return True
    except ValueError:  # no signature (a builtin)
        return False
    return False


class UserActor:
    """A user's actor with every call guarded: ``act`` must return a finite numeric array of
    shape (N, act_dim) for N observations (``act_dim`` once known: :meth:`expect`); anything
    else, or an exception inside ``act`` or ``reset``, raises
    :class:`~qbc.errors.UserCodeError` naming the actor (``spec``) and what it did."""

    def __init__(self, actor: Any, spec: str, act_dim: int | None = None):
        self.actor, self.spec, self.act_dim = actor, spec, act_dim

    def expect(self, act_dim: int) -> UserActor:
        """Check actions against ``act_dim`` columns from now on; returns self."""
        self.act_dim = int(act_dim)
        return self

    def act(self, obs: np.ndarray, **kwargs: Any) -> np.ndarray:
        with theirs(f"--policy {self.spec!r}: act raised"):
            actions = self.actor.act(obs, **kwargs)
        return self.check(actions, len(obs))

    def reset(self, *args: Any, **kwargs: Any) -> None:
        with theirs(f"--policy {self.spec!r}: reading its reset raised"):
            reset = getattr(self.actor, "reset", None)
        if not callable(reset):
            return
        with theirs(f"--policy {self.spec!r}: reset raised"):
            reset(*args, **kwargs)

    def check(self, actions: Any, n: int) -> np.ndarray:
        """``actions`` as a float32 (n, act_dim) array, or a UserCodeError saying why not."""
        where = f"--policy {self.spec!r}: act returned"
        try:
            out = np.asarray(actions)
        except Exception as exc:  # ragged lists and other things numpy cannot hold
            raise UserCodeError(f"{where} something that is not an array ({_what(exc)})") from None
        if out.dtype.kind not in "fiu":
            raise UserCodeError(f"{where} actions of dtype {out.dtype} "
                                f"({type(actions).__name__}); it must return numbers")
        expected = f"({n}, {self.act_dim if self.act_dim is not None else 'act_dim'})"
        if out.ndim != 2 or out.shape[0] != n or (self.act_dim is not None
                                                  and out.shape[1] != self.act_dim):
            raise UserCodeError(f"{where} actions of shape {out.shape} for {n} observations; "
                                f"expected {expected} (act(obs (N, obs_dim)) -> actions "
                                "(N, act_dim))")
        bad = ~np.isfinite(out)
        if bad.any():
            raise UserCodeError(f"{where} {int(bad.sum())} non-finite action values (NaN or "
                                f"inf) for {n} observations; actions must be finite")
        with np.errstate(over="ignore"):
            single = out.astype(np.float32)  # the precision the rollout steps and records in
        beyond = ~np.isfinite(single)
        if beyond.any():
            raise UserCodeError(f"{where} {int(beyond.sum())} action values beyond the float32 "
                                f"range (|a| > 3.4e38, e.g. {float(out[beyond][0]):.3g}) for {n} "
                                "observations; actions must be float32 numbers")
        return out

    def __getattr__(self, name: str) -> Any:  # name, obs_dim, ... of the user's object
        if name == "actor":
            raise AttributeError(name)
        try:
            return getattr(self.actor, name)
        except AttributeError:  # absent: what callers asking getattr(actor, x, None) expect
            raise
        except BaseException as exc:  # noqa: BLE001  (their __getattr__ or property)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise UserCodeError(f"--policy {self.spec!r}: reading its {name!r} raised "
                                f"{_what(exc)}") from None
