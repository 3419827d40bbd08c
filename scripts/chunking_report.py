"""README.md of the chunk-tokenizer comparison: tables per env, growth of regret with H and the
stable-vs-unstable prediction checked (:mod:`qbc.experiments.chunking_report`).

Usage: qbc sweep --config scripts/sweeps/chunking.toml --workers 2 --out DIR
       python scripts/chunking_report.py DIR
"""

import sys

from qbc.experiments.chunking_report import write_readme

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"wrote {write_readme(sys.argv[1])}")
