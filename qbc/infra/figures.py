"""The one figure writer of qbc: matplotlib figures saved as PNG atomically, off-screen.

Importing this module switches matplotlib to its Agg backend (no window, no display needed),
which holds for the whole process; library modules therefore import it inside the function that
draws."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from qbc.infra.files import atomic_write  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 120, tight: bool = True) -> Path:
    """Save a matplotlib figure as PNG atomically (``dpi`` dots per inch; ``tight``: cropped to
    its drawn content) and close it. The one figure writer of qbc."""
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi,
                                                   bbox_inches="tight" if tight else None))
    plt.close(fig)
    return out
