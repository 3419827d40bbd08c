"""The chunk floor: the quantized chunk expert, the analogue of q#pi* for chunk policies.

At every state where a chunk policy plans, the chunk floor takes the expert's own next k actions
from that state — its plan, without future noise — sends them through the policy's chunk
tokenizer (encode, then decode) and hands them to the same :class:`ChunkExecutor` mode as the
learner (open-loop, receding:m, ensemble:c). Its regret is what the tokenizer and the execution
mode cost by themselves; the learner's excess over it is what learning costs.

How the plan is made (:func:`make_planner`):

- qbc envs (``qbc/...``: they have a noise-free batched model ``dynamics(x, u)``; observations
  are the state): the model is stepped from the current state with the expert's clipped action,
  x_{i+1} = f(x_i, u_i), u_i = expert(x_i). The state is read from the rollout's env when one is
  bound (float64), else taken from the observation (float32). For a linear expert u = -K x on a
  linear env whose actions are not clipped this is the closed form u_{t+i} = -K (A - BK)^i x_t
  (:func:`lqr_plan`; a test checks they agree).
- other Gymnasium envs (MuJoCo, classic control): a private copy of the simulator, stepped with
  the expert. The copy is made by :func:`copy_sim_state` from the rollout's env copy at the
  planning step: MuJoCo envs by ``set_state(qpos, qvel)`` (with ``act`` and ``time`` copied too:
  the whole integrated state of a MuJoCo model), classic-control envs by copying their ``state``
  attribute. These simulators have no noise of their own, so the copy is the noise-free
  future; a test checks that the copy reproduces the env's own next observation. The rollout
  binds its env to the planner (:meth:`SimulatorPlanner.bind_env`, called by
  :func:`qbc.stepping.loop.run_steps` and by the video writer).

- envs whose state neither copies (the Gymnasium-Robotics tasks: their episode's goal lives
  outside MuJoCo's state, and they have no ``set_state``): no plan, so no chunk floor;
  :func:`make_planner` returns None and the commands report the floor as n/a.

Without a chunk tokenizer (``chunk-mlp-l1`` policies) the floor is the unquantized expert plan,
executed in the learner's mode (``chunk_expert``): what execution alone costs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.chunking.execution import ChunkExecutor
from qbc.envs.make import make_env
from qbc.errors import InvalidValueError

#: Rollout names of the floor actor, with and without a chunk tokenizer.
FLOOR_NAMES = ("quantized_chunk_expert", "chunk_expert")


def lqr_plan(K: np.ndarray, A: np.ndarray, B: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """The closed-form noise-free plan of u = -K x on x' = A x + B u: u_{t+i} = -K (A - BK)^i x_t
    for i < k; x (N, n) -> actions (N, k, m) (no clipping)."""
    closed = A - B @ K
    out, state = [], np.asarray(x, dtype=np.float64)
    for _ in range(k):
        out.append(-state @ K.T)
        state = state @ closed.T
    return np.stack(out, axis=1)


def _unwrapped_copies(env: Any) -> list[Any] | Any:
    """The unwrapped env of each copy of a vector env (a list), or the unwrapped single env."""
    if hasattr(env, "envs"):  # SyncVectorEnv / AsyncVectorEnv-like with the copies in-process
        return [e.unwrapped for e in env.envs]
    return env.unwrapped


class ModelPlanner:
    """Plans on a qbc env's noise-free model ``dynamics`` (see the module text) of the env made
    with ``env_kwargs``."""

    def __init__(self, env_id: str, expert: Any, env_kwargs: dict[str, Any] | None = None):
        env = make_env(env_id, **(env_kwargs or {}))
        self.model = env.unwrapped
        env.close()
        self.expert = expert
        self._env: Any = None

    def bind_env(self, env: Any) -> None:
        """Read exact (float64) states from ``env`` (the rollout's vector or single env)."""
        self._env = env.unwrapped if hasattr(env.unwrapped, "state") else None

    def _states(self, obs: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        if self._env is None:
            return np.asarray(obs, dtype=np.float64)
        state = np.atleast_2d(self._env.state)
        return state if rows is None else state[rows]

    def plan(self, obs: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Expert actions (N, k, m) from the states of the N rows (``rows``: their indices in
        the bound env; None: all copies, or the observations when no env is bound)."""
        x = self._states(obs, rows)
        actions = []
        for _ in range(k):
            u = np.asarray(self.expert.act(x), dtype=np.float64)
            actions.append(u)
            x = self.model.dynamics(x, self.model.clip_action(u))
        return np.stack(actions, axis=1)


def can_copy_state(env: Any) -> bool:
    """Whether :func:`copy_sim_state` can copy the unwrapped env ``env`` (reset already): a
    MuJoCo env with ``set_state``, or a classic-control env with a ``state``."""
    return (hasattr(env, "data") and hasattr(env, "set_state")) or getattr(
        env, "state", None) is not None


def copy_sim_state(src: Any, dst: Any) -> None:
    """Make ``dst`` (an unwrapped env of the same id) continue exactly as ``src`` would: MuJoCo
    by qpos, qvel, act and time (``set_state`` runs ``mj_forward``); classic control by its
    ``state`` attribute. Anything else raises InvalidValueError."""
    if hasattr(src, "data") and hasattr(dst, "set_state"):
        dst.set_state(src.data.qpos.copy(), src.data.qvel.copy())
        if src.data.act is not None and src.data.act.size:
            dst.data.act[:] = src.data.act
        dst.data.time = src.data.time
        return
    if getattr(src, "state", None) is not None:
        dst.state = np.array(src.state, copy=True)
        return
    raise InvalidValueError(
        f"cannot copy the simulator state of {type(src).__name__} (neither MuJoCo nor a "
        "classic-control env with a `state`); the chunk floor plans on such a copy")


class SimulatorPlanner:
    """Plans on private copies of a Gymnasium simulator (see the module text): one scratch env
    per planning row, stepped in lockstep so the expert acts on all rows at once. The copies
    are made with ``env_kwargs``, the keywords of the env whose states they copy."""

    def __init__(self, env_id: str, expert: Any, env_kwargs: dict[str, Any] | None = None):
        self.env_id, self.expert = env_id, expert
        self.env_kwargs = dict(env_kwargs or {})
        self._scratch: list[Any] = []  # wrapped envs (kept to close them)
        first = self._grow(1)[0]
        self.low = np.asarray(first.action_space.low, dtype=np.float64)
        self.high = np.asarray(first.action_space.high, dtype=np.float64)
        self._copies: list[Any] | None = None

    def _grow(self, n: int) -> list[Any]:
        while len(self._scratch) < n:
            env = make_env(self.env_id, **self.env_kwargs)
            env.reset(seed=0)
            self._scratch.append(env)
        return self._scratch[:n]

    def bind_env(self, env: Any) -> None:
        copies = _unwrapped_copies(env)
        self._copies = copies if isinstance(copies, list) else [copies]

    def plan(self, obs: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        if self._copies is None:
            raise InvalidValueError(
                "the simulator planner has no env to copy states from: roll it out with "
                "qbc.rollout.coupled.coupled_rollout (it binds the env) or call bind_env(env)")
        obs = np.asarray(obs, dtype=np.float32)
        rows = np.arange(len(obs)) if rows is None else np.asarray(rows)
        sims = [e.unwrapped for e in self._grow(len(rows))]
        for sim, row in zip(sims, rows, strict=True):
            copy_sim_state(self._copies[int(row)], sim)
        out = np.zeros((len(obs), k, len(self.low)))
        for i in range(k):
            u = np.asarray(self.expert.act(obs), dtype=np.float64)
            out[:, i] = u
            if i < k - 1:
                act = np.clip(u, self.low, self.high).astype(np.float32)
                obs = np.stack([sim.step(a)[0] for sim, a in zip(sims, act, strict=True)]
                               ).astype(np.float32)
        return out

    def close(self) -> None:
        for env in self._scratch:
            env.close()
        self._scratch = []


def make_planner(env_id: str, expert: Any, env_kwargs: dict[str, Any] | None = None
                 ) -> ModelPlanner | SimulatorPlanner | None:
    """The planner for ``env_id`` made with ``env_kwargs`` (those of the rollout's env): the
    noise-free model of an env that has one (the qbc envs' ``dynamics``), else a copy of the
    simulator; None where the simulator's state cannot be copied (:func:`can_copy_state`: the
    Gymnasium-Robotics tasks), which has no chunk floor."""
    env = make_env(env_id, **(env_kwargs or {}))
    try:
        has_model = hasattr(env.unwrapped, "dynamics") and hasattr(env.unwrapped, "clip_action")
        if not has_model:
            env.reset(seed=0)  # a classic-control env has its state from the first reset on
            if not can_copy_state(env.unwrapped):
                return None
    finally:
        env.close()
    kind = ModelPlanner if has_model else SimulatorPlanner
    return kind(env_id, expert, env_kwargs)


def chunk_floor_actor(env_id: str, expert: Any, chunk_len: int, tokenizer: Any, execute: Any,
                      env_kwargs: dict[str, Any] | None = None, env_name: str | None = None
                      ) -> Any:
    """The chunk floor in execution mode ``execute`` (a :class:`ChunkExecutor` of the
    :class:`QuantizedChunkExpert` of ``tokenizer``, None: the unquantized plans), or None on an
    env without a planner (:func:`make_planner`)."""
    planner = make_planner(env_id, expert, env_kwargs)
    if planner is None:
        return None
    return ChunkExecutor(QuantizedChunkExpert(planner, chunk_len, tokenizer, env_id=env_name),
                         execute)


class QuantizedChunkExpert:
    """A chunk 'policy' whose chunks are the expert's plans through a chunk tokenizer:
    ``predict_chunks(obs (R, obs_dim), prev_action=None, rows=None) -> (chunks (R, k, D)
    float32, failed (R,) bool)``; wrap it in :class:`~qbc.chunking.execution.ChunkExecutor`
    with the learner's mode. ``tokenizer`` None: the plans unquantized. ``n_clipped`` /
    ``n_values``: planned action values outside the tokenizer's fitted range do not exist for
    chunk codes (their encoders clip internally), so only decode failures are counted."""

    takes_rows = True  # the executor passes the row indices of the planning rows

    def __init__(self, planner: Any, chunk_len: int, tokenizer: Any = None,
                 env_id: str | None = None):
        if tokenizer is not None and int(tokenizer.chunk_len_) != int(chunk_len):
            raise InvalidValueError(f"the chunk tokenizer codes chunks of "
                                    f"{tokenizer.chunk_len_} actions, not {chunk_len}")
        self.planner, self.tokenizer = planner, tokenizer
        self.chunk_len = int(chunk_len)
        self.env_id = env_id

    @property
    def name(self) -> str:
        return FLOOR_NAMES[0] if self.tokenizer is not None else FLOOR_NAMES[1]

    def bind_env(self, env: Any) -> None:
        self.planner.bind_env(env)

    def predict_chunks(self, obs: np.ndarray, prev_action: np.ndarray | None = None,
                       rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        plan = self.planner.plan(np.asarray(obs), self.chunk_len, rows)
        if self.tokenizer is None:
            return plan.astype(np.float32), np.zeros(len(plan), dtype=bool)
        chunks, failed = self.tokenizer.decode_with_failures(self.tokenizer.encode(plan),
                                                             prev_action)
        return chunks.astype(np.float32), failed
