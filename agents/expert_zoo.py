"""The expert zoo: trained actors shipped with qbc as safetensors + JSON (no pickles).

Entry ``<env id>`` lives in ``agents/zoo/<env id with "/" as "_">/`` (actor.safetensors +
actor.json, see :mod:`qbc.agents.actor`) and is made with ``make_expert("zoo:<env id>", env)``.
An actor folder of one's own (``qbc expert train`` writes one beside its zip) is made with
``make_expert("actor", env, path=FOLDER)``. ``qbc expert export`` turns an SB3 zip into an actor
folder; ``qbc expert list`` shows the zoo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents.actor import META_FILE, MLPActor, actor_size_bytes, read_actor_meta
from qbc.agents.base import Expert
from qbc.errors import CorruptFileError, InvalidValueError, UnknownNameError

#: Where the shipped entries live (package data of qbc.agents).
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
ZOO_PREFIX = "zoo:"


def zoo_entry_dir(env_id: str, root: Path | None = None) -> Path:
    """The folder of zoo entry ``env_id`` ("qbc/Arctan-v0" -> "qbc_Arctan-v0")."""
    return (ZOO_DIR if root is None else Path(root)) / env_id.replace("/", "_")


def available_zoo(root: Path | None = None) -> list[str]:
    """Env ids of the zoo's entries (folders holding an actor.json), sorted."""
    root = ZOO_DIR if root is None else Path(root)
    if not root.is_dir():
        return []
    return sorted(d.name.replace("_", "/", 1) if d.name.startswith("qbc_") else d.name
                  for d in root.iterdir() if (d / META_FILE).is_file())


class ActorExpert(Expert):
    """An actor folder as an expert: ``mean_action`` is the actor's deterministic action."""

    name = "actor"

    def __init__(self, info: dict[str, Any], folder: str | Path, params: dict[str, Any],
                 noise_std: float = 0.0, seed: int = 0):
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        self.actor = MLPActor.load(folder)
        labelled, env_id = self.actor.meta.get("env_id"), info.get("env_id")
        if labelled is not None and env_id is not None and labelled != env_id:
            raise InvalidValueError(
                f"actor {str(folder)!r} was exported for {labelled}, not {env_id}; use an "
                f"actor of {env_id} (or pass --env {labelled})")
        shapes = (self.actor.obs_dim, self.actor.act_dim)
        if shapes != (self.obs_dim, self.act_dim):
            raise InvalidValueError(
                f"actor {str(folder)!r} has observation/action sizes {shapes}, but the env has "
                f"{(self.obs_dim, self.act_dim)}; use the actor of this env")
        if not (np.allclose(self.actor.low, self.low) and np.allclose(self.actor.high, self.high)):
            raise InvalidValueError(
                f"actor {str(folder)!r} was trained for action bounds "
                f"[{self.actor.low}, {self.actor.high}], the env has [{self.low}, {self.high}]")

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        return self.actor.predict(obs).astype(np.float64)


def make_zoo_expert(info: dict[str, Any], entry: str, noise_std: float = 0.0,
                    seed: int = 0) -> ActorExpert:
    """The zoo's actor for env id ``entry`` (``make_expert("zoo:<entry>", env)``)."""
    if entry not in available_zoo():
        raise UnknownNameError("zoo expert", ZOO_PREFIX + entry,
                               [ZOO_PREFIX + e for e in available_zoo()])
    return ActorExpert(info, zoo_entry_dir(entry), {}, noise_std=noise_std, seed=seed)


def make_actor_expert(info: dict[str, Any], path: str, noise_std: float = 0.0,
                      seed: int = 0) -> ActorExpert:
    """An actor folder of one's own (actor.safetensors + actor.json)."""
    return ActorExpert(info, path, {"path": str(path)}, noise_std=noise_std, seed=seed)


# --- the zoo table, exporting actors --------------------------------------------------------


def zoo_table(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per zoo entry: name, env, algo, mean_return, episodes, size_bytes."""
    rows = []
    for env_id in available_zoo(root):
        folder = zoo_entry_dir(env_id, root)
        try:
            meta = read_actor_meta(folder)
        except CorruptFileError as exc:
            rows.append({"name": ZOO_PREFIX + env_id, "env": env_id, "algo": "?",
                         "mean_return": None, "episodes": 0, "size_bytes": 0,
                         "problem": str(exc)})
            continue
        evaluation = meta.get("evaluation") or {}
        rows.append({"name": ZOO_PREFIX + env_id, "env": env_id, "algo": meta.get("algo"),
                     "mean_return": evaluation.get("mean_return"),
                     "episodes": evaluation.get("episodes", 0),
                     "size_bytes": actor_size_bytes(folder)})
    return rows
