"""Executing action chunks: a chunk policy becomes an Actor for the one rollout loop.

A chunk policy predicts the next k actions from an observation::

    predict_chunks(obs (B, obs_dim), prev_action=None) -> chunks (B, k, D)
                                                        or (chunks, failed (B,) bool)

(``prev_action`` (B, D) is the last executed action of each row, for decode-repair rules such as
``hold-last-action``; ``failed`` flags rows whose token sequence did not decode and was repaired).
:class:`ChunkExecutor` turns it into ``act(obs (B, obs_dim)) -> (B, D)`` by one of three modes:

- ``open-loop``: execute all k actions of a chunk, then predict the next chunk;
- ``receding:m``: execute the first m actions (1 <= m <= k), then re-plan (``receding:k`` is
  ``open-loop``; ``receding:1`` re-plans every step and executes the chunk's first action);
- ``ensemble:c``: ACT temporal ensembling (Zhao et al. 2023). Re-plan every step; the action at
  step t is the weighted mean of every prediction made for step t (the chunk predicted j steps
  ago contributes its action j, for j < k), with weights ``exp(-c * i)`` normalised to sum to 1,
  where **i = 0 is the oldest prediction** (weight 1) and i grows towards the newest, as in
  ACT's reference code. c = 0 is the plain average; c > 0 favours older predictions.

All modes are batched over the B env copies with numpy (no per-copy loop). Rows re-plan only
when they need to, so ``reset_rows(mask)`` may restart some rows while the others continue.
``decode_failures`` counts repaired chunks over the executor's life (``reset`` keeps it) and
``n_chunks`` the chunks predicted, for rollout metrics; ``actions_per_second`` is the actions
returned per second spent in ``act`` (the decode throughput of the mode, batch included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from qbc.errors import InvalidValueError

#: The execution modes of ``--execute``.
EXECUTION_MODES = ("open-loop", "receding", "ensemble")


@dataclass(frozen=True)
class ExecutionSpec:
    """A parsed ``--execute`` value: ``mode`` and its number (m of receding, c of ensemble)."""

    mode: str
    value: float | None = None

    def __str__(self) -> str:
        if self.mode == "open-loop":
            return "open-loop"
        value = int(self.value) if self.mode == "receding" else f"{self.value:g}"
        return f"{self.mode}:{value}"


def parse_execute(spec: str) -> ExecutionSpec:
    """``"open-loop"``, ``"receding:m"`` (integer m >= 1) or ``"ensemble:c"`` (c >= 0) ->
    :class:`ExecutionSpec`; anything else raises InvalidValueError in one line."""
    usage = "use open-loop, receding:M (an integer M >= 1) or ensemble:C (a number C >= 0)"
    text = str(spec).strip()
    mode, _, arg = text.partition(":")
    if mode == "open-loop" and not arg:
        return ExecutionSpec("open-loop")
    try:
        if mode == "receding" and arg.strip().isdigit() and int(arg) >= 1:
            return ExecutionSpec("receding", int(arg))
        if mode == "ensemble" and np.isfinite(float(arg)) and float(arg) >= 0:
            return ExecutionSpec("ensemble", float(arg))
    except ValueError:
        pass
    raise InvalidValueError(f"bad --execute {text!r}; {usage}")


def ensemble_weights(n_valid: np.ndarray, k: int, c: float) -> np.ndarray:
    """Temporal-ensembling weights (B, k) over the predictions for the current step.

    Column a is the prediction made a steps ago (a = 0 newest); a row has ``n_valid`` (B,)
    predictions (a < n_valid). ACT's age index is i = n_valid - 1 - a (0 = oldest), weight
    ``exp(-c i)``; invalid columns get 0; each row sums to 1."""
    a = np.arange(k)[None, :]
    n = np.asarray(n_valid)[:, None]
    w = np.where(a < n, np.exp(-c * (n - 1 - a)), 0.0)
    return w / w.sum(axis=1, keepdims=True)


class ChunkExecutor:
    """An Actor executing the chunks of ``chunk_policy`` by ``execute`` (see the module text).

    ``chunk_policy`` needs ``predict_chunks`` and ``chunk_len`` (k); its ``obs_dim``,
    ``act_dim`` and ``env_id`` are passed through when present.
    """

    def __init__(self, chunk_policy: Any, execute: str | ExecutionSpec = "open-loop"):
        self.policy = chunk_policy
        self.spec = execute if isinstance(execute, ExecutionSpec) else parse_execute(execute)
        self.k = int(chunk_policy.chunk_len)
        if self.spec.mode == "receding" and self.spec.value > self.k:
            raise InvalidValueError(
                f"--execute {self.spec}: m = {int(self.spec.value)} is longer than the policy's "
                f"chunks (k = {self.k}); use receding:M with M <= {self.k}")
        self.decode_failures = 0
        self.n_chunks = 0
        self.n_actions = 0          # actions returned by act, summed over rows
        self.act_seconds = 0.0      # wall time spent in act (prediction, decoding, blending)
        self.reset()

    # -- pass-through facts (rollout checks use them) -------------------------------------------
    @property
    def chunk_len(self) -> int:
        return self.k

    def __getattr__(self, name: str) -> Any:
        if name in ("obs_dim", "act_dim", "env_id", "kind"):
            return getattr(self.policy, name)
        raise AttributeError(name)

    @property
    def horizon(self) -> int:
        """Actions executed from a chunk before re-planning (1 for ensembling)."""
        if self.spec.mode == "open-loop":
            return self.k
        return int(self.spec.value) if self.spec.mode == "receding" else 1

    def bind_env(self, env: Any) -> None:
        """Pass the rollout's env to a policy that reads it (the chunk floor's planner)."""
        if hasattr(self.policy, "bind_env"):
            self.policy.bind_env(env)

    # -- state ------------------------------------------------------------------------------------
    def reset(self, obs: np.ndarray | None = None) -> None:
        """Forget every row's chunks (start of a batch of episodes); counters are kept."""
        self._chunks: np.ndarray | None = None  # (B, k, D) or, ensembling, (B, k ages, k, D)
        self._age: np.ndarray | None = None      # (B,) steps since the row's last plan
        self._n_valid: np.ndarray | None = None  # (B,) ensembling: predictions made, <= k
        self._last: np.ndarray | None = None     # (B, D) last executed action
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def reset_rows(self, mask: np.ndarray) -> None:
        """Rows where ``mask`` (B,) is true restart: they re-plan at their next step."""
        if self._age is not None:
            mask = np.asarray(mask, dtype=bool)
            self._age[mask] = self.horizon
            self._n_valid[mask] = 0
            self._last[mask] = 0.0

    def _start(self, obs: np.ndarray, chunks: np.ndarray) -> None:
        B, _, D = chunks.shape
        shape = (B, self.k, self.k, D) if self.spec.mode == "ensemble" else (B, self.k, D)
        self._chunks = np.zeros(shape, dtype=np.float32)
        self._age = np.full(B, self.horizon, dtype=np.int64)
        self._n_valid = np.zeros(B, dtype=np.int64)
        self._last = np.zeros((B, D), dtype=np.float32)

    # -- acting -----------------------------------------------------------------------------------
    def _predict(self, obs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Chunks (R, k, D) for the rows ``rows`` (B,) bool, counting decode failures."""
        prev = None if self._last is None else self._last[rows]
        if getattr(self.policy, "takes_rows", False):  # plans from the env's own state
            out = self.policy.predict_chunks(obs[rows], prev_action=prev,
                                             rows=np.flatnonzero(rows))
        else:
            out = self.policy.predict_chunks(obs[rows], prev_action=prev)
        chunks, failed = out if isinstance(out, tuple) else (out, None)
        chunks = np.asarray(chunks, dtype=np.float32)
        if chunks.ndim != 3 or chunks.shape[1] != self.k or len(chunks) != int(rows.sum()):
            raise InvalidValueError(
                f"predict_chunks returned shape {chunks.shape}, expected ({int(rows.sum())}, "
                f"{self.k}, D)")
        self.n_chunks += len(chunks)
        if failed is not None:
            self.decode_failures += int(np.asarray(failed, dtype=bool).sum())
        return chunks

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (B, D) float32 for observations (B, obs_dim)."""
        t0 = time.perf_counter()
        obs = np.asarray(obs)
        B = len(obs)
        if self._age is None or len(self._age) != B:
            self._last = None  # a new batch of rows: nothing executed yet
            first = self._predict(obs, np.ones(B, dtype=bool))
            self._start(obs, first)
            action = self._store(self._step(obs, np.ones(B, dtype=bool), first))
        else:
            action = self._store(self._step(obs, self._age >= self.horizon, None))
        self.n_actions += B
        self.act_seconds += time.perf_counter() - t0
        return action

    @property
    def actions_per_second(self) -> float | None:
        """Actions returned per second of time spent in :meth:`act` so far (None before any)."""
        return self.n_actions / self.act_seconds if self.act_seconds > 0 else None

    def _step(self, obs: np.ndarray, replan: np.ndarray, new: np.ndarray | None) -> np.ndarray:
        if self.spec.mode == "ensemble":
            return self._ensemble_step(obs, new)
        if replan.any():
            self._chunks[replan] = self._predict(obs, replan) if new is None else new
            self._age[replan] = 0
        action = self._chunks[np.arange(len(obs)), self._age]
        self._age += 1
        return action

    def _ensemble_step(self, obs: np.ndarray, new: np.ndarray | None) -> np.ndarray:
        """Shift every row's predictions one step older, add the new chunk as age 0, and blend
        the k (or fewer) predictions for this step: age a contributes its action a."""
        everyone = np.ones(len(obs), dtype=bool)
        new = self._predict(obs, everyone) if new is None else new
        self._chunks = np.roll(self._chunks, 1, axis=1)
        self._chunks[:, 0] = new
        self._n_valid = np.minimum(self._n_valid + 1, self.k)
        ages = np.arange(self.k)
        candidates = self._chunks[:, ages, ages]  # (B, k ages, D): age a's action for now
        w = ensemble_weights(self._n_valid, self.k, float(self.spec.value))
        return np.einsum("ba,bad->bd", w, candidates).astype(np.float32)

    def _store(self, action: np.ndarray) -> np.ndarray:
        self._last = action.astype(np.float32)
        return self._last.copy()

    def __repr__(self) -> str:
        return f"ChunkExecutor({self.policy!r}, execute={str(self.spec)!r})"


def execution_metrics(actors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per chunk-executing actor: its mode, chunk length, chunks predicted and decode failures
    (repaired chunks), JSON-safe; actors that do not execute chunks are left out."""
    return {name: {"execute": str(a.spec), "chunk_len": a.k, "chunks": a.n_chunks,
                   "decode_failures": a.decode_failures}
            for name, a in actors.items() if isinstance(a, ChunkExecutor)}


def execute_policy(policy: Any, execute: str | None) -> Any:
    """The actor a rollout runs for ``policy``: a chunk policy (one with ``predict_chunks``)
    wrapped in a :class:`ChunkExecutor` (``execute`` default ``open-loop``); any other policy
    unchanged, and refused with an ``execute`` (InvalidValueError: it has no chunks)."""
    if hasattr(policy, "predict_chunks"):
        return ChunkExecutor(policy, execute or "open-loop")
    if execute is not None:
        parse_execute(execute)  # a bad spec says so first
        raise InvalidValueError(
            f"--execute {execute} applies to chunk policies (qbc train-chunked); this policy "
            "predicts one action per step: drop --execute")
    return policy
