"""Which expert a command uses: the flags the user gave, else the one the dataset remembers.

``qbc collect`` records the expert it rolled out in the dataset's metadata (``{"name",
"params"}`` under the key ``"qbc"``: analytic parameters such as ``K`` / ``gain_scale`` /
``scale``, ``path`` + ``algo`` for SB3, ``path`` for an actor folder, or just the name
``zoo:<env id>`` for a zoo actor). ``qbc rollout --policy RUN`` finds the dataset in the
run's checkpoint config and ``qbc certify --dataset ID`` has it, so both rebuild that expert
without expert flags. The rules, in order:

1. ``--expert NAME``: that expert with ``--expert-params`` / ``--expert-path`` only;
2. no ``--expert`` but a remembered expert: it, with ``--expert-params`` / ``--expert-path``
   replacing its parameters of the same name (e.g. a moved SB3 zip);
3. nothing remembered: ``sb3`` when only ``--expert-path`` is given, else the env's default
   (:func:`default_expert`: its zoo actor ``zoo:<env id>`` when the zoo has one, the scripted
   expert the env registers, else ``lqr``).

An SB3 zip holds pickles, so a model file found in a dataset's metadata is loaded only when it
is the very file the dataset was collected with (its SHA-256, recorded by ``qbc collect``);
otherwise the user names it with ``--expert-path``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbc.agents import make_expert
from qbc.agents.expert_zoo import ZOO_PREFIX, available_zoo
from qbc.data import dataset_lock, dataset_path, load_demonstrations, split_dataset_ids
from qbc.envs.registry import ENVS
from qbc.errors import CorruptFileError, InvalidValueError, QbcError, UserCodeError
from qbc.infra.files import atomic_write_json, json_safe, read_json_object
from qbc.policy.loading import resolve_checkpoint_dir
from qbc.stepping.actor import describe_exception

#: The expert when neither a flag nor the dataset names one (the qbc/ envs' analytic expert).
FALLBACK_EXPERT = "lqr"


def default_expert(env_id: str | None) -> tuple[str, str]:
    """``(name, source)`` of the expert used on ``env_id`` when no flag and no dataset names
    one: the zoo's actor ``zoo:<env id>`` when the zoo has an entry for the env (MuJoCo and
    classic-control tasks), the scripted expert a qbc env registers (``EnvSpec.expert``: the
    Gymnasium-Robotics tasks), else :data:`FALLBACK_EXPERT` (the qbc/ envs' LQR expert)."""
    if env_id and env_id in available_zoo():
        return ZOO_PREFIX + env_id, f"default: the expert zoo's entry for {env_id}"
    if env_id in ENVS and ENVS[env_id].expert is not None:
        return ENVS[env_id].expert, f"default: the scripted expert of {env_id}"
    return FALLBACK_EXPERT, "default"


def unnamed_expert(env_id: str | None, params: dict[str, Any]) -> str:
    """The expert a command given no --expert uses: ``sb3`` when --expert-path names a model
    (``params["path"]``, as :func:`choose_expert` reads it), else :func:`default_expert`'s."""
    return "sb3" if "path" in params else default_expert(env_id)[0]


def default_expert_line(command: str, env_id: str) -> str | None:
    """The one line a command prints when it uses the zoo's actor or an env's scripted expert
    as the default expert (None when the default is lqr: nothing to point out)."""
    name, source = default_expert(env_id)
    if name == FALLBACK_EXPERT:
        return None
    return (f"qbc {command}: expert {name} ({source}; --expert NAME chooses another, "
            "`qbc expert list` shows the zoo)")


@dataclass
class ExpertChoice:
    """An expert spec (``make_expert``'s dict form) and where it came from, in words."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "source": self.source}


def provenance(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """qbc's provenance in a dataset's metadata (a dict, or the JSON string Minari may keep);
    {} when there is none."""
    prov = (metadata or {}).get("qbc", {})
    if isinstance(prov, str):
        try:
            prov = json.loads(prov)
        except (ValueError, RecursionError):  # damaged: no provenance to read
            prov = {}
    return prov if isinstance(prov, dict) else {}


def dataset_provenance(dataset_id: str, root: str | Path | None = None) -> dict[str, Any]:
    """The provenance of a local Minari dataset (under the datasets ``root``, default
    :func:`qbc.data.store.minari_root`'s), read from its metadata alone (no episodes); {} when
    the dataset is not here or was not written by qbc."""
    from minari.dataset.minari_storage import MinariStorage

    try:
        data = dataset_path(dataset_id, root) / "data"
        if not data.is_dir():
            return {}
        return provenance(MinariStorage.read_raw_metadata(data))
    except (QbcError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def policy_dataset(policy: str | Path) -> str | None:
    """The dataset id a trained policy (run folder or checkpoint) was trained on, if recorded."""
    try:
        cfg = read_json_object(resolve_checkpoint_dir(policy) / "config.json", what="policy config")
    except QbcError:
        return None
    dataset = ((cfg or {}).get("train") or {}).get("dataset") if isinstance(cfg, dict) else None
    return dataset if isinstance(dataset, str) else None


def expert_file_sha256(params: dict[str, Any]) -> str | None:
    """SHA-256 of the model file an expert's ``params["path"]`` names (".zip" added as SB3
    does; an actor folder's actor.safetensors), or None without one. Zoo experts
    (``zoo:<env id>``) ship with qbc and have no path."""
    import hashlib

    path = params.get("path") if isinstance(params, dict) else None
    if not path:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / "actor.safetensors"
    elif not path.suffix:
        path = path.with_suffix(".zip")
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def remembered_expert(dataset_id: str | None,
                      root: str | Path | None = None) -> dict[str, Any] | None:
    """``{"name", "params", "sha256"}`` of the expert that collected ``dataset_id``, or None;
    ``sha256``: that of its model file when it had one. An aggregate id ``a+b+...`` (a DAgger
    round's policy trains on every round's dataset so far) gives the expert of its first part
    that records one: all rounds of a DAgger run are labelled by the same expert."""
    if not dataset_id:
        return None

    for part in split_dataset_ids(dataset_id):
        spec = provenance_expert(dataset_provenance(part, root))
        if spec is not None:
            return spec
    return None


def provenance_expert(prov: dict[str, Any]) -> dict[str, Any] | None:
    """``{"name", "params", "sha256"}`` of the expert a dataset's provenance ``prov`` records,
    or None when it records none."""
    spec = prov.get("expert")
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = spec.get("params")
        return {"name": spec["name"], "params": dict(params) if isinstance(params, dict) else {},
                "sha256": prov.get("expert_file_sha256")}
    return None


def rebuild_remembered_expert(spec: dict[str, Any], env: Any, dataset: str) -> Any:
    """The expert ``spec`` (:func:`provenance_expert`) of ``dataset`` built on ``env`` (an env
    id, or an env made with the dataset's env kwargs), its model file checked first
    (:func:`check_same_file`): the one path by which qbc loads an expert named in a dataset's
    metadata."""
    check_same_file(spec, dataset)
    return build_expert(ExpertChoice(spec["name"], dict(spec["params"]), f"dataset {dataset}"),
                        env)


def check_same_file(spec: dict[str, Any], dataset_id: str) -> None:
    """Refuse a remembered model file that is not the one the dataset was collected with."""
    path = spec["params"].get("path")
    if not path:
        return
    if spec.get("sha256") is None or expert_file_sha256(spec["params"]) != spec["sha256"]:
        raise InvalidValueError(
            f"dataset {dataset_id} was collected with the {spec['name']} expert {path!r}, but "
            "that file is missing or is not the file recorded then (its SHA-256 differs or was "
            "not recorded); SB3 zips hold pickles, so qbc loads one from a dataset's metadata "
            f"only when it is the same file: pass --expert-path PATH to load a model you trust")


def choose_expert(expert: str | None, expert_path: str | Path | None,
                  expert_params: dict[str, Any] | None,
                  dataset_id: str | None, env_id: str | None = None,
                  root: str | Path | None = None) -> ExpertChoice:
    """The expert to build, by the rules of the module docstring (``env_id``: the env whose
    default expert rule 3 takes; ``root``: the datasets root ``dataset_id`` is under, default
    :func:`qbc.data.store.minari_root`'s)."""
    given = dict(expert_params or {})
    if expert_path is not None:
        given["path"] = str(expert_path)
    if expert is not None:
        return ExpertChoice(expert, given, "--expert")
    spec = remembered_expert(dataset_id, root)
    if spec is not None:
        if "path" not in given:
            check_same_file(spec, dataset_id)
        return ExpertChoice(spec["name"], {**spec["params"], **given},
                            f"dataset {dataset_id}" + (" (params from flags)" if given else ""))
    if "path" in given:
        return ExpertChoice("sb3", given, "default")
    name, source = default_expert(env_id)
    return ExpertChoice(name, given, source)


def build_expert(choice: ExpertChoice, env: Any) -> Any:
    """``make_expert`` of the choice on ``env`` (an env id or an env); an error from a
    remembered expert says where it came from and which flags replace it."""
    try:
        return make_expert({"name": choice.name, "params": choice.params}, env)
    except QbcError as exc:
        if not choice.source.startswith("dataset"):
            raise
        hint = (f"; this expert ({choice.name}) is the one {choice.source} was collected with: "
                "pass --expert-path PATH where its model is now, or --expert NAME (with "
                "--expert-path / --expert-params) to use another")
        cls = type(exc) if type(exc) in (InvalidValueError, CorruptFileError) else \
            InvalidValueError
        raise cls(str(exc) + hint) from None


def set_dataset_expert(dataset_id: str, name: str, params: dict[str, Any] | None = None,
                       root: str | Path | None = None) -> dict[str, Any]:
    """Record the expert of a dataset made elsewhere (Minari's own API, another library), as
    ``qbc collect`` records its own: ``{"name", "params"}`` under the metadata key ``"qbc"``,
    with the SHA-256 of its model file, so later commands rebuild it without ``--expert`` (and
    load a model file only while it is that same file). Before anything is written the expert
    is built on the dataset's env and must label the dataset's observations with actions of
    the dataset's shape (:class:`InvalidValueError` otherwise). Returns what was recorded, plus
    ``agreement``: the mean absolute difference between the expert's actions and the recorded
    ones on up to 1000 of the dataset's states (small when it is the expert that made them).
    The metadata file is rewritten atomically under the dataset lock; the episodes are not
    touched."""
    import numpy as np

    params = dict(params or {})
    with dataset_lock(dataset_id, root):
        demos = load_demonstrations(dataset_id, root=root)
        if not demos.env_id:
            raise InvalidValueError(f"dataset {dataset_id} records no env (no env_spec in its "
                                    "metadata), so no expert can be checked against it")
        expert = make_expert({"name": name, "params": params}, demos.env_id)
        rows = np.linspace(0, len(demos) - 1, min(len(demos), 1000)).astype(int)
        obs = np.asarray(demos.observations[rows], dtype=np.float32)
        try:
            actions = np.asarray(expert.act(obs, deterministic=True), dtype=np.float64)
        except (ValueError, TypeError, RuntimeError) as exc:
            raise InvalidValueError(f"expert {name!r} cannot label the states of dataset "
                                    f"{dataset_id} ({exc})") from None
        except (Exception, SystemExit) as exc:  # the expert's own code: the fault is there
            raise UserCodeError(f"expert {name!r}: act raised {describe_exception(exc)} on "
                                f"the states of dataset {dataset_id}") from None
        recorded = np.asarray(demos.actions[rows], dtype=np.float64)
        if actions.shape != recorded.shape or not np.isfinite(actions).all():
            raise InvalidValueError(
                f"expert {name!r} gave actions of shape {actions.shape} for {len(rows)} states "
                f"of dataset {dataset_id}, whose actions have shape {recorded.shape} (finite "
                "expected): it is not an expert for this dataset")
        path = dataset_path(dataset_id, root) / "data" / "metadata.json"
        raw = read_json_object(path, what="dataset metadata")
        prov = provenance(raw)
        record = {"expert": {"name": name, "params": params},
                  "expert_file_sha256": expert_file_sha256(params),
                  "expert_set_by": "qbc data set-expert",
                  "expert_agreement": float(np.abs(actions - recorded).mean())}
        prov.update(record)
        raw["qbc"] = json_safe(prov)
        atomic_write_json(path, raw)
    return {**record, "env_id": demos.env_id, "agreement": record["expert_agreement"]}
