"""Side-by-side comparison of chunk tokenizers on smooth action data: tokens per chunk,
compression against per-step binning, held-out reconstruction RMSE, and fit time.

Data sources: ``lqr`` — noise-free LQR closed loops of an env (process noise ``noise_std=0`` and a
noise-free expert, so the actions are sums of decaying exponentials of the closed-loop modes);
``sines`` — sums of two sinusoids per dimension with random amplitudes and phases.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents import make_expert
from qbc.chunking.base import make_chunk_tokenizer
from qbc.chunking.chunks import make_chunks
from qbc.data.episodes import rollout_episodes
from qbc.errors import InvalidValueError
from qbc.infra.files import atomic_write_json
from qbc.infra.progress import Log, silent

DEFAULT_SPECS = (
    {"name": "per-step", "quantizer": "uniform", "n_bins": 256},
    {"name": "per-step", "quantizer": "uniform", "n_bins": 64},
    {"name": "fast", "scale": 10.0},
    # finer scales span more integer symbols (heavy-tailed data: many more), so a bigger vocabulary
    {"name": "fast", "scale": 50.0, "vocab_size": 8192},
    {"name": "fast", "scale": 200.0, "vocab_size": 32768},
    {"name": "beast", "n_control_points": 10, "degree": 4, "bins": 256},
    {"name": "rvq", "levels": 4, "codes": 256},
)


@dataclass
class ChunkCompareConfig:
    """Compare chunk tokenizers on one smooth-action dataset and print one table."""

    source: str = "lqr"
    """``lqr`` (noise-free LQR closed loops of env_id) or ``sines`` (sums of sinusoids)."""
    env_id: str = "qbc/LinearStable-v0"
    """env of the ``lqr`` source (its process noise is set to 0)."""
    n_episodes: int = 600
    """episodes (``lqr``) or sine chunks / 100 (``sines``)."""
    k: int = 16
    """chunk length (steps)."""
    stride: int = 1
    """steps between the starts of consecutive chunks of an episode."""
    fit_chunks: int = 100_000
    """chunks each tokenizer is fitted on (from the training episodes, repeated if fewer)."""
    held_out: float = 0.2
    """fraction of episodes (chunks for ``sines``) kept out of fitting, scored by ``report``."""
    seed: int = 0
    """seed of the episodes, the split and the tokenizers' k-means."""
    specs: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SPECS])
    """tokenizers to compare: registry name plus parameters."""
    json: Path | None = None
    """also write the rows (and this config) as JSON here."""


def lqr_episode_actions(env_id: str, n_episodes: int, seed: int) -> list[np.ndarray]:
    """Actions (T, D) of ``n_episodes`` noise-free LQR closed-loop episodes of ``env_id``."""
    import gymnasium as gym

    env = gym.make(env_id, noise_std=0.0)
    try:
        expert = make_expert("lqr", env)
    finally:
        env.close()
    episodes = rollout_episodes(env_id, expert, n_episodes, seed=seed,
                                env_kwargs={"noise_std": 0.0})
    return [np.asarray(ep.actions, dtype=np.float64) for ep in episodes]


def sine_chunks(n: int, k: int, dim: int = 2, seed: int = 0) -> np.ndarray:
    """(n, k, dim) sums of two sinusoids (0.5 and 1.5 cycles per chunk) per dimension."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, k)[None, :, None]
    amp = rng.uniform(0.5, 2.0, (n, 2, 1, dim))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1, dim))
    return (amp[:, 0] * np.sin(np.pi * t + phase[:, 0])
            + 0.3 * amp[:, 1] * np.cos(3 * np.pi * t + phase[:, 1]))


def split_chunks(cfg: ChunkCompareConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit chunks (fit_chunks, k, D), held-out chunks (M, k, D)) of the configured source."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.source == "sines":
        chunks = sine_chunks(cfg.n_episodes * 100, cfg.k, seed=cfg.seed)
        n_test = int(len(chunks) * cfg.held_out)
        train, test = chunks[n_test:], chunks[:n_test]
    elif cfg.source == "lqr":
        episodes = lqr_episode_actions(cfg.env_id, cfg.n_episodes, cfg.seed)
        order = rng.permutation(len(episodes))
        n_test = max(1, int(len(episodes) * cfg.held_out))
        test = make_chunks([episodes[i] for i in order[:n_test]], cfg.k, cfg.stride)
        train = make_chunks([episodes[i] for i in order[n_test:]], cfg.k, cfg.stride)
    else:
        raise InvalidValueError(f"unknown source {cfg.source!r}; use 'lqr' or 'sines'")
    idx = rng.choice(len(train), cfg.fit_chunks, replace=len(train) < cfg.fit_chunks)
    return train[idx], test


def compare(cfg: ChunkCompareConfig) -> list[dict[str, Any]]:
    """Fit every spec on the fit chunks (timed) and report on the held-out chunks: one row each."""
    train, test = split_chunks(cfg)
    rows = []
    for spec in cfg.specs:
        spec = dict(spec)
        if spec["name"] == "rvq":
            spec.setdefault("seed", cfg.seed)
        start = time.perf_counter()
        tok = make_chunk_tokenizer(spec).fit(train)
        fit_s = time.perf_counter() - start
        rep = tok.report(test)
        rows.append({"tokenizer": _label(spec), "fit_s": fit_s, "n_fit_chunks": len(train),
                     **{key: rep[key] for key in (
                         "n_chunks", "mean_tokens_per_chunk", "compression_ratio", "rmse",
                         "rmse_per_dim", "max_abs_error", "decode_failure_rate", "vocab_size")}})
    return rows


def _label(spec: dict[str, Any]) -> str:
    params = ",".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec['name']}({params})"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The comparison as a text table."""
    lines = [f"{'tokenizer':<52} {'tok/chunk':>9} {'ratio':>6} {'rmse':>9} {'max|err|':>9} "
             f"{'fail':>5} {'fit s':>6}"]
    for r in rows:
        fail = "-" if r["decode_failure_rate"] is None else f"{r['decode_failure_rate']:.0%}"
        lines.append(f"{r['tokenizer']:<52} {r['mean_tokens_per_chunk']:>9.2f} "
                     f"{r['compression_ratio']:>5.1f}x {r['rmse']:>9.3g} "
                     f"{r['max_abs_error']:>9.3g} {fail:>5} {r['fit_s']:>6.1f}")
    return "\n".join(lines)


def run_compare(cfg: ChunkCompareConfig, log: Log = silent) -> list[dict[str, Any]]:
    """Compare, give ``log`` the table with its data description, write the rows to
    ``cfg.json`` if given, return them."""
    rows = compare(cfg)
    what = (f"noise-free LQR closed loops of {cfg.env_id}" if cfg.source == "lqr"
            else "sums of sinusoids")
    log(f"{what}, k={cfg.k}, stride={cfg.stride}: fitted on {rows[0]['n_fit_chunks']} chunks, "
          f"scored on {rows[0]['n_chunks']} held-out chunks")
    log(format_rows(rows))
    if cfg.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
        atomic_write_json(cfg.json, json.loads(json.dumps({"config": config, "rows": rows})))
    return rows
