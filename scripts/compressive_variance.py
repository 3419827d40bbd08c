"""Delta-method variance (per projection, i.e. k·Var) of the debiased inner-product estimator
for Lloyd-Max and MSE-optimal uniform quantizers designed for N(0,1), by bit depth and cosine ρ.

    python scripts/compressive_variance.py
"""

from qbc.compressive.estimators import variance_table

QUANTIZERS = ["lloyd_max", "uniform"]
BITS = [1, 2, 3, 4]
RHOS = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]

if __name__ == "__main__":
    table = {(r["quantizer"], r["bits"], r["rho"]): r["variance"]
             for r in variance_table(QUANTIZERS, BITS, RHOS)}
    print("k * Var(debiased estimate) (delta method); lower is better")
    print(f"{'bits':>4} {'quantizer':<10}" + "".join(f"{f'rho={r}':>11}" for r in RHOS))
    for b in BITS:
        for q in QUANTIZERS:
            print(f"{b:>4} {q:<10}" + "".join(f"{table[(q, b, r)]:>11.4f}" for r in RHOS))
        lm, un = ([table[(q, b, r)] for r in RHOS] for q in QUANTIZERS)
        best = ["=" if abs(x - y) < 1e-9 * x else ("LM" if x < y else "U")
                for x, y in zip(lm, un, strict=True)]
        print(f"{'':>4} {'better':<10}" + "".join(f"{x:>11}" for x in best))
    print(f"{'full':>4} {'none':<10}" + "".join(f"{table[('none', 'full', r)]:>11.4f}"
                                                 for r in RHOS))
