"""The delta-method variance table of the debiased inner-product estimator (per projection,
i.e. k·Var) for Lloyd-Max and MSE-optimal uniform quantizers designed for N(0,1), by bit depth
and cosine ρ (``scripts/compressive_variance.py``; the numbers: :func:`variance_table`)."""

from __future__ import annotations

from qbc.compressive.estimators import variance_table

QUANTIZERS = ["lloyd_max", "uniform"]
BITS = [1, 2, 3, 4]
RHOS = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]


def variance_report(quantizers: list[str] = QUANTIZERS, bits: list[int] = BITS,
                    rhos: list[float] = RHOS) -> str:
    """The table as text: a row per (bits, quantizer), a row saying which is lower ('LM'
    Lloyd-Max, 'U' uniform, '=' equal) and full precision last (two quantizers compared)."""
    table = {(r["quantizer"], r["bits"], r["rho"]): r["variance"]
             for r in variance_table(quantizers, bits, rhos)}
    lines = ["k * Var(debiased estimate) (delta method); lower is better",
             f"{'bits':>4} {'quantizer':<10}" + "".join(f"{f'rho={r}':>11}" for r in rhos)]
    for b in bits:
        for q in quantizers:
            lines.append(f"{b:>4} {q:<10}" + "".join(f"{table[(q, b, r)]:>11.4f}" for r in rhos))
        first, second = ([table[(q, b, r)] for r in rhos] for q in quantizers[:2])
        best = ["=" if abs(x - y) < 1e-9 * x else ("LM" if x < y else "U")
                for x, y in zip(first, second, strict=True)]
        lines.append(f"{'':>4} {'better':<10}" + "".join(f"{x:>11}" for x in best))
    lines.append(f"{'full':>4} {'none':<10}" + "".join(f"{table[('none', 'full', r)]:>11.4f}"
                                                        for r in rhos))
    return "\n".join(lines)
