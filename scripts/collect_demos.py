"""Collect expert demonstrations as a Minari dataset (HDF5): a thin wrapper of ``qbc collect``.

    python scripts/collect_demos.py --env qbc/LinearUnstable-v0 --expert lqr --episodes 100 \\
        --num-envs 100 --seed 0 --dataset qbc/linear-unstable-lqr-v0

    python scripts/collect_demos.py --env Pendulum-v1 --expert sb3 --expert-path sac_pendulum.zip \\
        --episodes 50 --dataset pendulum/sac-v0

Datasets go under $MINARI_DATASETS_PATH (default ~/.minari/datasets); all flags:
``python scripts/collect_demos.py --help``.
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["collect", *sys.argv[1:]]))
