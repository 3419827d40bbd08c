"""Output folders, CSV tables and plots shared by the ``qbc ste`` commands."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

from qbc.io import atomic_write, atomic_write_json, atomic_write_text


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_config(out: Path, config: Any) -> Path:
    """The resolved config of a run, as ``config.json`` beside its outputs."""
    return atomic_write_json(Path(out) / "config.json", _jsonable(config))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows of equal keys as a CSV table (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path
