"""Why tokens at all (issue 33): demonstrations with several ways to do a task.

- :mod:`~qbc.experiments.multimodal.detour`: the preliminary one-seed run on the detour task
  (``scripts/multimodal.py``, docs/results/multimodal).
- :mod:`~qbc.experiments.multimodal.ledger`: the ledger — mlp-mse, Gaussian, AR token and
  chunked token policies on the detour task, PointMaze and FetchPickAndPlace, several seeds,
  resumable (``scripts/multimodal_ledger.py``); its learners
  (:mod:`~qbc.experiments.multimodal.learners`) and its summary, table and paragraph
  (:mod:`~qbc.experiments.multimodal.summary`).
"""

from qbc.experiments.multimodal.detour import (
    MultimodalConfig,
    format_table,
    multimodal_headline,
    parse_decoding,
    run_multimodal,
)
from qbc.experiments.multimodal.ledger import LedgerConfig, quick_config, run_ledger
from qbc.experiments.multimodal.summary import format_ledger, ledger_headline, results_text

__all__ = ["LedgerConfig", "MultimodalConfig", "format_ledger", "format_table",
           "ledger_headline", "multimodal_headline", "parse_decoding", "quick_config",
           "results_text", "run_ledger", "run_multimodal"]
