"""Thin wrapper of `qbc ste recover` (the experiment lives in qbc.ste.recover, the command in
qbc.cli.ste; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "recover", *sys.argv[1:]]))
