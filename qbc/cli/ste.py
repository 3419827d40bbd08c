"""``qbc ste recover | recurrence | benchmark``: the straight-through-estimator experiments of
:mod:`qbc.ste` as commands, and the summaries they print."""

from __future__ import annotations

from typing import Any

import numpy as np

from qbc.cli import Command
from qbc.ste.benchmark import BenchmarkConfig, benchmark
from qbc.ste.recover import KINDS, RecoverConfig, recover
from qbc.ste.recurrence import RecurrenceConfig, recurrence


# -- qbc ste recover -------------------------------------------------------------------------------
def run_recover(cfg: RecoverConfig) -> dict[str, Any]:
    """Run the recovery sweep (:func:`qbc.ste.recover.recover`), print the N50 table and the
    exponents next to the paper's claim; returns the summary."""
    n50_rows, summary = recover(cfg)
    print(format_summary(n50_rows, summary, cfg))
    print(f"wrote {cfg.out}/recovery.csv, n50.csv, summary.json and 4 plots")
    return summary


def _interval(lo: float, hi: float) -> str:
    return f"[{lo:.1f}, {hi:.1f}]"


def format_summary(n50_rows: list[dict[str, Any]], summary: dict[str, Any],
                   cfg: RecoverConfig) -> str:
    m = cfg.model
    lines = [f"STE recovery (m={m.m}, σ={m.activation}, v={m.v}, inputs={m.inputs}, "
             f"init={m.init}×{m.init_scale}, lr={m.lr} [{m.lr_scaling}], T={m.iters}, "
             f"{cfg.trials} trials/cell)",
             f"{'n':>4} {'N50 ergodic':>12} {'95% CI':>17} {'N50/n':>6} {'N50 last':>10} "
             f"{'95% CI':>17} {'N50/n':>6}"]
    for r in n50_rows:
        lines.append(
            f"{r['n']:>4} {r['N50_ergodic']:>12.1f} "
            f"{_interval(r['N50_ergodic_lo'], r['N50_ergodic_hi']):>17} "
            f"{r['N50_ergodic_over_n']:>6.2f} {r['N50_last']:>10.1f} "
            f"{_interval(r['N50_last_lo'], r['N50_last_hi']):>17} "
            f"{r['N50_last_over_n']:>6.2f}")
    for kind in KINDS:
        s = summary[kind]
        lo, hi = s["exponent_ci95"]
        lines.append(f"exponent of N50 ~ n^a ({kind}): a = {s['exponent']:.2f} "
                     f"(95% CI [{lo:.2f}, {hi:.2f}])")
    lines.append(f"paper: {summary['paper_claim']}")
    return "\n".join(lines)


# -- qbc ste recurrence ----------------------------------------------------------------------------
def run_recurrence(cfg: RecurrenceConfig) -> list[dict[str, Any]]:
    """Run every noise level (:func:`qbc.ste.recurrence.recurrence`) and print the summary
    table; returns the rows."""
    rows = recurrence(cfg)
    print(format_recurrence(rows, cfg))
    print(f"wrote {cfg.out}/recurrence.csv, traces.csv, recurrence.png")
    return rows


def format_recurrence(rows: list[dict[str, Any]], cfg: RecurrenceConfig) -> str:
    lines = [f"STE recurrence: m={cfg.model.m}, n={cfg.n}, N={cfg.N}, T={cfg.model.iters}, "
             f"lr={cfg.model.lr} [{cfg.model.lr_scaling}], {cfg.trials} trials per level",
             f"{'noise':>6} {'returns (mean, min-max)':>24} {'time at w*':>11} "
             f"{'first hit':>10} {'last rec.':>9} {'ergodic rec.':>12}"]
    for level in cfg.noise:
        sub = [r for r in rows if r["noise"] == level]
        ret = np.array([r["returns"] for r in sub])
        hits = [r["first_hit"] for r in sub if r["first_hit"] > 0]
        first = f"{np.median(hits):.0f}" if hits else "never"
        lines.append(
            f"{level:>6g} {f'{ret.mean():.1f} ({ret.min()}-{ret.max()})':>24} "
            f"{np.mean([r['time_at_opt'] for r in sub]):>11.1%} {first:>10} "
            f"{np.mean([r['last_recovered'] for r in sub]):>9.0%} "
            f"{np.mean([r['ergodic_recovered'] for r in sub]):>12.0%}")
    return "\n".join(lines)


# -- qbc ste benchmark -----------------------------------------------------------------------------
def run_benchmark(cfg: BenchmarkConfig) -> list[dict[str, Any]]:
    """Train every (method, seed) (:func:`qbc.ste.benchmark.benchmark`) and print the table;
    returns it."""
    table = benchmark(cfg)
    print(format_benchmark(table, cfg))
    print(f"wrote {cfg.out}/results.csv, table.csv")
    return table


def format_benchmark(table: list[dict[str, Any]], cfg: BenchmarkConfig) -> str:
    lines = [f"digits MLP {cfg.hidden}, {cfg.epochs} epochs, seeds {list(cfg.seeds)}: "
             "test accuracy of the deployed network (mean ± std over seeds)",
             f"{'method':>8} {'deployed acc':>16} {'train-forward acc':>18} {'±1 weights':>10}"]
    for r in table:
        lines.append(f"{r['method']:>8} {r['test_acc_mean']:>9.2%} ± {r['test_acc_std']:<5.2%} "
                     f"{r['train_forward_acc_mean']:>18.2%} {str(r['deployed_binary']):>10}")
    return "\n".join(lines)


RECOVER_COMMAND = Command(
    RecoverConfig, run_recover,
    "STE on the two-layer binary network: recovery vs (n, N), N50 and its exponent")
RECURRENCE_COMMAND = Command(
    RecurrenceConfig, run_recurrence,
    "STE with label noise: returns of sign(w^t) to w*, ‖w^t − w*‖ and loss vs t")
BENCHMARK_COMMAND = Command(
    BenchmarkConfig, run_benchmark,
    "binarised MLP on the digits set: FP, BC, PC, BNN, BNN+, BNN++ accuracy")
