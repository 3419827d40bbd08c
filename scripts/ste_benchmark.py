"""Thin wrapper of `qbc ste benchmark` (the experiment lives in qbc.ste.benchmark, the command in
qbc.cli.ste; flags: --help)."""

import sys

from qbc.cli import main

if __name__ == "__main__":
    sys.exit(main(["ste", "benchmark", *sys.argv[1:]]))
