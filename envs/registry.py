"""The registry of the qbc environments (:data:`ENVS`): each env module registers its ids with
:func:`register_env` next to its classes, which also registers them with Gymnasium (the single
env and its native vector version), so ``gymnasium.make("qbc/<Name>-v0")`` works after
``import qbc``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gymnasium.envs.registration import register, registry

from qbc.registry import Registry

#: Default horizon (TimeLimit) of every registered env.
DEFAULT_HORIZON = 200


@dataclass(frozen=True)
class EnvSpec:
    """One registered id: the Gymnasium entry points (``module:class``) of the single env and of
    its native vector version (None: Gymnasium's ``SyncVectorEnv``), the keyword arguments
    registered with it and its time limit. ``upstream``: the third-party env id it wraps (a
    Gymnasium-Robotics task, :mod:`qbc.envs.robotics`), None for qbc's own envs (keyed noise,
    any horizon a valid episode); ``expert``: the env's scripted expert, its default one."""

    entry_point: str
    vector_entry_point: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    horizon: int = DEFAULT_HORIZON
    upstream: str | None = None
    expert: str | None = None


#: The qbc env ids, each registered by the module of its classes.
ENVS: Registry[EnvSpec] = Registry("env", name_attr=None)


def register_env(env_id: str, env: Callable[..., Any], vector_env: type | None,
                 horizon: int = DEFAULT_HORIZON, upstream: str | None = None,
                 expert: str | None = None, **kwargs: Any) -> EnvSpec:
    """Register ``env_id`` (``qbc/<Name>-v<N>``) as ``env`` (a class or a function that makes
    the env) with ``kwargs`` and a time limit of ``horizon`` steps, ``vector_env`` its native
    vector version (None: none), here and with Gymnasium; ``upstream`` and ``expert`` as in
    :class:`EnvSpec`."""
    vector = (None if vector_env is None
              else f"{vector_env.__module__}:{vector_env.__qualname__}")
    spec = ENVS.add(env_id, EnvSpec(f"{env.__module__}:{env.__qualname__}", vector, kwargs,
                                    horizon, upstream, expert))
    if env_id not in registry:  # importlib reloads must not warn about re-registration
        register(id=env_id, entry_point=spec.entry_point,
                 vector_entry_point=spec.vector_entry_point, max_episode_steps=horizon,
                 kwargs=kwargs)
    return spec
