"""Experts: batched, clipped actions from a control law, plus a registry to make them by name.

Every expert acts on batches, ``act(obs (B, obs_dim)) -> actions (B, act_dim)`` float32, clipped
to the env's action bounds. With ``noise_std > 0`` an expert is stochastic: ``act(...,
deterministic=False, rng=...)`` adds N(0, noise_std^2) to each action coordinate before clipping,
drawn from ``rng`` (or, when ``rng`` is None, from the expert's own generator seeded by its
``seed`` parameter, so runs repeat).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from qbc.agents.base import Expert
from qbc.agents.detour import DetourExpert
from qbc.agents.expert_zoo import available_zoo, make_actor_expert, make_zoo_expert
from qbc.agents.fetch import FetchPickAndPlaceExpert, FetchPushExpert
from qbc.agents.maze import MazePlannerExpert
from qbc.agents.sb3 import SB3Expert
from qbc.envs.control import lqr_gain
from qbc.envs.make import opened_env
from qbc.envs.registry import ENVS
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.validate import NON_NEGATIVE, SEED, Rule, check_value
from qbc.registry import Registry


def env_info(env: Any) -> dict[str, Any]:
    """Dimensions, action bounds and (where it has them) the linear model of an env or vector
    env: keys obs_dim, act_dim, low, high, model (the unwrapped env, or None), env_id, task (the
    unwrapped single env, of a vector env its first copy: what scripted experts read)."""
    action_space = getattr(env, "single_action_space", env.action_space)
    obs_space = getattr(env, "single_observation_space", env.observation_space)
    if not isinstance(action_space, gym.spaces.Box) or not isinstance(obs_space, gym.spaces.Box):
        env_id = getattr(getattr(env, "spec", None), "id", None)
        flat = [i for i in ENVS if env_id is not None and ENVS[i].upstream == env_id]
        hint = f"; use {flat[0]} (its flattened observations)" if flat else ""
        raise InvalidValueError(f"experts need Box observation and action spaces{hint}")
    base = env.unwrapped
    copies = getattr(env, "envs", None)  # Gymnasium's SyncVectorEnv
    return {
        "obs_dim": int(np.prod(obs_space.shape)),
        "act_dim": int(np.prod(action_space.shape)),
        "low": np.asarray(action_space.low, dtype=np.float64),
        "high": np.asarray(action_space.high, dtype=np.float64),
        "model": base if hasattr(base, "linearization") else None,
        "env_id": env.spec.id if getattr(env, "spec", None) is not None else None,
        "task": copies[0].unwrapped if copies else base,
    }


def _lqr_gain_of(info: dict[str, Any], name: str) -> np.ndarray:
    model = info["model"]
    if model is None:
        env = info.get("env_id") or "this env"
        zoo = f"--expert zoo:{env} (a shipped actor), " if env in available_zoo() else ""
        raise InvalidValueError(
            f"expert {name!r} needs an env with linearization() and cost_matrices() (the qbc/ "
            f"envs); for {env} pass {zoo}--expert sb3 --expert-path PATH (a stable-baselines3 zip, "
            f"e.g. from `qbc expert train --env {env}`), or --expert linear --expert-params "
            """'{"K": [[...]]}' with a gain of shape (act_dim, obs_dim)"""
        )
    # a task env (or the template of its native vector env) that names its own expert
    own = getattr(getattr(model, "env", model), "expert", None)
    if own is not None:
        raise InvalidValueError(
            f"expert {name!r} does not fit {info.get('env_id') or type(model).__name__} (no LQR "
            f"solution: it is not a linear-control task); use --expert {own}")
    A, B = model.linearization()
    Q, R = model.cost_matrices()
    return lqr_gain(A, B, Q, R)


class LinearExpert(Expert):
    """u = -K x (a linear state feedback), clipped to the action bounds."""

    name = "linear"

    def __init__(self, info: dict[str, Any], K: np.ndarray, params: dict[str, Any],
                 noise_std: float = 0.0, seed: int = 0):
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (self.act_dim, self.obs_dim) or not np.all(np.isfinite(K)):
            raise InvalidValueError(
                f"gain K must be finite with shape (act_dim, obs_dim) = "
                f"{(self.act_dim, self.obs_dim)}, got shape {K.shape}"
            )
        self.K = K

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        return -obs @ self.K.T


class ArctanExpert(Expert):
    """u = scale * arctan(x), coordinate-wise (needs obs_dim == act_dim); the expert of Cao &
    Xie's Theorem 6 on ``qbc/Arctan-v0``."""

    name = "arctan"

    def __init__(self, info: dict[str, Any], scale: float = 1.0, noise_std: float = 0.0,
                 seed: int = 0):
        super().__init__(info, {"scale": float(scale)}, noise_std=noise_std, seed=seed)
        if self.obs_dim != self.act_dim:
            raise InvalidValueError(
                f"the arctan expert needs obs_dim == act_dim, got {self.obs_dim} and "
                f"{self.act_dim}; use it on qbc/Arctan-v0 or another scalar env"
            )
        self.scale = float(scale)

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        return self.scale * np.arctan(obs)


#: Expert factories by name, ``factory(info, **params) -> Expert`` (``info``: the dict of
#: :func:`env_info`); each registered where it is defined, with :func:`register_expert`.
EXPERTS: Registry[Callable[..., Expert]] = Registry("expert", name_attr=None)


def register_expert(name: str) -> Callable:
    """Decorator registering ``factory(info, **params) -> Expert`` under ``name``; ``info`` is
    the dict of :func:`env_info`."""
    return EXPERTS.register(name)


@register_expert("lqr")
def _make_lqr(info, noise_std: float = 0.0, seed: int = 0) -> LinearExpert:
    """LQR on the env's linearisation and cost matrices (scipy's discrete Riccati solver)."""
    expert = LinearExpert(info, _lqr_gain_of(info, "lqr"), {}, noise_std=noise_std, seed=seed)
    expert.name = "lqr"
    return expert


@register_expert("linear")
def _make_linear(info, K: Any = None, gain_scale: float = 1.0, noise_std: float = 0.0,
                 seed: int = 0) -> LinearExpert:
    """u = -gain_scale * K x, with K given or the LQR gain (gain_scale != 1 detunes it, e.g.
    to make the closed loop unstable on purpose)."""
    base = _lqr_gain_of(info, "linear") if K is None else np.asarray(K, dtype=np.float64)
    params = {"K": None if K is None else np.asarray(K, dtype=np.float64).tolist(),
              "gain_scale": float(gain_scale)}
    return LinearExpert(info, float(gain_scale) * base, params, noise_std=noise_std, seed=seed)


@register_expert("arctan")
def _make_arctan(info, scale: float = 1.0, noise_std: float = 0.0, seed: int = 0):
    """u = scale * arctan(x)."""
    return ArctanExpert(info, scale=scale, noise_std=noise_std, seed=seed)


@register_expert("sb3")
def _make_sb3(info, path: str, algo: str = "sac", noise_std: float = 0.0, seed: int = 0):
    """A saved stable-baselines3 model (SAC, TD3 or PPO), acting with its deterministic action."""
    return SB3Expert(info, path=path, algo=algo, noise_std=noise_std, seed=seed)


@register_expert("actor")
def _make_actor(info, path: str, noise_std: float = 0.0, seed: int = 0):
    """An actor folder (actor.safetensors + actor.json, e.g. from ``qbc expert train``)."""
    return make_actor_expert(info, path=path, noise_std=noise_std, seed=seed)


def _make_zoo(info, entry: str, noise_std: float = 0.0, seed: int = 0):
    """The zoo's actor for env id ``entry`` (the name ``zoo:<entry>``)."""
    return make_zoo_expert(info, entry=entry, noise_std=noise_std, seed=seed)


@register_expert("detour")
def _make_detour(info, margin: float = 0.2, width: float = 0.35, speed: float = 1.0,
                 gain: float = 3.0, noise_std: float = 0.0, seed: int = 0):
    """The detour task's scripted demonstrator: left or right with probability 1/2."""
    return DetourExpert(info, margin=margin, width=width, speed=speed, gain=gain,
                        noise_std=noise_std, seed=seed)


@register_expert("fetch-push")
def _make_fetch_push(info, behind: float = 0.06, hover: float = 0.06, gain: float = 1.0,
                     speed: float = 0.4, tolerance: float = 0.015, noise_std: float = 0.0,
                     seed: int = 0):
    """The scripted pusher of qbc/FetchPush-v4 (Gymnasium-Robotics, flattened)."""
    return FetchPushExpert(info, behind=behind, hover=hover, gain=gain, speed=speed,
                           tolerance=tolerance, noise_std=noise_std, seed=seed)


@register_expert("fetch-pick-and-place")
def _make_fetch_pick_and_place(info, hover: float = 0.05, gain: float = 1.0,
                               noise_std: float = 0.0, seed: int = 0):
    """The scripted pick-and-place of qbc/FetchPickAndPlace-v4 (Gymnasium-Robotics)."""
    return FetchPickAndPlaceExpert(info, hover=hover, gain=gain, noise_std=noise_std, seed=seed)


@register_expert("maze-planner")
def _make_maze_planner(info, kp: float = 10.0, kd: float = 1.0, noise_std: float = 0.0,
                       seed: int = 0):
    """PointMaze's waypoint planner: shortest routes, ties broken at random per episode."""
    return MazePlannerExpert(info, kp=kp, kd=kd, noise_std=noise_std, seed=seed)


ZOO_PREFIX = "zoo:"


def available_experts() -> list[str]:
    """Names that :func:`make_expert` accepts, sorted (``zoo:<env id>`` for each zoo entry)."""
    return sorted([*EXPERTS.names(), *(ZOO_PREFIX + e for e in available_zoo())])


def _factory(name: str) -> Callable[..., Expert]:
    """The factory of ``name``; ``zoo:<env id>`` is the zoo factory with that entry bound."""
    if isinstance(name, str) and name.startswith(ZOO_PREFIX):
        entry = name[len(ZOO_PREFIX):]
        if entry not in available_zoo():
            raise UnknownNameError("zoo expert", name, [ZOO_PREFIX + e for e in available_zoo()])

        def zoo(info, noise_std: float = 0.0, seed: int = 0) -> Expert:
            return _make_zoo(info, entry, noise_std=noise_std, seed=seed)

        return zoo
    if name not in EXPERTS:
        raise UnknownNameError("expert", name, available_experts())
    return EXPERTS[name]


def _check_param_types(name: str, factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Refuse expert parameters of the wrong type or range (by the factory's annotations:
    float finite, int integral, str a string; seed in [0, 2^32), noise_std >= 0)."""
    sig = inspect.signature(factory).parameters
    for key, value in params.items():
        kind = str(sig[key].annotation)
        what = f"parameter {key!r} of expert {name!r}"
        if key == "seed":
            check_value(value, SEED, what)
        elif key == "noise_std":
            check_value(value, NON_NEGATIVE, what)
        elif kind in ("float", "int"):
            check_value(value, Rule(integer=kind == "int"), what)
        elif kind == "str" and not isinstance(value, str):
            raise InvalidValueError(f"{what} must be a string, got {value!r}")


def make_expert(
    name: str | dict[str, Any] | Expert, env: str | gym.Env | Any, **params: Any
) -> Expert:
    """Build the expert ``name`` for ``env`` (an env id, a gymnasium env or a vector env).

    Names: ``lqr``, ``linear`` (K=..., gain_scale=...), ``arctan`` (scale=...), ``sb3``
    (path=..., algo="sac"|"td3"|"ppo"), ``actor`` (path=an actor folder), ``detour`` (the
    detour task's left-or-right demonstrator: margin, width, speed, gain), ``zoo:<env id>``
    (the shipped actor, see ``qbc expert list``); every expert also takes ``noise_std`` and
    ``seed``.
    ``name`` may also be a dict from :meth:`Expert.to_dict` (its params, updated by ``params``)
    or an Expert, returned unchanged.
    """
    if isinstance(name, Expert):
        return name
    if isinstance(name, dict):
        if "name" not in name:
            raise InvalidValueError(f"expert dict needs a 'name' key, got {sorted(name)}")
        params = {**name.get("params", {}), **params}
        name = name["name"]
    factory = _factory(name)
    try:
        inspect.signature(factory).bind(None, **params)
    except TypeError as exc:
        valid = [p for p in inspect.signature(factory).parameters if p != "info"]
        if "path" in params and "path" not in valid:  # --expert-path with lqr, zoo:..., ...
            raise InvalidValueError(f"expert {name!r} reads no model file: leave --expert-path "
                                    "out (it is for the sb3 and actor experts)") from None
        if "path" in valid and "path" not in params:
            raise InvalidValueError(f"expert {name!r} loads a model file: pass it with "
                                    "--expert-path") from None
        raise InvalidValueError(
            f"bad parameters for expert {name!r} ({exc}); valid parameters: {', '.join(valid)}"
        ) from None
    _check_param_types(name, factory, params)
    with opened_env(env) as env_obj:
        info = env_info(env_obj)
    expert = factory(info, **params)
    expert.name = name
    return expert
