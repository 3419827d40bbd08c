"""The ``qbc sweep`` and ``qbc sweep report`` commands: their configs, run functions and
printing; the work is in :mod:`qbc.sweep`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from qbc.cli import Command
from qbc.errors import QbcError
from qbc.infra.run_folder import LOCK_WAIT_S
from qbc.sweep.report import CHUNK_GROUP, GROUP, write_report
from qbc.sweep.run import run_sweep
from qbc.sweep.spec import load_spec


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
    lock_timeout: float = LOCK_WAIT_S
    """seconds to wait for a dataset that another sweep sharing the datasets root is collecting
    (its lock) before giving up with a line naming that process and the lock file."""


def default_out(config: Path) -> Path:
    return Path("runs") / "sweeps" / Path(config).stem


def run_sweep_command(cfg: SweepConfig) -> Any:
    spec = load_spec(cfg.config)
    out = cfg.out or default_out(cfg.config)
    result = run_sweep(spec, out, workers=cfg.workers, backend=cfg.backend,
                       address=cfg.address, progress=cfg.progress, source=str(cfg.config),
                       lock_timeout=cfg.lock_timeout)
    print(format_summary(result))
    if cfg.report and result.n_cells > len(result.failed):
        print(format_report(write_report(out)))
    if result.failed:
        raise QbcError(f"{len(result.failed)} of {result.n_cells} cells failed (their rows are "
                       "not in the table); see the lines above, then run again to retry them")
    return result


def format_summary(result: Any) -> str:
    """A few lines of a :class:`qbc.sweep.SweepResult`: cells run / skipped / failed, time,
    where the table is."""
    lines = [
        f"sweep {result.out}: {result.n_cells} cells; {len(result.executed)} run now, "
        f"{result.skipped} already done, {len(result.failed)} failed; "
        f"{result.datasets_collected} datasets collected; {result.seconds:.1f} s",
        f"  table: {result.table}",
    ]
    if result.stale:
        lines.append(f"  the table also holds {result.stale} cells of an earlier version of the "
                     "grid (kept; the report leaves them out)")
    for key, msg in result.failed.items():
        lines.append(f"  failed {key}: {msg} (see {result.out / 'cells' / key / 'error.txt'})")
    if result.failed:
        lines.append("  run the same command again to retry the failed cells")
    return "\n".join(lines)


@dataclass
class ReportConfig:
    """Aggregate a sweep's results.csv over seeds into summary.csv, report.md and PNG plots."""

    dir: Annotated[Path, tyro.conf.Positional]
    """sweep directory (the one holding results.csv)."""


def format_report(report: dict[str, Any]) -> str:
    """Short stdout summary: growth exponents, files written."""
    lines = [f"{len(report['summary'])} (setting, H) rows aggregated"]
    for f in report["fits"]:
        setting = ", ".join(str(f[c]) for c in (*GROUP, *CHUNK_GROUP) if c in f)
        lines.append(f"  {setting}: regret ~ H^{f['slope']:.2f} "
                     f"[{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}] (better fit: {f['better']})")
    if report.get("stale_cells"):
        lines.append(f"  left out {report['stale_cells']} cells of an earlier version of the grid "
                     "(still in results.csv)")
    lines += [f"  wrote {p}" for p in report["files"]]
    return "\n".join(lines)


def run_report(cfg: ReportConfig) -> dict[str, Any]:
    report = write_report(cfg.dir)
    print(format_report(report))
    return report


SWEEP_COMMAND = Command(SweepConfig, run_sweep_command,
                        "grid of collect/train/rollout runs from a TOML file (resumable, pool or "
                        "Ray)")
REPORT_COMMAND = Command(ReportConfig, run_report,
                         "aggregate a sweep over seeds: summary.csv, report.md, regret plots")
