"""The ``qbc compressive run`` command: learners on b-bit Gaussian projections of a scikit-learn
dataset, over bits × k × quantizer × seed, with CSV tables, plots and a one-screen summary.

    qbc compressive run --dataset digits --model nn --bits 1,2,3,4,full --k 16,32,64,128 \\
        --quantizer lloyd_max,uniform --seeds 5 --out runs/digits_nn
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.cli import Command
from qbc.compressive.datasets import DATASETS, make_split
from qbc.compressive.learners import MODELS
from qbc.compressive.projection import projection_quantizer
from qbc.compressive.report import format_table, format_winners, plot
from qbc.compressive.sweep import FULL, compare_quantizers, run_grid, summarize
from qbc.errors import InvalidValueError, UnknownNameError
from qbc.infra.files import atomic_write_csv, atomic_write_json, json_safe
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, SEED_LIMIT, Rule, check_config, split_list_flag


@dataclass
class CompressiveConfig:
    """Accuracy / MSE of learners trained on b-bit quantized Gaussian random projections."""

    dataset: str = "digits"
    """digits, breast_cancer, diabetes (regression) or synthetic; scikit-learn's, no downloads."""
    model: str = "nn"
    """nn (1-NN by estimated cosine), linear (logistic regression), ls (least squares)."""
    bits: tuple[str, ...] = ("1", "2", "3", "4", "full")
    """bit depths; 'full' = unquantized projections. Comma- or space-separated."""
    k: tuple[int, ...] = (16, 32, 64, 128)
    """numbers of random projections. Comma- or space-separated."""
    quantizer: tuple[str, ...] = ("lloyd_max", "uniform")
    """quantizers designed for N(0,1) (lloyd_max; uniform = MSE-optimal step). Comma- or
    space-separated."""
    seeds: int = 5
    """number of projection seeds; intervals are over these."""
    first_seed: int = 0
    """seeds are first_seed, first_seed + 1, ..."""
    test_fraction: float = 0.2
    """fraction of the dataset held out for testing."""
    split_seed: int = 0
    """seed of the train/test split (the same for every projection seed)."""
    standardize: bool = True
    """z-score the features with train statistics before the rows are normalised."""
    out: Path = Path("runs/compressive")
    """output directory (results.csv, summary.csv, summary.json, config.json, plots)."""
    overwrite: bool = False
    """replace an existing output directory."""
    plots: bool = True
    """write the PNG plots."""
    progress: bool = True
    """show a progress bar."""


#: Ranges of the numeric flags (seeds are checked by :func:`qbc.infra.validate.check_config`).
RULES = {"seeds": AT_LEAST_ONE, "test_fraction": Rule(lo=0, hi=1, lo_open=True, hi_open=True)}


def resolve(cfg: CompressiveConfig) -> dict[str, Any]:
    """Parse and check the list flags; returns ``{bits: [str], ks: [int], quantizers: [str],
    seeds: [int], task: str}``. Raises the typed errors of :mod:`qbc.errors`."""
    if cfg.model not in MODELS:
        raise UnknownNameError("model", cfg.model, MODELS)
    if cfg.dataset not in DATASETS:
        raise UnknownNameError("dataset", cfg.dataset, DATASETS)
    check_config(cfg, RULES)
    if cfg.first_seed + cfg.seeds > SEED_LIMIT:
        raise InvalidValueError(f"--first-seed + --seeds must stay below 2^32, got "
                                f"{cfg.first_seed} + {cfg.seeds}")
    task = MODELS[cfg.model]
    bits: list[str] = []
    for b in split_list_flag(cfg.bits):
        if b.lower() == FULL:
            bits.append(FULL)
        elif b.isdigit() and 1 <= int(b) <= 12:
            bits.append(str(int(b)))
        else:
            raise InvalidValueError(f"--bits: {b!r} is neither an integer in 1..12 nor 'full'")
    ks = []
    for k in split_list_flag(cfg.k):  # ints from the flags; text from a config built by hand
        if not k.isdigit() or int(k) < 1:
            raise InvalidValueError(f"--k: {k!r} is not a positive integer")
        ks.append(int(k))
    quantizers = split_list_flag(cfg.quantizer)
    for name in quantizers:  # builds each once: unknown names fail here, before any work
        for b in bits:
            if b != FULL:
                projection_quantizer(name, int(b))
    if not bits or not ks or (not quantizers and bits != [FULL]):
        raise InvalidValueError("--bits, --k and --quantizer each need at least one value")
    return {"bits": list(dict.fromkeys(bits)), "ks": sorted(set(ks)),
            "quantizers": list(dict.fromkeys(quantizers)),
            "seeds": list(range(cfg.first_seed, cfg.first_seed + cfg.seeds)), "task": task}


def run_compressive(cfg: CompressiveConfig) -> dict[str, Any]:
    """Run the grid, write the outputs under ``cfg.out`` and print the summary; returns it.
    Every flag is checked and the dataset opened before ``cfg.out`` is touched; with
    ``--overwrite`` the old outputs are replaced only when the run has succeeded."""
    grid = resolve(cfg)
    split = make_split(cfg.dataset, grid["task"], cfg.test_fraction, cfg.split_seed,
                       cfg.standardize)
    config = json_safe({**dataclasses.asdict(cfg), "resolved": grid,
                        "n_train": len(split.y_train), "n_test": len(split.y_test),
                        "n_features": int(split.x_train.shape[1])})
    title = f"{cfg.dataset} / {cfg.model} ({len(grid['seeds'])} seeds)"
    with output_dir(cfg.out, cfg.overwrite, "compressive run") as out:
        result, summary, plots = _run_into(out, cfg, grid, split, config, title)
    print(f"qbc compressive run: {title}, {config['n_train']} train / {config['n_test']} test "
          f"rows, d = {config['n_features']}")
    print(format_table(summary, grid["quantizers"], grid["bits"], grid["ks"]))
    text = format_winners(result["winners"], grid["ks"])
    if text:
        print(text)
    print(f"wrote {cfg.out}/: results.csv, summary.csv, summary.json, config.json"
          + "".join(f", {p.name}" for p in plots))
    return result


def _run_into(out: Path, cfg: CompressiveConfig, grid: dict[str, Any], split: Any,
              config: dict[str, Any], title: str) -> tuple[dict, list[dict], list[Path]]:
    """Run the grid and write its files into ``out``: (result, summary rows, plot paths)."""
    atomic_write_json(out / "config.json", config)
    rows = run_grid(split, cfg.model, [int(b) if b != FULL else FULL for b in grid["bits"]],
                    grid["ks"], grid["quantizers"], grid["seeds"], progress=cfg.progress)
    summary = summarize(rows)
    winners = compare_quantizers(rows)
    tag = {"dataset": cfg.dataset, "model": cfg.model}
    atomic_write_csv(out / "results.csv", [{**tag, **r} for r in rows])
    atomic_write_csv(out / "summary.csv", [{**tag, **s} for s in summary])
    result = {"dataset": cfg.dataset, "model": cfg.model, "summary": summary,
              "winners": winners}
    atomic_write_json(out / "summary.json", json_safe(result))
    plots = plot(summary, grid["quantizers"], grid["bits"], grid["ks"], out, title) \
        if cfg.plots else []
    return result, summary, plots


COMMAND = Command(CompressiveConfig, run_compressive,
                  "learners on b-bit quantized random projections (Li & Li 2019)")
