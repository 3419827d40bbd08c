"""Outputs of a compressive-learning run: PNG plots and the text summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from qbc.compressive.sweep import FULL, NO_QUANTIZER


def _by_key(summary: list[dict]) -> dict[tuple, dict]:
    return {(s["quantizer"], s["bits"], s["k"]): s for s in summary}


def format_table(summary: list[dict], quantizers: Sequence[str], bits: Sequence[str],
                 ks: Sequence[int]) -> str:
    """Rows ``bits × quantizer``, columns ``k``; cells ``mean ± interval half-width``."""
    table = _by_key(summary)
    metric = summary[0]["metric"] if summary else "value"
    head = f"{'bits':>5} {'quantizer':<10}" + "".join(f"{f'k={k}':>16}" for k in ks)
    lines = [f"{metric} (mean ± 95% interval over seeds)", head]
    for b in bits:
        names = [NO_QUANTIZER] if b == FULL else list(quantizers)
        for q in names:
            cells = []
            for k in ks:
                s = table.get((q, b, k))
                if s is None:
                    cells.append(f"{'-':>16}")
                    continue
                half = s["ci_high"] - s["mean"]
                pm = f" ± {half:.3f}" if math.isfinite(half) else ""
                cells.append(f"{s['mean']:.3f}{pm}".rjust(16))
            lines.append(f"{b:>5} {q:<10}" + "".join(cells))
    return "\n".join(lines)


def format_winners(winners: list[dict], ks: Sequence[int]) -> str:
    """Which quantizer wins per (bits, k); ``*`` marks a paired 95% interval excluding zero."""
    if not winners:
        return ""
    cell = {(w["bits"], w["k"]): w for w in winners}
    bits = sorted({w["bits"] for w in winners}, key=int)
    lines = ["better quantizer (* = paired 95% interval over seeds excludes 0)",
             f"{'bits':>5} " + "".join(f"{f'k={k}':>14}" for k in ks)]
    for b in bits:
        row = []
        for k in ks:
            w = cell.get((b, k))
            mark = "" if w is None else w["winner"] + ("*" if w["significant"] else "")
            row.append(f"{mark:>14}")
        lines.append(f"{b:>5} " + "".join(row))
    return "\n".join(lines)


def plot(summary: list[dict], quantizers: Sequence[str], bits: Sequence[str],
         ks: Sequence[int], out_dir: Path, title: str) -> list[Path]:
    """``<metric>_vs_bits.png`` (one panel per k) and ``<metric>_vs_k.png`` (one panel per bit
    depth): mean per quantizer with 95% intervals over seeds; full precision dashed, black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    table = _by_key(summary)
    metric = summary[0]["metric"]
    int_bits = [b for b in bits if b != FULL]

    def points(q, keys):  # keys: [(bits, k)] -> (positions kept, means, half-widths)
        kept = [(i, table[(q, b, k)]) for i, (b, k) in enumerate(keys) if (q, b, k) in table]
        half = [s["ci_high"] - s["mean"] if math.isfinite(s["ci_high"]) else 0.0
                for _, s in kept]
        return [i for i, _ in kept], [s["mean"] for _, s in kept], half

    def figure(name, panel_keys, panel_title, x_values, keys_of):
        fig, axes = plt.subplots(1, len(panel_keys), figsize=(3.2 * len(panel_keys), 3.0),
                                 sharey=True, squeeze=False)
        for ax, key in zip(axes[0], panel_keys, strict=True):
            for q in [*quantizers, NO_QUANTIZER]:
                idx, means, half = points(q, keys_of(key, q))
                if not means:
                    continue
                style = ({"color": "k", "ls": "--", "label": "full precision"}
                         if q == NO_QUANTIZER else {"label": q})
                ax.errorbar([x_values(key, q)[i] for i in idx], means, yerr=half, marker="o",
                            capsize=3, **style)
            ax.set_title(panel_title(key))
            ax.set_xlabel(name)
            if name == "bits":
                ax.set_xticks([*map(int, int_bits), full_x], [*int_bits, FULL])
            else:
                ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(metric)
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{metric}_vs_{name}.png"
        return save_figure(fig, path, dpi=110, tight=False)

    # x = bits; full precision drawn at x = max(bits) + 1 so it sits beside the quantized points.
    full_x = (max(int(b) for b in int_bits) + 1) if int_bits else 1
    paths = [figure(
        "bits", list(ks), lambda k: f"k = {k}",
        lambda k, q: [full_x] if q == NO_QUANTIZER else [int(b) for b in int_bits],
        lambda k, q: [(FULL, k)] if q == NO_QUANTIZER else [(b, k) for b in int_bits])]
    if int_bits:
        paths.append(figure(
            "k", int_bits, lambda b: f"b = {b}", lambda b, q: list(ks),
            lambda b, q: [(FULL if q == NO_QUANTIZER else b, k) for k in ks]))
    return paths
