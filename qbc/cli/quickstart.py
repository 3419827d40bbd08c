"""The ``qbc quickstart`` command: :mod:`qbc.experiments.quickstart` and its closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qbc.cli import Command
from qbc.experiments.quickstart import QuickstartConfig, run_quickstart
from qbc.experiments.quickstart_report import format_summary


def run(cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the quickstart and print its one-screen summary and where the report is."""
    result = run_quickstart(cfg)
    print(format_summary(result))
    print(f"report: {Path(result['out']) / 'report.md'} ({result['seconds']:.0f} s)")
    videos = [r["video"] for r in result["rows"] if r.get("video")]
    if videos:
        print(f"videos: {len(videos)} under {Path(result['out']) / 'videos'}")
    return result


COMMAND = Command(QuickstartConfig, run,
                  "the whole pipeline on embedded defaults, with a report (the main job)")
