"""Cells of a sweep: the grid's product, each with a content key, and the datasets they need.

A cell is one (env, expert, quantizer, bins, n_demos, seed) combination together with every
setting that changes its numbers (training, rollout and data settings, horizons). Its key is a
hash of those settings, so a finished cell is recognised by its key in the result table whatever
order the grid lists its values in, and a changed setting makes a new cell.

An env variant ([grid] envs table with ``env_kwargs``) is part of the cell and of its dataset:
its cells and datasets have keys of their own, and its rows carry the label
``id(key=value,...)`` in the ``env`` column (:attr:`Cell.env_label`). Cells without env kwargs
keep the keys they had before env kwargs existed.

Chunk policies have cells of their own (``chunk_len`` k >= 1): a ``chunk-ar-transformer`` cell
is one (env, expert, chunk tokenizer, k, bins, n_demos, seed), a ``chunk-mlp-l1`` cell one (env,
expert, k, n_demos, seed) with no tokenizer and ``bins`` 0; their key also holds k, the tokenizer
with its parameters and the execution modes they are rolled out with. Per-step cells
(``chunk_len`` 0) keep the key they had before chunk axes existed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from qbc.chunking.execution import parse_execute
from qbc.policy.registry import chunk_policies
from qbc.sweep.entries import env_label, normalize_env, normalize_named
from qbc.sweep.spec import SEED_STRIDE, SweepSpec, experts_of, normalize_expert

#: Bump when the meaning of a cell's numbers changes, so old rows are not mistaken for new ones.
CELL_SCHEMA = 1

#: Minari namespace of the sweep's cached datasets.
DATASET_NAMESPACE = "qbc-sweep"


def stable_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


@dataclass(frozen=True)
class DatasetSpec:
    """What a cell's demonstrations depend on; two cells with equal specs share one dataset."""

    env: str
    expert: str
    """canonical JSON of {"name", "params"}."""
    n_demos: int
    seed: int
    """episode k is reset with seed + k."""
    episode_steps: int | None
    expert_noise: float
    env_kwargs: str = ""
    """canonical JSON of the env's constructor keywords; "" for none."""

    @property
    def key(self) -> str:
        spec = asdict(self)
        del spec["env_kwargs"]  # datasets without env kwargs keep their ids
        if self.env_kwargs:
            spec["env_kwargs"] = json.loads(self.env_kwargs)
        return stable_hash(spec, 12)

    @property
    def env_kwargs_dict(self) -> dict[str, Any]:
        return json.loads(self.env_kwargs) if self.env_kwargs else {}

    @property
    def dataset_id(self) -> str:
        """Minari id ``qbc-sweep/<hash12>-v0``."""
        return f"{DATASET_NAMESPACE}/{self.key}-v0"

    @property
    def expert_dict(self) -> dict[str, Any]:
        return json.loads(self.expert)


@dataclass(frozen=True)
class Cell:
    """One cell: its grid coordinates and the resolved settings it runs with (all JSON-safe)."""

    env: str
    expert: str
    """canonical JSON of {"name", "params"}."""
    quantizer: str
    bins: int
    n_demos: int
    seed: int
    params: str
    """canonical JSON of the settings shared by the grid (train, rollout, data, horizons; chunk
    cells: also ``executions``)."""
    chunk_tokenizer: str = ""
    """chunk-ar-transformer cells: canonical JSON of {"name", "params"}; else ""."""
    chunk_len: int = 0
    """actions per chunk k of a chunk cell; 0 for a per-step cell."""
    env_kwargs: str = ""
    """canonical JSON of the env's constructor keywords ([grid] envs table); "" for none."""

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.params)

    @property
    def key(self) -> str:
        """The cell's content key (the ``cell`` column of the result table)."""
        skip = ("expert", "params", "chunk_tokenizer", "chunk_len", "env_kwargs")
        coords = {k: v for k, v in asdict(self).items() if k not in skip}
        if self.env_kwargs:  # cells without env kwargs keep their old keys
            coords["env_kwargs"] = json.loads(self.env_kwargs)
        if self.chunk_len:  # per-step cells keep their old keys
            coords["chunk_len"] = self.chunk_len
            coords["chunk_tokenizer"] = (json.loads(self.chunk_tokenizer)
                                         if self.chunk_tokenizer else None)
        return stable_hash({"schema": CELL_SCHEMA, **coords, "expert": json.loads(self.expert),
                            **self.settings})

    @property
    def policies(self) -> list[str]:
        """The policy kinds this cell trains (or wraps): the per-step ones of [train] policies,
        or its one chunk policy."""
        if self.chunk_len:
            return ["chunk-ar-transformer" if self.chunk_tokenizer else "chunk-mlp-l1"]
        return [p for p in self.settings["train"]["policies"] if p not in chunk_policies()]

    @property
    def chunk_tokenizer_label(self) -> str:
        """``fast`` or ``per-step(n_bins=64,quantizer=uniform)``; "" without a tokenizer."""
        return _label(self.chunk_tokenizer) if self.chunk_tokenizer else ""

    @property
    def env_kwargs_dict(self) -> dict[str, Any]:
        """The env's constructor keywords ({} for none)."""
        return json.loads(self.env_kwargs) if self.env_kwargs else {}

    @property
    def env_label(self) -> str:
        """``qbc/LinearStable-v0``, or ``qbc/LinearStable-v0(noise_std=0.0)`` for a variant."""
        return env_label(self.env, self.env_kwargs_dict)

    @property
    def expert_label(self) -> str:
        """``lqr`` or ``linear(gain_scale=0.8)``."""
        return _label(self.expert)

    @property
    def dataset(self) -> DatasetSpec:
        data = self.settings["data"]
        return DatasetSpec(env=self.env, expert=self.expert, n_demos=self.n_demos,
                           seed=data["seed"] + self.seed * SEED_STRIDE,
                           episode_steps=data["episode_steps"],
                           expert_noise=float(data["expert_noise"]), env_kwargs=self.env_kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _label(named: str) -> str:
    """Canonical JSON of {"name", "params"} -> ``name`` or ``name(k=v,...)``."""
    e = json.loads(named)
    if not e["params"]:
        return e["name"]
    inner = ",".join(f"{k}={v}" for k, v in sorted(e["params"].items()))
    return f"{e['name']}({inner})"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def shared_settings(spec: SweepSpec) -> dict[str, Any]:
    """The settings every cell of ``spec`` shares; only those that can change numbers."""
    data = asdict(spec.data)
    data.pop("num_envs")  # collection speed only: the data do not depend on it
    return {"horizons": sorted(spec.grid.horizons), "train": asdict(spec.train),
            "rollout": asdict(spec.rollout), "data": data}


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid, in the grid's order (envs outermost, seeds innermost): per-step
    cells (when [train] policies has a per-step kind), then chunk-ar-transformer cells, then
    chunk-mlp-l1 cells."""
    shared = shared_settings(spec)
    params = _canonical(shared)
    g, policies = spec.grid, spec.train.policies
    envs = [normalize_env(e) for e in g.envs]
    pairs = [((env["name"], _canonical(env["env_kwargs"]) if env["env_kwargs"] else ""),
              _canonical(normalize_expert(e))) for env in envs
             for e in experts_of(spec, env["name"])]
    cells = []
    if any(p not in chunk_policies() for p in policies):
        cells += [Cell(env=env, expert=expert, quantizer=q, bins=int(b), n_demos=int(n),
                       seed=int(s), params=params, env_kwargs=kw)
                  for ((env, kw), expert), q, b, n, s in itertools.product(
                      pairs, g.quantizers, g.bins, g.n_demos, g.seeds)]
    chunk_params = _canonical({**shared, "executions": sorted(
        str(parse_execute(e)) for e in g.executions)})
    if "chunk-ar-transformer" in policies:
        toks = [_canonical(normalize_named(t, "chunk_tokenizers")) for t in g.chunk_tokenizers]
        cells += [Cell(env=env, expert=expert, quantizer="", bins=int(b), n_demos=int(n),
                       seed=int(s), params=chunk_params, chunk_tokenizer=tok, chunk_len=int(k),
                       env_kwargs=kw)
                  for ((env, kw), expert), tok, k, b, n, s in itertools.product(
                      pairs, toks, g.chunk_lens, g.bins, g.n_demos, g.seeds)]
    if "chunk-mlp-l1" in policies:
        cells += [Cell(env=env, expert=expert, quantizer="", bins=0, n_demos=int(n),
                       seed=int(s), params=chunk_params, chunk_len=int(k), env_kwargs=kw)
                  for ((env, kw), expert), k, n, s in itertools.product(
                      pairs, g.chunk_lens, g.n_demos, g.seeds)]
    return cells


def needed_datasets(cells: list[Cell]) -> list[DatasetSpec]:
    """The distinct datasets of ``cells``, in first-use order."""
    return list(dict.fromkeys(c.dataset for c in cells))
