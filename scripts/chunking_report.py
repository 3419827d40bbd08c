"""README.md of the chunk-tokenizer comparison: tables per env, growth of regret with H and the
stable-vs-unstable prediction checked (:mod:`qbc.experiments.chunking_report`).

Usage: qbc sweep --config scripts/sweeps/chunking.toml --workers 2 --out DIR
       python scripts/chunking_report.py DIR
"""

import sys

from qbc.cli import run_script
from qbc.experiments.chunking_report import ReportArgs, write_readme

if __name__ == "__main__":  # bad input (no DIR, a damaged sweep): one line, exit 2
    argv = ["--sweep-dir", *sys.argv[1:]] if sys.argv[1:2] != ["--help"] else ["--help"]
    sys.exit(run_script(ReportArgs, lambda a: print(f"wrote {write_readme(a.sweep_dir)}"),
                        "chunking_report", argv))
