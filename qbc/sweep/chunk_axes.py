"""The chunk axes of a sweep file checked: ``[grid] chunk_tokenizers``, ``chunk_lens`` and
``executions`` (see :mod:`qbc.sweep.spec`), the [train] settings chunk policies need, and the
chunks fitting the episodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qbc.chunking import available_chunk_tokenizers, make_chunk_tokenizer
from qbc.chunking.execution import parse_execute
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.policy.decoding import parse_decoding
from qbc.sweep.entries import env_ids, normalize_named

if TYPE_CHECKING:  # annotations only: spec.py imports this module
    from qbc.sweep.spec import SweepSpec


def validate_chunk_axes(spec: SweepSpec, source: str = "the sweep file") -> None:
    """The chunk axes of a sweep with chunk policies: tokenizer names and parameters, k >= 1,
    execution modes (receding:M needs M <= the smallest k), chunk-compatible decode and model."""
    g, t = spec.grid, spec.train
    for entry in g.chunk_tokenizers:
        tok = normalize_named(entry, "chunk_tokenizers", source)
        if tok["name"] not in available_chunk_tokenizers():
            unknown = UnknownNameError("chunk tokenizer", tok["name"],
                                       available_chunk_tokenizers())
            raise InvalidValueError(f"[grid] chunk_tokenizers in {source}: {unknown}")
        bad = [k for k, v in tok["params"].items() if not isinstance(v, (str, int, float, bool))]
        if bad:
            raise InvalidValueError(f"[grid] chunk_tokenizers in {source}: {tok['name']} params "
                                    f"{bad} must be numbers, strings or booleans")
        try:
            make_chunk_tokenizer(tok["name"], **tok["params"])
        except InvalidValueError as exc:
            raise InvalidValueError(f"[grid] chunk_tokenizers in {source}: {exc}") from None
    if any(k < 1 for k in g.chunk_lens):
        raise InvalidValueError(f"[grid] chunk_lens must be >= 1, got {g.chunk_lens} ({source})")
    for text in g.executions:
        try:
            mode = parse_execute(text)
        except InvalidValueError:
            raise InvalidValueError(
                f"[grid] executions in {source}: bad execution mode {text!r}; use open-loop, "
                "receding:M (an integer M >= 1) or ensemble:C (a number C >= 0)") from None
        if mode.mode == "receding" and mode.value > min(g.chunk_lens):
            raise InvalidValueError(
                f"[grid] executions in {source}: {text} executes more actions than the shortest "
                f"chunk (chunk_lens {g.chunk_lens}); use receding:M with M <= {min(g.chunk_lens)}")
    if len({str(parse_execute(e)) for e in g.executions}) != len(g.executions):
        raise InvalidValueError(f"[grid] executions in {source} lists a mode twice: "
                                f"{g.executions!r}")
    if parse_decoding(t.decode)[0] not in ("argmax", "sample"):
        raise InvalidValueError(f"[train] decode in {source}: chunk policies decode by argmax or "
                                f"sample, not {t.decode!r}")
    if t.model.get("obs_history", 1) != 1:
        raise InvalidValueError(f"[train] model in {source}: chunk policies see the current "
                                "observation only; use obs_history = 1")


def check_chunks_fit_episodes(spec: SweepSpec, source: str) -> None:
    """Chunk policies need episodes of at least k steps: the largest [grid] chunk_lens must
    not exceed the episode length ([data] episode_steps, or each env's time limit)."""
    import gymnasium as gym

    k = max(spec.grid.chunk_lens)
    for env in env_ids(spec.grid.envs):
        steps = spec.data.episode_steps or gym.spec(env).max_episode_steps
        if steps is not None and k > steps:
            raise InvalidValueError(
                f"[grid] chunk_lens {spec.grid.chunk_lens} in {source}: chunks of {k} actions "
                f"do not fit in the {steps}-step episodes of {env}; use chunk_lens <= {steps} "
                "or a larger [data] episode_steps")
