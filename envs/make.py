"""Making Gymnasium envs by id, with typed errors, and their fastest vector version.

This module is part of :mod:`qbc.envs`, so importing it registers the ``qbc/...`` ids, also when
a folder named ``qbc`` in the working directory shadows the package root as an empty namespace
package (whose import registers nothing)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym

from qbc.errors import InvalidValueError, QbcError, UnknownNameError


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of a registered env id; an unknown id lists the qbc envs and the closest ids."""
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        valid = [i for i in gym.registry if i.startswith("qbc/")] + close
        raise UnknownNameError("env id", env_id, set(valid))
    return gym.spec(env_id)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with an unknown id turned into :class:`UnknownNameError`, and an env
    whose constructor refuses the arguments (``qbc/LinearSystem-v0`` without ``A`` and ``B``)
    into InvalidValueError."""
    check_env_id(env_id)
    with _constructor_errors(env_id, kwargs):
        return gym.make(env_id, **kwargs)


@contextmanager
def _constructor_errors(env_id: str, kwargs: dict[str, Any]) -> Iterator[None]:
    """A TypeError or ValueError from the env's constructor (missing or bad arguments) as one
    InvalidValueError line naming the env; qbc's own errors (a missing optional extra) pass as
    they are."""
    try:
        yield
    except QbcError:
        raise
    except (TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first.split(" was raised from the environment creator")[0]
        given = f" with {sorted(kwargs)}" if kwargs else " with its default settings"
        raise InvalidValueError(
            f"{env_id} cannot be made{given} ({type(exc).__name__}: {first}); it needs other "
            "arguments, or use another env") from None


@contextmanager
def opened_env(env: str | gym.Env | Any, **kwargs: Any) -> Iterator[Any]:
    """The env for the body: made from an id (with ``kwargs``, by :func:`make_env`) and closed
    afterwards, or an env instance passed through as it is and left open (its owner closes it).
    ``kwargs`` with an instance raise InvalidValueError."""
    if not isinstance(env, str):
        if kwargs:
            raise InvalidValueError("env keyword arguments need an env id, not an env instance")
        yield env
        return
    made = make_env(env, **kwargs)
    try:
        yield made
    finally:
        made.close()


def make_vector_env(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """The env's native vector version when it has one, else a ``SyncVectorEnv``; copy ``i`` of
    ``reset(seed=s)`` plays the episode of the single env reset with ``s + i``."""
    spec = check_env_id(env_id)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    with _constructor_errors(env_id, kwargs):
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
