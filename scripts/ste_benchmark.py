"""Thin wrapper of `qbc ste benchmark` (all logic lives in qbc.ste.benchmark; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "benchmark", *sys.argv[1:]]))
