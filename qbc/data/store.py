"""Minari datasets on disk: the datasets root, dataset ids, atomic writes (reading back:
:mod:`qbc.data.loading`).

Every function takes the datasets root explicitly (``root``; ``None``: :func:`minari_root`'s
default, ``$MINARI_DATASETS_PATH`` else ``~/.minari/datasets``) and hands Minari paths, never
the environment variable: Minari's own ``create_dataset_from_buffers`` / ``load_dataset`` read
the root only from ``MINARI_DATASETS_PATH``, so qbc writes through ``MinariStorage.new(path)``
and reads through ``MinariDataset(path)``, which take the path. The files are Minari's: the
metadata keys that ``create_dataset_from_buffers`` writes (:func:`_minari_metadata`) and its
namespace files (:func:`_ensure_namespace`), so ``minari.load_dataset`` reads them too.

qbc's provenance (expert, seeds, qbc version, the env's stability numbers) is stored in the
dataset's metadata under the key ``"qbc"``.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from qbc.errors import InvalidValueError, OutputExistsError, UnknownNameError
from qbc.infra.files import atomic_write_json, json_safe
from qbc.infra.run_folder import exclusive
from qbc.infra.validate import check_finite_json

#: Name of the resolved-config file written beside a dataset's ``data/`` folder.
CONFIG_FILE = "qbc_config.json"
#: Minari's file marking a folder of the datasets root as a namespace.
_NAMESPACE_FILE = "namespace_metadata.json"


# -- the root and the ids -------------------------------------------------------------------------
def minari_root(path: str | os.PathLike | None = None) -> Path:
    """The Minari datasets root, absolute: ``path`` when given, else ``$MINARI_DATASETS_PATH``,
    else ``~/.minari/datasets`` (Minari's own default). The one place qbc decides it."""
    if path is None:
        path = os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets"
    # Absolute, so that a relative root means the same folder however it is joined.
    return Path(path).expanduser().resolve()


class DatasetNotFoundError(UnknownNameError):
    """A Minari dataset id with no dataset under the local datasets folder."""

    def __init__(self, dataset_id: str, local_ids: Iterable[str], root: Path | None = None):
        local_ids = list(local_ids)
        super().__init__("dataset", dataset_id, local_ids)
        root = minari_root(root)
        if local_ids:
            ranked = sorted(local_ids, key=lambda i: (
                -difflib.SequenceMatcher(None, dataset_id, i).ratio(), i))
            have = f"local datasets, closest first: {', '.join(ranked)}"
        else:
            have = "there are no local datasets"
        self.args = (
            f"no Minari dataset {dataset_id!r} in {root} ({have}). Collect one with "
            f"'qbc collect --dataset {dataset_id} ...' or set MINARI_DATASETS_PATH",
        )


def validate_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if Minari accepts it as ``(namespace/)name-vN``, else raise."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    m = DATASET_ID_RE.fullmatch(dataset_id)
    if not m or m.group("version") is None:
        raise InvalidValueError(
            f"malformed dataset id {dataset_id!r}: Minari ids look like 'name-v0' or "
            "'namespace/name-v0' (letters, digits, '-', '_', and a -v<version> suffix)"
        )
    return dataset_id


#: Joins the ids of datasets trained on together (a DAgger round's aggregate) into one id.
AGGREGATE_SEPARATOR = "+"


def join_dataset_ids(dataset_ids: Iterable[str]) -> str:
    """One id naming several datasets used together: ``a-v0+b-v0``."""
    return AGGREGATE_SEPARATOR.join(dataset_ids)


def split_dataset_ids(dataset_id: str) -> list[str]:
    """The datasets an id from :func:`join_dataset_ids` names (a plain id: itself alone)."""
    return dataset_id.split(AGGREGATE_SEPARATOR)


def dataset_path(dataset_id: str, root: str | os.PathLike | None = None) -> Path:
    """Folder of the dataset ``dataset_id`` under the datasets root (may not exist)."""
    return minari_root(root) / validate_dataset_id(dataset_id)


def dataset_exists(dataset_id: str, root: str | os.PathLike | None = None) -> bool:
    return (dataset_path(dataset_id, root) / "data").exists()


def local_dataset_ids(root: str | os.PathLike | None = None) -> list[str]:
    """Ids of the datasets under the root, as Minari lists them: every non-hidden folder
    holding a ``data`` folder, found by descending through namespaces."""
    base = minari_root(root)
    found: list[str] = []

    def descend(folder: Path, name: str) -> None:
        if (folder / "data").exists():
            found.append(name)
            return
        for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
            if sub.is_dir() and not sub.name.startswith("."):
                descend(sub, f"{name}/{sub.name}" if name else sub.name)

    descend(base, "")
    return sorted(found)


def dataset_lock(dataset_id: str, root: str | os.PathLike | None = None,
                 wait: bool | float = False, progress: bool = False,
                 wait_flag: str | None = None):
    """The lock on writing ``dataset_id`` (:func:`qbc.infra.run_folder.exclusive`): a hidden file
    in the datasets root, held from the existence check to the final rename. ``wait``: wait for
    another writer to finish instead of being refused, for at most that many seconds (True:
    :data:`qbc.infra.run_folder.LOCK_WAIT_S`); ``progress``: show the wait; ``wait_flag``: the
    caller's setting of the wait, named when it runs out."""
    base = minari_root(root)
    base.mkdir(parents=True, exist_ok=True)
    lock = base / f".qbc-lock-{validate_dataset_id(dataset_id).replace('/', '--')}"
    return exclusive(lock, f"qbc command is writing Minari dataset {dataset_id!r}", wait=wait,
                     progress=progress, wait_flag=wait_flag)


# -- writing --------------------------------------------------------------------------------------
def write_dataset(dataset_id: str, episodes: Sequence[Any], env: str | gym.Env | Any,
                  metadata: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                  overwrite: bool = False, description: str | None = None,
                  algorithm_name: str | None = None, root: str | os.PathLike | None = None):
    """Create the Minari dataset ``dataset_id`` (HDF5 storage) from episode buffers.

    Args:
        dataset_id: ``(namespace/)name-vN``.
        episodes: ``minari.data_collector.EpisodeBuffer`` objects with array fields.
        env: env id, env or ``EnvSpec`` the data came from (``recover_environment`` rebuilds it).
        metadata: provenance, stored under the metadata key ``"qbc"`` (through
            :func:`qbc.infra.files.json_safe`); NaN or inf in it is refused (InvalidValueError).
        config: resolved run config, written to ``<dataset>/qbc_config.json`` (the same rules).
        overwrite: replace an existing dataset; otherwise :class:`OutputExistsError`.
        root: the datasets root (:func:`minari_root`).

    Returns:
        the dataset as a ``minari.MinariDataset``.

    The dataset is built in a hidden staging folder under the datasets root and renamed into
    place, so an interrupted write never leaves a half-written dataset under ``dataset_id``.
    """
    from minari import MinariDataset

    final = dataset_path(dataset_id, root)
    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Minari dataset {dataset_id!r} already exists at {final}; pass --overwrite to "
            "replace it or choose another --dataset (e.g. bump the -vN version)"
        )
    check_finite_json(metadata or {}, "dataset metadata")
    check_finite_json(config or {}, "dataset config")
    base = minari_root(root)
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".qbc-staging-", dir=base))
    try:
        build_isolated(_build, staging / "built", dataset_id, episodes, env, metadata,
                       algorithm_name=algorithm_name or "qbc",
                       description=description or "demonstrations written by qbc")
        if config is not None:
            atomic_write_json(staging / "built" / CONFIG_FILE, json_safe(config))
        with dataset_lock(dataset_id, base):
            _move_into_place(staging / "built", final, dataset_id, overwrite, base)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MinariDataset(final / "data")


def _build(folder: Path, dataset_id: str, episodes: Sequence[Any], env: Any,
           metadata: dict[str, Any] | None, algorithm_name: str, description: str) -> None:
    """Write the dataset's ``data/`` folder into ``folder`` as Minari's
    ``create_dataset_from_buffers`` does, then qbc's provenance under ``"qbc"``."""
    from minari.dataset.minari_storage import MinariStorage

    spec, gym_env = _spec_and_env(env)
    try:
        (folder / "data").mkdir(parents=True)
        storage = MinariStorage.new(folder / "data", observation_space=gym_env.observation_space,
                                    action_space=gym_env.action_space, env_spec=spec,
                                    data_format="hdf5")
    finally:
        if gym_env is not env:
            gym_env.close()
    storage.update_metadata(_minari_metadata(dataset_id, algorithm_name, description))
    storage.update_episodes(list(episodes))
    storage.update_metadata({"qbc": json_safe(metadata or {})})


def build_isolated(build: Any, folder: Path, *args: Any, **kwargs: Any) -> None:
    """``build(folder, *args, **kwargs)`` in a forked child process (POSIX; inline elsewhere).

    h5py can take the whole process down when a write fails: on a full disk it raises while
    freeing its objects and then crashes (a segmentation fault), so nothing would remove the
    staging folder or release the dataset lock. In a child, a crash or an error becomes an
    exception here instead: ``OSError`` (ENOSPC on a full disk, naming ``folder``), or
    InvalidValueError for episodes Minari refuses; the caller cleans up as for any error."""
    import errno
    import faulthandler
    import json

    if not hasattr(os, "fork"):  # pragma: no cover
        build(folder, *args, **kwargs)
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build, report, never return into the caller's code
        os.close(read_end)
        code = 0
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # h5py's cascade of ignored errors
            faulthandler.disable()  # a crash is reported by the parent, not dumped here
            build(folder, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001  (reported to the parent)
            code = 1
            report = {"type": type(exc).__name__, "errno": getattr(exc, "errno", None),
                      "message": " ".join(str(exc).split())[:2000],
                      "os_error": isinstance(exc, OSError)}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
    except BaseException:  # Ctrl-C while the child writes: stop it too
        _stop_child(pid)
        raise
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    report = json.loads(data) if data else {}
    full = report.get("errno") == errno.ENOSPC or "No space left" in report.get("message", "") \
        or _disk_full(folder)
    if full:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))
    if report.get("os_error"):
        raise OSError(report.get("errno") or errno.EIO, report["message"], str(folder))
    if report.get("type") in ("ValueError", "TypeError", "KeyError", "AssertionError"):
        raise InvalidValueError(f"the episodes cannot be written as a Minari dataset "
                                f"({report['type']}: {report['message']})")
    if report:
        raise RuntimeError(f"writing the dataset failed ({report['type']}: {report['message']})")
    raise OSError(errno.EIO, f"the HDF5 writer crashed (exit status {status}) while writing "
                  "the dataset", str(folder))


def _stop_child(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _disk_full(folder: Path) -> bool:
    """True when the file system of ``folder`` (or its nearest existing parent) is full."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < (1 << 16)
    except OSError:
        return False


def _spec_and_env(env: Any) -> tuple[Any, gym.Env]:
    """``(EnvSpec, env)`` of an env id, ``EnvSpec`` or env, made as Minari makes it."""
    from gymnasium.envs.registration import EnvSpec

    if isinstance(env, gym.Env):
        return env.spec, env
    if isinstance(env, (str, EnvSpec)):
        return (gym.spec(env) if isinstance(env, str) else env), gym.make(env)
    raise TypeError(f"env must be an env id, EnvSpec or gymnasium.Env, got {type(env).__name__}")


def _minari_metadata(dataset_id: str, algorithm_name: str, description: str) -> dict[str, Any]:
    """The dataset keys of ``minari.create_dataset_from_buffers`` (author 'qbc', no permalink,
    e-mail, eval env or reference scores), in its order."""
    import minari

    return {"dataset_id": dataset_id, "author": {"qbc"}, "algorithm_name": algorithm_name,
            "description": description, "minari_version": minari.__version__}


def _ensure_namespace(base: Path, dataset_id: str) -> None:
    """Minari's namespace marker files (``{}``) for the namespace of ``dataset_id`` and each of
    its parents that has none yet, as ``minari.create_namespace`` writes them."""
    from minari.dataset.minari_dataset import parse_dataset_id

    namespace = parse_dataset_id(dataset_id)[0]
    parts = [] if namespace is None else namespace.split("/")
    for k in range(1, len(parts) + 1):
        folder = base.joinpath(*parts[:k])
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / _NAMESPACE_FILE).exists():
            (folder / _NAMESPACE_FILE).write_text("{}", encoding="utf-8")


def _move_into_place(built: Path, final: Path, dataset_id: str, overwrite: bool,
                     base: Path) -> None:
    """Rename the built dataset to ``final``, under the dataset's lock. Without ``overwrite`` a
    dataset that appeared meanwhile is refused, never replaced; with it the old one is set
    aside first and deleted only after the new one is in place."""
    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Minari dataset {dataset_id!r} appeared at {final} while this one was being "
            "written; nothing was replaced: choose another --dataset or pass --overwrite")
    _ensure_namespace(base, dataset_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=".qbc-trash-", dir=base))
        os.replace(final, trash / "old")
    os.rename(built, final)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def publish_dataset(dataset_id: str, staged_root: Path,
                    root: str | os.PathLike | None = None) -> None:
    """Move the dataset ``dataset_id`` written under ``staged_root`` (a hidden folder of the
    datasets root, used as the root of :func:`write_dataset`) to ``dataset_id`` under the
    datasets root, replacing an old one (set aside first, deleted after the rename), under the
    dataset's lock."""
    base = minari_root(root)
    with dataset_lock(dataset_id, base):
        _move_into_place(dataset_path(dataset_id, staged_root), dataset_path(dataset_id, base),
                         dataset_id, True, base)


def delete_dataset(dataset_id: str, root: str | os.PathLike | None = None) -> None:
    """Remove the dataset ``dataset_id`` (renamed aside under its lock, then deleted; a missing
    one is fine)."""
    base = minari_root(root)
    with dataset_lock(dataset_id, base):
        path = dataset_path(dataset_id, base)
        if path.exists():
            trash = Path(tempfile.mkdtemp(prefix=".qbc-trash-", dir=base))
            os.replace(path, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
