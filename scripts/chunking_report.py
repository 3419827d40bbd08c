"""README.md of the chunk-tokenizer comparison: tables per env, growth of regret with H and the
stable-vs-unstable prediction checked (:mod:`qbc.experiments.chunking_report`).

Usage: qbc sweep --config scripts/sweeps/chunking.toml --workers 2 --out DIR
       python scripts/chunking_report.py DIR
"""

import sys

from qbc.errors import QbcError
from qbc.experiments.chunking_report import write_readme

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        print(f"wrote {write_readme(sys.argv[1])}")
    except QbcError as e:  # one line, as the qbc commands do
        sys.exit(f"chunking_report: error: {e}")
