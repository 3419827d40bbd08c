"""Cells of a sweep: the grid's product, each with a content key, and the datasets they need.

A cell is one (env, expert, quantizer, bins, n_demos, seed) combination together with every
setting that changes its numbers (training, rollout and data settings, horizons). Its key is a
hash of those settings, so a finished cell is recognised by its key in the result table whatever
order the grid lists its values in, and a changed setting makes a new cell.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass
from typing import Any

from qbc.sweep.spec import SEED_STRIDE, SweepSpec, normalize_expert

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

    @property
    def key(self) -> str:
        return stable_hash(asdict(self), 12)

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
    """canonical JSON of the settings shared by the grid (train, rollout, data, horizons)."""

    @property
    def settings(self) -> dict[str, Any]:
        return json.loads(self.params)

    @property
    def key(self) -> str:
        """The cell's content key (the ``cell`` column of the result table)."""
        coords = {k: v for k, v in asdict(self).items() if k not in ("expert", "params")}
        return stable_hash({"schema": CELL_SCHEMA, **coords, "expert": json.loads(self.expert),
                            **self.settings})

    @property
    def expert_label(self) -> str:
        """``lqr`` or ``linear(gain_scale=0.8)``."""
        e = json.loads(self.expert)
        if not e["params"]:
            return e["name"]
        inner = ",".join(f"{k}={v}" for k, v in sorted(e["params"].items()))
        return f"{e['name']}({inner})"

    @property
    def dataset(self) -> DatasetSpec:
        data = self.settings["data"]
        return DatasetSpec(env=self.env, expert=self.expert, n_demos=self.n_demos,
                           seed=data["seed"] + self.seed * SEED_STRIDE,
                           episode_steps=data["episode_steps"],
                           expert_noise=float(data["expert_noise"]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def shared_settings(spec: SweepSpec) -> dict[str, Any]:
    """The settings every cell of ``spec`` shares; only those that can change numbers."""
    data = asdict(spec.data)
    data.pop("num_envs")  # collection speed only: the data do not depend on it
    return {"horizons": sorted(spec.grid.horizons), "train": asdict(spec.train),
            "rollout": asdict(spec.rollout), "data": data}


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the grid, in the grid's order (envs outermost, seeds innermost)."""
    params = _canonical(shared_settings(spec))
    g = spec.grid
    experts = [_canonical(normalize_expert(e)) for e in g.experts]
    return [Cell(env=env, expert=expert, quantizer=q, bins=int(b), n_demos=int(n), seed=int(s),
                 params=params)
            for env, expert, q, b, n, s in itertools.product(g.envs, experts, g.quantizers,
                                                             g.bins, g.n_demos, g.seeds)]


def needed_datasets(cells: list[Cell]) -> list[DatasetSpec]:
    """The distinct datasets of ``cells``, in first-use order."""
    return list(dict.fromkeys(c.dataset for c in cells))
