"""Output files shared by the STE experiments: the resolved config and CSV tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qbc.infra.files import atomic_write_csv, atomic_write_json, json_safe


def write_config(out: Path, config: Any) -> Path:
    """The resolved config of a run, as ``config.json`` beside its outputs."""
    return atomic_write_json(Path(out) / "config.json", json_safe(config))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows of equal keys as a CSV table (atomic; the csv module's CRLF line ends, as the STE
    tables have always had)."""
    return atomic_write_csv(path, rows, lineterminator="\r\n")
