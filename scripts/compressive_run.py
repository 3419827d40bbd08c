"""Quantized compressive learning on a scikit-learn dataset: a thin wrapper of
`qbc compressive run` (same flags; see `python scripts/compressive_run.py --help`).

    python scripts/compressive_run.py --dataset digits --model nn --bits 1,2,3,4,full \
        --k 16,32,64,128 --quantizer lloyd_max,uniform --seeds 5 --out runs/digits_nn
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["compressive", "run", *sys.argv[1:]]))
