"""Cells of the markdown tables that the experiment reports write: a missing value (None or
NaN) is shown as a dash."""

from __future__ import annotations

import math

MISSING = "—"


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def number_cell(x: float | None) -> str:
    """``x`` with 3 significant digits."""
    return MISSING if _missing(x) else f"{x:.3g}"


def percent_cell(x: float | None) -> str:
    """A fraction ``x`` as a percentage with one decimal (0.054 -> '5.4%')."""
    return MISSING if _missing(x) else f"{x:.1%}"
