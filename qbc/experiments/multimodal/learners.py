"""The learners of the ledger (:mod:`qbc.experiments.multimodal.ledger`): what a learner name
means, training one on a seed's demonstrations, and the actors its cell rolls out.

Learner names:

- a per-step policy kind without tokens (``mlp-mse``, ``mlp-gaussian``): trained by
  ``qbc train``'s :func:`~qbc.training.train`, rolled out deterministically (the Gaussian at its
  mean, the action ``qbc rollout`` plays); no floor.
- ``KIND:QUANTIZER`` (``ar-transformer:uniform``, ``ar-transformer:smooth``,
  ``ar-transformer:kmeans``): a per-step token policy with ``bins`` tokens per action dimension,
  rolled out once per decoding; its floor is the quantized expert q#pi* of its own tokenizer
  (nearest rounding), rolled out on the same seeds.
- a chunk policy kind, ``chunk-ar-transformer`` or ``chunk-ar-transformer:TOKENIZER`` (default
  ``per-step``: per-step tokens of each of the chunk's k actions): trained by ``qbc
  train-chunked``'s :func:`~qbc.training.chunked.train_chunked` with ``chunk_k`` actions per
  chunk, executed ``execute`` (receding:1: re-planned every step) once per decoding; its floor is
  the quantized chunk expert (:mod:`qbc.chunking.floor`) in the same mode, where the env has a
  noise-free model to plan on (qbc's own envs). The Gymnasium-Robotics tasks have none: a copy of
  their simulator would not carry the episode's goal, which lives outside MuJoCo's state, so the
  chunk floor is not rolled out there (n/a).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.chunking import get_chunk_tokenizer_class
from qbc.chunking.execution import ChunkExecutor, parse_execute
from qbc.chunking.floor import ModelPlanner, QuantizedChunkExpert, make_planner
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.policy import ModelConfig
from qbc.policy.decoding import parse_decoding
from qbc.policy.registry import (
    POLICY_KINDS,
    check_policy_kind,
    chunk_policies,
    model_for,
    needs_tokenizer,
)
from qbc.quantizers import available_quantizers
from qbc.rollout.coupled import QuantizedExpert
from qbc.training import TrainConfig, train
from qbc.training.chunk_head import with_used_head_settings
from qbc.training.chunked import ChunkTrainConfig, train_chunked

#: The chunk tokenizer of a chunk learner named without one.
DEFAULT_CHUNK_TOKENIZER = "per-step"


@dataclass(frozen=True)
class Learner:
    """A parsed learner name: ``kind``, the per-step ``quantizer`` or the ``chunk_tokenizer``
    ('' where the kind has none)."""

    name: str
    kind: str
    quantizer: str = ""
    chunk_tokenizer: str = ""

    @property
    def chunked(self) -> bool:
        return self.kind in chunk_policies()

    @property
    def tokens(self) -> bool:
        return bool(self.quantizer or self.chunk_tokenizer)


@dataclass(frozen=True)
class Training:
    """What every learner of one cell is trained with (the ledger's settings)."""

    bins: int
    steps: int | None
    chunk_k: int
    model: ModelConfig
    device: str
    seed: int


def parse_learner(name: str) -> Learner:
    """``"ar-transformer:smooth"`` -> Learner; unknown kinds, quantizers and chunk tokenizers,
    and a quantizer for a kind without tokens, are refused in one line."""
    kind, _, part = name.partition(":")
    if kind in chunk_policies():
        if not POLICY_KINDS.meta(kind)["tokens"]:
            if part:
                raise InvalidValueError(f"learner {name!r}: {kind} has no tokens; write {kind!r}")
            return Learner(name, kind)
        get_chunk_tokenizer_class(part or DEFAULT_CHUNK_TOKENIZER)
        return Learner(name, kind, chunk_tokenizer=part or DEFAULT_CHUNK_TOKENIZER)
    check_policy_kind(kind)
    if not needs_tokenizer(kind):
        if part:
            raise InvalidValueError(f"learner {name!r}: {kind} has no tokens, so no quantizer; "
                                    f"write {kind!r}")
        return Learner(name, kind)
    if part and part not in available_quantizers():
        raise UnknownNameError("quantizer", part, available_quantizers())
    return Learner(name, kind, quantizer=part or "uniform")


def train_learner(learner: Learner, dataset_id: str, demos: Any, out: Path,
                  tr: Training) -> tuple[Any, dict[str, Any]]:
    """Train ``learner`` on ``demos`` (checkpoints under ``out``): (the policy, {val_loss,
    train_seconds})."""
    t0 = time.perf_counter()
    model = model_for(learner.kind, tr.model)  # less the settings this kind does not read
    if learner.chunked:
        cfg = ChunkTrainConfig(
            dataset=dataset_id, out=out, policy=learner.kind, chunk_k=tr.chunk_k,
            chunk_tokenizer=learner.chunk_tokenizer or DEFAULT_CHUNK_TOKENIZER,
            bins=tr.bins, model=model, steps=tr.steps, seed=tr.seed, device=tr.device,
            rollout_episodes=0, progress=False, tensorboard=False, overwrite=True)
        result = train_chunked(with_used_head_settings(cfg), demos)
        policy, val_loss = result["policy"], result["best_val_loss"]
    else:
        token = {"quantizer": learner.quantizer, "bins": tr.bins} if learner.tokens else {}
        cfg = TrainConfig(dataset=dataset_id, out=out, policy=learner.kind, **token,
                          model=model, steps=tr.steps, seed=tr.seed, device=tr.device,
                          rollout_episodes=0, progress=False, tensorboard=False,
                          overwrite=True)
        summary = train(cfg, demos)
        policy, val_loss = summary.policy, summary.best_val_loss
    return policy, {"val_loss": val_loss, "train_seconds": time.perf_counter() - t0}


def learner_actors(learner: Learner, policy: Any, decodings: tuple[str, ...], execute: str,
                   seed: int) -> dict[str, tuple[Any, str]]:
    """The rolled-out versions of a trained ``learner``: label -> (actor, decoding). Token
    policies once per decoding (views sharing the weights), each sampled one drawing from its
    own CPU generator seeded with ``seed`` (the same draws for every learner: coupled); chunk
    policies inside a :class:`ChunkExecutor` of mode ``execute``."""
    if not learner.tokens:
        actor = ChunkExecutor(policy, execute) if learner.chunked else policy
        return {learner.name: (actor, "-")}
    actors = {}
    for decoding in decodings:
        view = decoded_view(policy, decoding, seed)
        actors[f"{learner.name} {decoding}"] = (
            ChunkExecutor(view, execute) if learner.chunked else view, decoding)
    return actors


def decoded_view(policy: Any, decoding: str, seed: int) -> Any:
    """A copy of the token ``policy`` (sharing its weights) that decodes by ``decoding``
    (:func:`~qbc.policy.decoding.parse_decoding`); sampled decoding draws from the view's own
    CPU generator seeded with ``seed``, so every view of every learner draws the same numbers
    (coupled)."""
    import torch

    view = copy.copy(policy)
    view.decode_mode, view.temperature = parse_decoding(decoding)
    view.generator = torch.Generator().manual_seed(seed)
    return view


def floor_actor(learner: Learner, policy: Any, env_id: str, expert: Any, bins: int,
                execute: str) -> tuple[str, Any] | None:
    """(label, actor) of ``learner``'s floor (see the module text), or None: a learner without
    tokens, or a chunk learner on an env without a noise-free model."""
    if not learner.tokens:
        return None
    if not learner.chunked:
        return f"q#pi* ({learner.quantizer}/{bins})", QuantizedExpert(expert, policy.tokenizer)
    planner = make_planner(env_id, expert)
    if not isinstance(planner, ModelPlanner):
        if planner is not None:
            planner.close()
        return None
    floor = QuantizedChunkExpert(planner, policy.chunk_len, policy.chunk_tokenizer)
    return (f"chunk floor ({learner.chunk_tokenizer}, k={policy.chunk_len}, {execute})",
            ChunkExecutor(floor, execute))


def check_execute(execute: str, chunk_k: int) -> str:
    """``execute`` if it is a chunk execution mode (open-loop, receding:M, ensemble:C) that
    chunks of ``chunk_k`` actions can run (receding:M with M <= chunk_k)."""
    spec = parse_execute(execute)
    if spec.mode == "receding" and spec.value > chunk_k:
        raise InvalidValueError(f"--execute {spec}: M is longer than --chunk-k {chunk_k}; use "
                                f"M <= {chunk_k}")
    return execute
