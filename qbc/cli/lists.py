"""Numbers from list flags, checked: sorted positive integers (``--horizons``) and sorted
positive finite floats (``--sizes``, ``--deltas``), each refusal one line naming the flag.

qbc/cli splits the comma form before tyro sees it, so the values come as typed tuples; strings
(``"10,50"``) are still accepted for callers that build configs by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qbc.errors import InvalidValueError
from qbc.infra.validate import positive_ints, split_list_flag

__all__ = ["positive_floats", "positive_ints", "parse_horizons", "KeepCommas"]


def positive_floats(values: str | Sequence[float | str], flag: str) -> list[float]:
    """``(0.3, 0.1)`` or ``"0.1,0.3"`` -> [0.1, 0.3], sorted; positive finite numbers only."""
    items = split_list_flag(values)
    text = ",".join(items)  # as the messages show it
    try:
        out = [float(v) for v in items]
    except ValueError:
        raise InvalidValueError(f"{flag} must be numbers like 0.1 0.3 (or 0.1,0.3), got "
                                f"{text!r}") from None
    if not out or min(out) <= 0 or not np.all(np.isfinite(out)):
        raise InvalidValueError(f"{flag} must be positive finite numbers, got {text!r}")
    return sorted(out)


def parse_horizons(values: str | Sequence[int | str]) -> list[int]:
    """:func:`positive_ints` of ``--horizons``."""
    return positive_ints(values, "--horizons")


class KeepCommas:
    """Marker of a tuple flag whose values keep their commas (``Annotated[tuple[str, ...],
    KeepCommas]``: JSON text, KEY=VALUE pairs), so :func:`qbc.cli.split_comma_lists` leaves it
    alone."""
