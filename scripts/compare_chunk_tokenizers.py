"""Chunk tokenizers side by side on smooth actions: tokens per chunk, compression against
per-step binning, held-out RMSE and fit time (qbc.experiments.chunk_tokenizers); --json keeps
the rows.

    python scripts/compare_chunk_tokenizers.py                       # noise-free LQR, k=16
    python scripts/compare_chunk_tokenizers.py --source sines --k 16
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from qbc.errors import QbcError
from qbc.experiments.chunk_tokenizers import ChunkCompareConfig, run_compare
from qbc.infra.files import atomic_write_json


@dataclass
class Args(ChunkCompareConfig):
    json: Path | None = None
    """write the rows (and this config) as JSON here."""


if __name__ == "__main__":
    args = tyro.cli(Args, description=__doc__)
    try:
        rows = run_compare(args, log=print)
    except QbcError as exc:
        sys.exit(f"compare_chunk_tokenizers: error: {exc}")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        atomic_write_json(args.json, json.loads(json.dumps({"config": config, "rows": rows})))
