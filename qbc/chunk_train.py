"""Compatibility: chunk training moved to :mod:`qbc.training.chunked` (the library; the
``qbc train-chunked`` command is a module of the command package). Every name of that module is
reachable here, so ``from qbc.chunk_train import ChunkTrainConfig, train_chunked`` keeps working."""

from typing import Any

from qbc.training import chunked as _chunked


def __getattr__(name: str) -> Any:
    """``qbc.chunk_train.X`` is ``qbc.training.chunked.X``."""
    return getattr(_chunked, name)


def __dir__() -> list[str]:
    return [n for n in dir(_chunked) if not n.startswith("_")]
