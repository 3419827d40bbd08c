"""The validation of chunk training (:mod:`qbc.training.chunked`): the loss on a split, the
decoded action error that selects the checkpoint and stops early, and the selection itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qbc.policy.chunked import ChunkPolicy
from qbc.training.chunk_data import ChunkData

#: Held-out chunks decoded at each validation for the action error (evenly spaced rows).
VAL_DECODE_ROWS = 2048


@torch.no_grad()
def chunk_val_loss(module: torch.nn.Module, data: ChunkData, rows: int = 8192) -> float:
    """Mean loss over a split (the training objective), in slices of ``rows``."""
    module.eval()
    total = 0.0
    for start in range(0, len(data), rows):
        idx = torch.arange(start, min(len(data), start + rows), device=data.obs.device)
        total += float(module.loss(data.batch(idx))) * len(idx)
    return total / len(data)


def chunk_action_error(policy: ChunkPolicy, obs: np.ndarray, chunks: np.ndarray,
                       rows: int = VAL_DECODE_ROWS) -> dict[str, float]:
    """The selection criterion: RMS error (action units) of the chunks ``policy`` decodes
    (argmax) for ``obs`` (N, obs_dim) against the demonstrated ``chunks`` (N, k, D), on at most
    ``rows`` evenly spaced rows; with the fraction of them that failed to decode."""
    pick = np.unique(np.linspace(0, len(obs) - 1, min(rows, len(obs))).astype(np.int64))
    pred, failed = policy.predict_chunks(obs[pick])
    err = pred.astype(np.float64) - chunks[pick]
    return {"val_action_rmse": float(np.sqrt(np.mean(err ** 2))),
            "val_decode_failure_rate": float(np.mean(failed))}


def select_by_action_error(best: dict[str, Any], record: dict[str, Any], step: int
                           ) -> tuple[dict[str, Any], bool]:
    """The selection state after the evaluation ``record`` at ``step`` and whether this step's
    checkpoint becomes best/: the lowest ``val_action_rmse`` so far (ties keep the earlier
    step). ``best['step']`` is what early stopping
    (:func:`qbc.training.evaluation.should_stop`) counts from."""
    if best.get("val_action_rmse") is not None and \
            not record["val_action_rmse"] < best["val_action_rmse"]:
        return best, False
    return {"step": step, "val_action_rmse": record["val_action_rmse"],
            "val_loss": record.get("val_loss")}, True
