"""A DAgger run folder (:mod:`qbc.interactive.dagger`): its stored config, ``rounds.csv`` and
``timing.csv``; checking a folder before a run starts or continues.

``rounds.csv`` and ``timing.csv`` are rewritten whole after every round; floats are written by
``repr`` and read back exactly, so a continued run's rows equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from qbc.data import dataset_exists
from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError
from qbc.infra.files import atomic_write_csv, atomic_write_json, read_json_object
from qbc.interactive.rounds import ROUND_FIELDS, DaggerRound

TIMING_FIELDS = ["round", "rollout_label_s", "dataset_write_s", "train_s", "eval_s",
                 "outside_training_fraction"]
CONFIG_NAME = "dagger_config.json"
_RUN_FILES = (CONFIG_NAME, "rounds.csv", "timing.csv")
#: settings that may change when a run is continued.
RESUMABLE = {"rounds", "progress", "overwrite", "device"}
#: settings that say where the run lives, not what it computes: a moved or renamed folder (or
#: its path spelled otherwise) continues; the dataset base is taken from the stored config
#: (:func:`stored_dataset_base`).
LOCATION = {"out", "dataset_base"}


def prepare_run(out: Path, conf: dict[str, Any], dataset_ids: list[str],
                overwrite: bool) -> tuple[list[DaggerRound], list[dict]]:
    """Check the output folder ``out`` and the round datasets ``dataset_ids`` (rounds 0..R);
    the finished rounds (rows of rounds.csv and timing.csv) of a run to continue, or empty
    lists for a new run (:func:`store_config` then stores ``conf``). Changes nothing: an
    ``--overwrite`` run replaces the old one only when it has finished
    (:mod:`qbc.interactive.staging`)."""
    out = Path(out)
    stored_path = out / CONFIG_NAME
    if stored_path.is_file() and not overwrite:
        stored = _typed(read_json_object(stored_path, what="DAgger config"))
        diff = sorted(k for k in set(stored) | set(conf)
                      if k not in RESUMABLE | LOCATION and stored.get(k) != conf.get(k))
        if diff:
            detail = ", ".join(f"{k}: {stored.get(k)!r} -> {conf.get(k)!r}" for k in diff)
            raise InvalidValueError(
                f"{out} holds a DAgger run with other settings ({detail}); re-run it with the "
                "same settings to continue, or pass --overwrite / another --out")
        rows = [DaggerRound.from_json(row)
                for row in _read_csv(out / "rounds.csv")[: len(dataset_ids)]]
        missing = [i for i in range(len(rows)) if not dataset_exists(dataset_ids[i])]
        if missing:
            raise CorruptFileError(
                f"the datasets of finished rounds {missing} of {out} are gone (MINARI_DATASETS_"
                "PATH changed?); point it back, or start again with --overwrite")
        return rows, _read_csv(out / "timing.csv")[: len(rows)]
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} is not empty and holds no DAgger run; pass --overwrite "
                                "to replace it or choose another --out")
    taken = [i for i in dataset_ids if dataset_exists(i)]
    if taken and not overwrite:
        raise OutputExistsError(f"Minari datasets {', '.join(taken)} already exist; pass "
                                "--overwrite to replace them or choose another --dataset-base")
    return [], []


def stored_dataset_base(out: Path, given: str | None) -> str | None:
    """The dataset base (namespace of the round datasets) of the run stored in ``out``, or None
    when ``out`` holds no run. A continued run writes its round datasets under it whatever the
    folder is called now, so a moved or renamed run folder continues with its own datasets. A
    ``given`` --dataset-base that differs is refused (InvalidValueError); nothing is written."""
    path = Path(out) / CONFIG_NAME
    if not path.is_file():
        return None
    stored = read_json_object(path, what="DAgger config")
    if not isinstance(stored, dict):
        raise CorruptFileError(f"DAgger config {str(path)!r} is not a JSON object; re-create it "
                               "or start again with --overwrite")
    base = stored.get("dataset_base")
    if not isinstance(base, str):  # runs stored before the base was: their round 0's dataset
        first = (_read_csv(Path(out) / "rounds.csv") or [{}])[0].get("dataset")
        match = re.fullmatch(r"(.+)/round-0-v0", first if isinstance(first, str) else "")
        base = match.group(1) if match else None
    if base is not None and given is not None and given.strip("/") != base.strip("/"):
        raise InvalidValueError(
            f"--dataset-base {given!r} differs from {base!r}, the dataset base of the DAgger run "
            f"in {out} (its rounds are {base}/round-<r>-v0); leave --dataset-base out to "
            "continue it, or pass --overwrite / another --out")
    return None if base is None else base.strip("/")


def store_config(work: Path, conf: dict[str, Any]) -> None:
    """Store a new run's config in its folder ``work``."""
    atomic_write_json(Path(work) / CONFIG_NAME, conf)


def run_entries(out: Path) -> tuple[str, ...]:
    """Names of the entries of ``out`` that a new run replaces: the run files and every
    ``round-<r>`` (other files stay)."""
    rounds = sorted(p.name for p in Path(out).glob("round-*")) if Path(out).is_dir() else []
    return (*_RUN_FILES, *rounds)


def _typed(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config as typed settings: runs started before ``expert_params`` and
    ``train_overrides`` were dicts stored them as JSON text, with ``expert_path`` apart."""
    stored = dict(stored)
    if isinstance(stored.get("expert_params"), str):
        stored["expert_params"] = json.loads(stored["expert_params"])
        path = stored.pop("expert_path", None)
        if path is not None:
            stored["expert_params"]["path"] = path
    if isinstance(stored.get("train_overrides"), str):
        stored["train_overrides"] = json.loads(stored["train_overrides"])
    return stored


def write_rows(out: Path, rows: list[DaggerRound], timings: list[dict[str, Any]]) -> None:
    """Rewrite ``timing.csv`` and ``rounds.csv`` (in that order: a round counts as finished
    once its row is in rounds.csv); ``rows``: the rounds (or their rounds.csv dicts)."""
    atomic_write_csv(Path(out) / "timing.csv", _blanked(timings, TIMING_FIELDS), TIMING_FIELDS)
    rows_json = [r.to_json() if isinstance(r, DaggerRound) else dict(r) for r in rows]
    atomic_write_csv(Path(out) / "rounds.csv", _blanked(rows_json, ROUND_FIELDS), ROUND_FIELDS)


def read_timing(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/timing.csv`` (wall time per round)."""
    return _read_csv(Path(out) / "timing.csv")


def _blanked(rows: list[dict[str, Any]], fields: list[str]) -> list[dict[str, Any]]:
    """``rows`` restricted to ``fields``, a missing or None value as an empty field."""
    return [{k: ("" if r.get(k) is None else r.get(k)) for k in fields} for r in rows]


#: Columns of rounds.csv that hold text; every other field is a number or empty.
_TEXT_FIELDS = {"dataset", "policy"}


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows written by :func:`write_rows`, numbers parsed back (exactly: floats were written
    by repr). A file that is not text, a row cut short or longer than the header, or a field
    that should be a finite number and is not raises CorruptFileError naming the file, row and
    field (they were internal errors when the run was continued)."""
    if not path.is_file():
        return []
    fix = "restore it, or start the run again with --overwrite"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError(f"{str(path)!r} is not a text table (it was damaged); "
                               f"{fix}") from None
    try:
        raws = list(csv.DictReader(text.splitlines(), strict=True))
    except csv.Error as exc:  # an unclosed quote, a field over csv's size limit, ...
        raise CorruptFileError(f"{str(path)!r} is not a readable CSV table ({exc}); "
                               f"{fix}") from None
    rows = []
    for line, raw in enumerate(raws, start=2):
        if None in raw or None in raw.values():
            raise CorruptFileError(f"{str(path)!r}: line {line} has other fields than the "
                                   f"header (the file was cut or edited); {fix}")
        row = {k: _number(v) for k, v in raw.items()}
        for key, value in row.items():
            if key not in _TEXT_FIELDS and not (
                    value is None or isinstance(value, int)
                    or (isinstance(value, float) and math.isfinite(value))):
                raise CorruptFileError(f"{str(path)!r}: field {key!r} of line {line} must be a "
                                       f"finite number, got {raw[key]!r}; {fix}")
        rows.append(row)
    if text and not text.endswith("\n"):  # written whole, so it was cut mid-row
        raise CorruptFileError(f"{str(path)!r} does not end with a whole row (it was cut); {fix}")
    return rows


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text == "" else text
