"""Output files shared by the ``qbc ste`` experiments: the resolved config and CSV tables."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from qbc.io import atomic_write_json, atomic_write_text, json_safe


def write_config(out: Path, config: Any) -> Path:
    """The resolved config of a run, as ``config.json`` beside its outputs."""
    return atomic_write_json(Path(out) / "config.json", json_safe(config))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows of equal keys as a CSV table (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())
