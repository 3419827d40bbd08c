"""Thin wrapper of `qbc ste recurrence` (the experiment lives in qbc.ste.recurrence, the command in
qbc.cli.ste; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "recurrence", *sys.argv[1:]]))
