"""Delta-method variance (per projection, i.e. k·Var) of the debiased inner-product estimator
for Lloyd-Max and MSE-optimal uniform quantizers designed for N(0,1), by bit depth and cosine ρ
(qbc.experiments.compressive_variance).

    python scripts/compressive_variance.py
"""

from qbc.experiments.compressive_variance import variance_report

if __name__ == "__main__":
    print(variance_report())
