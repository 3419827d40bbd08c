"""Train a stable-baselines3 expert (default: SAC on Pendulum-v1, 20k steps, lr 1e-3), save it
and print its evaluated mean return. Same as ``qbc expert train``; see ``--help`` for the flags.

    python scripts/train_sb3_expert.py                  # -> experts/Pendulum-v1-sac.zip
    python scripts/train_sb3_expert.py --env qbc/InvertedPendulum-v0 --algo td3
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["expert", "train", *sys.argv[1:]]))
