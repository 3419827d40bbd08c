"""Thin wrapper of `qbc ste recover` (all logic lives in qbc.ste.recover; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "recover", *sys.argv[1:]]))
