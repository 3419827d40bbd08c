"""Chunk tokenizers: chunks of k actions (N, k, D) <-> token sequences, one registry by name.

>>> from qbc.chunking import make_chunks, make_chunk_tokenizer, available_chunk_tokenizers
>>> chunks = make_chunks([episode_actions, ...], k=16, stride=1)         # (N, 16, D)
>>> tok = make_chunk_tokenizer("fast", scale=10, vocab_size=1024).fit(chunks)
>>> tokens = tok.encode(chunks); recon = tok.decode(tokens)               # list of N arrays
>>> tok.report(chunks)["compression_ratio"]; tok.save("fast.json"); ChunkTokenizer.load(...)

Names: ``fast`` (DCT + BPE, variable length, decode failures repaired by a rule), ``beast``
(B-spline control points, fixed length), ``rvq`` (residual VQ, fixed length) and ``per-step``
(any scalar registry quantizer per step, the k x D baseline). Register your own with
``@register_chunk_tokenizer("name")`` on a :class:`ChunkTokenizer` subclass.
"""

from qbc.chunking.base import (
    CHUNK_TOKENIZERS,
    ChunkTokenizer,
    available_chunk_tokenizers,
    get_chunk_tokenizer_class,
    make_chunk_tokenizer,
    register_chunk_tokenizer,
)
from qbc.chunking.beast import BeastTokenizer
from qbc.chunking.chunks import QuantileNormalizer, check_chunks, make_chunks
from qbc.chunking.fast import REPAIR_RULES, FastTokenizer
from qbc.chunking.per_step import PerStepTokenizer
from qbc.chunking.rvq import ResidualVQTokenizer

__all__ = [
    "CHUNK_TOKENIZERS",
    "ChunkTokenizer",
    "available_chunk_tokenizers",
    "get_chunk_tokenizer_class",
    "make_chunk_tokenizer",
    "register_chunk_tokenizer",
    "make_chunks",
    "check_chunks",
    "QuantileNormalizer",
    "REPAIR_RULES",
    "FastTokenizer",
    "BeastTokenizer",
    "ResidualVQTokenizer",
    "PerStepTokenizer",
]
