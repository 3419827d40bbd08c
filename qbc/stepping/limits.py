"""What a rollout of an env can claim: whether its seeds couple it exactly, horizons capped at a
third-party env's time limit, and whether its stored trajectories fit in memory."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from qbc.envs.make import check_env_id, make_env
from qbc.envs.registry import ENVS
from qbc.errors import QbcWarning
from qbc.infra.validate import check_memory


# -- what a rollout of an env can claim -----------------------------------------------------------
def is_keyed_env(env_id: str) -> bool:
    """True for qbc's own envs: initial state and process noise are drawn from the episode seed
    alone (keyed noise), so rollouts from the same seeds are exactly coupled, and their time
    limit is only a default episode length (any horizon is a valid episode). False for the
    ``qbc/`` versions of Gymnasium-Robotics tasks (``EnvSpec.upstream``) and other envs."""
    return env_id.startswith("qbc/") and (env_id not in ENVS or ENVS[env_id].upstream is None)


def cap_horizons(env_id: str, horizons: Sequence[int]) -> tuple[list[int], str | None]:
    """Horizons (sorted) capped at the env's time limit, and a one-line warning if any were cut.

    A third-party env's ``spec.max_episode_steps`` (Pendulum-v1: 200) is part of its task, so
    horizons above it are dropped and the limit itself is kept as the largest horizon. qbc envs
    (:func:`is_keyed_env`) are not capped. Returns ``(horizons, message or None)``.
    """
    hs = sorted({int(h) for h in horizons})
    limit = check_env_id(env_id).max_episode_steps
    if is_keyed_env(env_id) or limit is None or hs[-1] <= limit:
        return hs, None
    dropped = [h for h in hs if h > limit]
    kept = sorted({h for h in hs if h <= limit} | {int(limit)})
    return kept, (f"{env_id} ends episodes after {limit} steps (its time limit): horizon(s) "
                  f"{', '.join(map(str, dropped))} capped, rolling out to H = {limit}")


def cap_horizon(env_id: str, horizon: int, what: str = "horizon(s)") -> int:
    """``horizon`` (a rollout horizon or an episode length) capped at a third-party env's time
    limit by :func:`cap_horizons`, with its one-line warning as a :class:`~qbc.errors.QbcWarning`
    when it was cut (``what`` names the setting in the warning, e.g. ``--eval-horizon``). qbc's
    own envs and unregistered ids are returned unchanged."""
    import gymnasium as gym

    if env_id not in gym.registry:
        return int(horizon)
    (capped,), message = cap_horizons(env_id, [int(horizon)])
    if message:
        warnings.warn(message.replace("horizon(s)", what, 1), QbcWarning, stacklevel=2)
    return capped


def check_rollout_memory(env_id: str, n_actors: int, episodes: int, horizon: int,
                         fix: str = "use fewer --episodes or a smaller horizon") -> None:
    """Refuse a coupled rollout whose stored trajectories (float64 observations and actions,
    rewards, per actor, episode and step) would not fit in the available memory."""
    env = make_env(env_id)
    try:
        width = int(np.prod(env.observation_space.shape)) + int(np.prod(env.action_space.shape))
    finally:
        env.close()
    n_bytes = float(n_actors) * episodes * (horizon + 1) * (width + 2) * 8
    check_memory(n_bytes, f"{n_actors} x {episodes} episodes x {horizon} steps of {env_id}", fix)
