"""Train a behavior-cloning policy on a Minari dataset: a thin wrapper of `qbc train`.

    python scripts/train_bc.py --dataset qbc/linear-unstable-lqr-v0 --quantizer uniform \
        --bins 64 --policy ar-transformer --steps 3000 --out runs/lqr-ar

Every flag of `qbc train --help` works here; the logic lives in qbc/training/.
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
