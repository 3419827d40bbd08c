"""Chunk tokenizers side by side on smooth actions: tokens per chunk, compression against
per-step binning, held-out RMSE and fit time (qbc.experiments.chunk_tokenizers); --json keeps
the rows.

    python scripts/compare_chunk_tokenizers.py                       # noise-free LQR, k=16
    python scripts/compare_chunk_tokenizers.py --source sines --k 16
"""

import sys

from qbc.cli import run_script
from qbc.experiments.chunk_tokenizers import ChunkCompareConfig, run_compare

if __name__ == "__main__":
    sys.exit(run_script(ChunkCompareConfig, lambda cfg: run_compare(cfg, log=print),
                        "compare_chunk_tokenizers"))
