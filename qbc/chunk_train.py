"""Compatibility: chunk training moved to :mod:`qbc.training.chunked` (the library; the
``qbc train-chunked`` command is a module of the command package); the names below keep
``from qbc.chunk_train import ...`` working."""

from qbc.training.chunked import (
    ChunkData,
    ChunkTrainConfig,
    chunk_rows,
    chunk_tensors,
    chunk_val_loss,
    closing_rollout,
    parse_params,
    prepare_chunk_data,
    run_train_chunked,
    tokenizer_params,
    train_chunked,
)

__all__ = [
    "ChunkData", "ChunkTrainConfig", "chunk_rows", "chunk_tensors", "chunk_val_loss",
    "closing_rollout", "parse_params", "prepare_chunk_data", "run_train_chunked",
    "tokenizer_params", "train_chunked",
]
