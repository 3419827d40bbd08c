"""Run a sweep from a TOML file, or report on one: a thin wrapper of `qbc sweep`.

    python scripts/sweep.py --config scripts/sweeps/regret_vs_horizon.toml --workers 2
    python scripts/sweep.py --config scripts/sweeps/regret_vs_horizon.toml --backend ray
    python scripts/sweep.py report runs/sweeps/regret_vs_horizon

Every flag of `qbc sweep --help` (and `qbc sweep report --help`) works here; the logic lives in
qbc/sweep/. Rerunning a sweep into the same --out resumes it.
"""

import sys

from qbc.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    command = ["sweep", "report"] if args[:1] == ["report"] else ["sweep"]
    sys.exit(main([*command, *args[len(command) - 1:]]))
