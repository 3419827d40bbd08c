"""Thin wrapper of `qbc ste recurrence` (all logic lives in qbc.ste.recurrence; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "recurrence", *sys.argv[1:]]))
