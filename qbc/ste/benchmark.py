"""``qbc ste benchmark``: binarise the weights of a small MLP on scikit-learn's digits set
(1797 8×8 images, 10 classes) with each forward/backward pair, a few seeds each, and report the
test accuracy of the *deployed* (±1-weight) network as mean ± std.

Every linear layer's weights are quantized (first and last included); BatchNorm after each hidden
layer absorbs the scale that ±1 weights lose; activations stay full precision (ReLU).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from qbc.errors import InvalidValueError
from qbc.infra.environ import scoped_threads
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import output_dir
from qbc.infra.validate import AT_LEAST_ONE, SEED, check_config, check_value
from qbc.ste._outputs import write_config, write_csv
from qbc.ste.functions import available_ste
from qbc.ste.layers import QuantLinear, anneal_step, export_deployed

FULL_PRECISION = "fp"


@dataclass
class BenchmarkConfig:
    """MLP on the digits set with full-precision, BC, PC, BNN, BNN+ and BNN++ weights."""

    out: Path = Path("runs/ste_benchmark")
    """output folder (results.csv, table.csv, config.json)."""
    methods: tuple[str, ...] = (FULL_PRECISION, "bc", "pc", "bnn", "bnn+", "bnn++")
    """'fp' (full precision) and STE quantizer names."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """one run per seed: the seed sets the split, the initialisation and the batches."""
    hidden: tuple[int, ...] = (256, 256)
    """hidden layer widths."""
    epochs: int = 60
    """training epochs."""
    batch_size: int = 64
    """minibatch size."""
    lr: float = 1e-3
    """Adam learning rate (on the latent weights)."""
    test_fraction: float = 0.25
    """stratified test split."""
    beta_end: float = 100.0
    """BNN++: β is annealed geometrically from 1 to this value over training."""
    beta_bnn_plus: float = 5.0
    """BNN+: the fixed β of the SignSwish backward."""
    mu_end: float = 2.0
    """PC: μ is annealed linearly from 0 to this value over training."""
    overwrite: bool = False
    """replace an existing output folder."""


def load_digits_split(test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Standardised digits features (float32, fitted on the training part) and int64 labels:
    X_train, X_test, y_train, y_test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=test_fraction, stratify=y,
                                              random_state=seed)
    scaler = StandardScaler().fit(X_tr)
    return (scaler.transform(X_tr).astype(np.float32), scaler.transform(X_te).astype(np.float32),
            y_tr.astype(np.int64), y_te.astype(np.int64))


def weight_spec(method: str, cfg: BenchmarkConfig, total_steps: int) -> str | dict | None:
    """The STE quantizer spec of one method, with its schedule stretched over training."""
    if method == FULL_PRECISION:
        return None
    if method == "pc":
        return {"name": "pc", "mu": {"start": 0.0, "end": cfg.mu_end, "steps": total_steps,
                                     "kind": "linear"}}
    if method == "bnn++":
        return {"name": "bnn++", "beta": {"start": 1.0, "end": cfg.beta_end,
                                          "steps": total_steps, "kind": "exp"}}
    if method == "bnn+":
        return {"name": "bnn+", "beta": cfg.beta_bnn_plus}
    return method


def make_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, weight_quantizer) -> nn.Sequential:
    """Linear → BatchNorm → ReLU blocks and a final linear layer, all :class:`QuantLinear`
    (``weight_quantizer=None`` makes them full precision)."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [QuantLinear(width, h, bias=False, weight_quantizer=weight_quantizer),
                   nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    layers.append(QuantLinear(width, n_out, weight_quantizer=weight_quantizer))
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(X).argmax(1) == y).float().mean())


def train_one(method: str, seed: int, cfg: BenchmarkConfig) -> dict[str, Any]:
    """Train one MLP; test accuracy with the training-time forward map and as deployed.
    Seeded by ``seed``; torch's global RNG (layer initialisation) is put back afterwards."""
    with torch.random.fork_rng(devices=[]):
        return _train_one(method, seed, cfg)


def _train_one(method: str, seed: int, cfg: BenchmarkConfig) -> dict[str, Any]:
    X_tr, X_te, y_tr, y_te = (torch.from_numpy(a) for a in load_digits_split(cfg.test_fraction,
                                                                               seed))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # layer initialisation
    steps_per_epoch = -(-len(X_tr) // cfg.batch_size)
    model = make_mlp(X_tr.shape[1], cfg.hidden, 10,
                     weight_spec(method, cfg, cfg.epochs * steps_per_epoch))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(X_tr), generator=gen).split(cfg.batch_size):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            opt.zero_grad()
            loss_fn(model(X_tr[idx]), y_tr[idx]).backward()
            opt.step()
            anneal_step(model)
    train_forward_acc = accuracy(model, X_te, y_te)
    deployed = make_mlp(X_tr.shape[1], cfg.hidden, 10, None)
    deployed.load_state_dict(export_deployed(model), strict=True)
    binary = all(torch.equal(m.weight.abs(), torch.ones_like(m.weight))
                 for m in deployed.modules() if isinstance(m, nn.Linear))
    return {"method": method, "seed": seed, "test_acc": accuracy(deployed, X_te, y_te),
            "test_acc_train_forward": train_forward_acc, "binary_weights": binary}


def benchmark(cfg: BenchmarkConfig) -> list[dict[str, Any]]:
    """Check ``cfg``, train every (method, seed) and write results.csv, table.csv and
    config.json into ``cfg.out``; returns the table: one row per method (accuracy mean and std
    over seeds, train-forward accuracy, whether the deployed weights are all ±1)."""
    check_config(cfg)
    valid = [FULL_PRECISION, *available_ste()]
    bad = [m for m in cfg.methods if m not in valid]
    if bad:
        raise InvalidValueError(f"unknown methods {bad}; choose from {', '.join(valid)}")
    if not cfg.seeds or cfg.epochs < 1 or cfg.batch_size < 2 or not 0 < cfg.test_fraction < 1:
        raise InvalidValueError("need seeds, epochs >= 1, batch_size >= 2, 0 < test_fraction < 1")
    for seed in cfg.seeds:
        check_value(seed, SEED, "--seeds")
    for width in cfg.hidden:
        check_value(width, AT_LEAST_ONE, "--hidden")
    with scoped_threads(max(1, min(torch.get_num_threads(), 2))), \
            output_dir(cfg.out, cfg.overwrite, "ste benchmark") as out:
        write_config(out, cfg)
        runs = [(m, s) for m in cfg.methods for s in cfg.seeds]
        rows = [train_one(m, s, cfg)
                for m, s in progress_bar(runs, desc="ste benchmark", unit="run")]
        write_csv(out / "results.csv", rows)
        table = summarize(rows, cfg.methods)
        write_csv(out / "table.csv", table)
    return table


def summarize(rows: list[dict[str, Any]], methods: tuple[str, ...]) -> list[dict[str, Any]]:
    table = []
    for m in methods:
        acc = np.array([r["test_acc"] for r in rows if r["method"] == m])
        fwd = np.array([r["test_acc_train_forward"] for r in rows if r["method"] == m])
        table.append({"method": m, "runs": len(acc), "test_acc_mean": float(acc.mean()),
                      "test_acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                      "train_forward_acc_mean": float(fwd.mean()),
                      "deployed_binary": all(r["binary_weights"] for r in rows
                                             if r["method"] == m)})
    return table
