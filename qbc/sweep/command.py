"""The ``qbc sweep`` and ``qbc sweep report`` commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qbc.errors import QbcError


@dataclass
class SweepConfig:
    """Run a grid of collect -> train -> coupled-rollout cells from a TOML file; resumable."""

    config: Path
    """TOML sweep file (examples in scripts/sweeps/)."""
    out: Path | None = None
    """sweep directory (results.csv, sweep_config.json, cells/); default runs/sweeps/<file stem>.
    Rerunning into the same directory skips the cells that are already in results.csv."""
    workers: int = 1
    """cells run at once: local processes, or the CPUs of a Ray instance started here."""
    backend: Literal["local", "ray"] = "local"
    """local (this machine, a process pool when workers > 1) or ray (pip install "qbc[ray]")."""
    address: str | None = None
    """Ray cluster address, e.g. auto or ray://head:10001 (default: start Ray locally)."""
    report: bool = True
    """write the report (summary.csv, report.md, PNG plots) when the sweep ends."""
    progress: bool = True
    """show progress bars."""


def default_out(config: Path) -> Path:
    return Path("runs") / "sweeps" / Path(config).stem


def run_sweep_command(cfg: SweepConfig) -> Any:
    from qbc.sweep.report import format_report, write_report
    from qbc.sweep.run import format_summary, run_sweep
    from qbc.sweep.spec import load_spec

    spec = load_spec(cfg.config)
    out = cfg.out or default_out(cfg.config)
    result = run_sweep(spec, out, workers=cfg.workers, backend=cfg.backend,
                       address=cfg.address, progress=cfg.progress, source=str(cfg.config))
    print(format_summary(result))
    if cfg.report and result.n_cells > len(result.failed):
        print(format_report(write_report(out)))
    if result.failed:
        raise QbcError(f"{len(result.failed)} of {result.n_cells} cells failed (their rows are "
                       "not in the table); see the lines above, then run again to retry them")
    return result


def _commands():
    from qbc.cli import Command
    from qbc.sweep.report import ReportConfig, run_report

    return (Command(SweepConfig, run_sweep_command,
                    "grid of collect/train/rollout runs from a TOML file (resumable, pool or Ray)"),
            Command(ReportConfig, run_report,
                    "aggregate a sweep over seeds: summary.csv, report.md, regret plots"))


SWEEP_COMMAND, REPORT_COMMAND = _commands()
