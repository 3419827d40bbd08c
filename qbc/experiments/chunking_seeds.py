"""The chunk study's numbers per seed (``results.csv``), for the report of
:mod:`qbc.experiments.chunking_report`: every cell's learner / chunk-floor ratio, the cost of
open-loop execution over re-planning every step, the per-env verdicts on the stable-vs-unstable
prediction, and one plot per (env, execution).

All at each env's largest horizon H, as means over seeds with a 95% Student-t interval over
seeds (:func:`qbc.rollout.metrics.mean_ci95`; with one seed the interval is a point and no
verdict is drawn from it).

- **learner / floor**: per seed, the learner's regret over its chunk floor's (the expert's
  noise-free plans through the same tokenizer, same execution, same episodes). A floor regret
  below :data:`FLOOR_EPS` of the expert's return counts as zero (an exact floor: the
  unquantized plan of a noise-free env); the ratio is then undefined and the table shows the
  excess over the floor as a fraction of the expert's return instead.
- **open-loop cost** of an env: per seed, the mean over the (policy, k > 1) pairs of
  (open-loop regret - receding:1 regret) / |expert return|: the price, in units of the expert's
  return, of playing a chunk out without looking at the state.
- **the prediction** (Simchowitz, Pfrommer & Jadbabaie 2025): open-loop chunking costs more on
  an open-loop-unstable system than on a stable one. Per setting (noisy: the env's process
  noise on; noise-free: none, as in deterministic simulators), each unstable env's cost is set
  against each stable env's: **holds** when the unstable env's seed interval lies above the
  stable env's, **does not hold** when below, **inconclusive** when the intervals overlap.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from qbc.envs.make import make_env
from qbc.rollout.metrics import mean_ci95

#: Floor regrets below this fraction of |expert return| are exact floors (no ratio).
FLOOR_EPS = 1e-6
#: Open-loop stability of the envs' controlled equilibrium, by env id (variants share it).
#: The linear envs' follow from their open-loop spectral radius (``qbc.envs.describe``: 0.9,
#: 1.2 and 2); the pendulums are held upright, an unstable equilibrium of the uncontrolled system.
OPEN_LOOP_STABLE = {"qbc/LinearStable-v0": True, "qbc/LinearUnstable-v0": False,
                    "qbc/ScalarUnstable-v0": False, "Pendulum-v1": False,
                    "InvertedPendulum-v5": False}

Interval = tuple[float, float, float]


def split_label(env: str) -> tuple[str, dict[str, Any]]:
    """``qbc/LinearStable-v0(noise_std=0.0)`` -> ("qbc/LinearStable-v0", {"noise_std": 0.0})
    (the ``env`` column of a sweep's rows, :attr:`qbc.sweep.cells.Cell.env_label`)."""
    match = re.fullmatch(r"(.+?)\((.*)\)", env)
    if match is None:
        return env, {}
    kwargs: dict[str, Any] = {}
    for part in match.group(2).split(","):
        key, _, value = part.partition("=")
        try:
            kwargs[key] = json.loads(value.lower() if value in ("True", "False") else value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return match.group(1), kwargs


def setting(env: str) -> str:
    """'noisy' when the env (made with its label's kwargs) has process noise, else
    'noise-free' (a qbc env with ``noise_std`` 0, or a simulator without noise)."""
    env_id, kwargs = split_label(env)
    made = make_env(env_id, **kwargs)
    noise = float(getattr(made.unwrapped, "noise_std", 0.0) or 0.0)
    made.close()
    return "noisy" if noise > 0 else "noise-free"


def stability(env: str) -> bool | None:
    """Whether the env's id is open-loop stable (None: not known here)."""
    return OPEN_LOOP_STABLE.get(split_label(env)[0])


def largest_h_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chunk rows of a results table at each env's largest horizon."""
    rows = [r for r in rows if r.get("chunk_len")]
    h_max: dict[str, int] = {}
    for r in rows:
        h_max[r["env"]] = max(h_max.get(r["env"], 0), r["H"])
    return [r for r in rows if r["H"] == h_max[r["env"]]]


def _interval(values: list[float]) -> Interval:
    return mean_ci95(np.array(values, dtype=np.float64))


def floor_ratios(rows: list[dict[str, Any]], label: Any) -> dict[tuple, dict[str, Any]]:
    """Per (env, policy label, k, execution) of ``rows`` (one per seed, :func:`largest_h_rows`;
    ``label(row)`` names the policy): ``ratio`` (learner / floor regret, mean and interval over
    seeds; None where a floor is exact or was not measured), ``excess`` ((learner - floor) /
    |expert return|, the same), ``n_seeds`` and ``measured`` (False when a seed's row has no
    floor: a run without chunk floors)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["env"], label(r), r["chunk_len"], r["execution"])].append(r)
    out = {}
    for key, g in groups.items():
        scale = [abs(r["expert_return"]) or 1.0 for r in g]
        floors = [r["floor_regret"] for r in g]
        measured = all(f is not None for f in floors)
        exact = not measured or any(f <= FLOOR_EPS * s for f, s in zip(floors, scale, strict=True))
        out[key] = {
            "ratio": None if exact else _interval([r["regret"] / r["floor_regret"] for r in g]),
            "excess": None if any(f is None for f in floors) else _interval(
                [(r["regret"] - r["floor_regret"]) / s for r, s in zip(g, scale, strict=True)]),
            "n_seeds": len(g), "measured": measured}
    return out


def open_loop_cost(rows: list[dict[str, Any]], label: Any) -> dict[str, dict[str, Any]]:
    """Per env: ``cost`` (mean and interval over seeds of the per-seed mean over (policy,
    k > 1) of (open-loop - receding:1 regret) / |expert return|), ``n_seeds``, ``n_pairs``."""
    by = {(r["env"], label(r), r["chunk_len"], r["execution"], r["seed"]): r for r in rows}
    per_seed: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    pairs: dict[str, set] = defaultdict(set)
    for (env, name, k, mode, seed), r in by.items():
        other = by.get((env, name, k, "receding:1", seed))
        if k > 1 and mode == "open-loop" and other is not None:
            scale = abs(r["expert_return"]) or 1.0
            per_seed[env][seed].append((r["regret"] - other["regret"]) / scale)
            pairs[env].add((name, k))
    return {env: {"cost": _interval([float(np.mean(v)) for v in seeds.values()]),
                  "n_seeds": len(seeds), "n_pairs": len(pairs[env])}
            for env, seeds in per_seed.items()}


def compare(unstable: Interval, stable: Interval, n_seeds: int) -> str:
    """'holds' (unstable interval above the stable one), 'does not hold' (below) or
    'inconclusive' (overlap, or one seed: no interval)."""
    if n_seeds < 2:
        return "inconclusive"
    if unstable[1] > stable[2]:
        return "holds"
    if unstable[2] < stable[1]:
        return "does not hold"
    return "inconclusive"


def _pair(unstable: dict[str, Any], stable: dict[str, Any]) -> str:
    """:func:`compare` of two envs' :func:`open_loop_cost` entries."""
    return compare(unstable["cost"], stable["cost"], min(unstable["n_seeds"], stable["n_seeds"]))


def _pct(iv: Interval, n_seeds: int = 2) -> str:
    """A cost as a signed percentage with its seed interval (none with one seed)."""
    if n_seeds < 2:
        return f"{iv[0]:+.2%} (1 seed, no interval)"
    return f"{iv[0]:+.2%} [{iv[1]:+.2%}, {iv[2]:+.2%}]"


def verdict_lines(costs: dict[str, dict[str, Any]]) -> list[str]:
    """One markdown line per env: its open-loop cost and, for an unstable env, the verdict
    against each stable env of the same setting (noisy / noise-free)."""
    settings = {env: setting(env) for env in costs}
    lines = []
    for env, c in costs.items():
        stable = stability(env)
        kind = {True: "open-loop stable", False: "open-loop unstable",
                None: "stability unknown"}[stable]
        text = (f"- {env} ({kind}, {settings[env]}): open-loop chunks (k > 1) cost "
                f"{_pct(c['cost'], c['n_seeds'])} of the expert's return more than receding:1 "
                f"(mean over {c['n_seeds']} seed(s) of {c['n_pairs']} (policy, k) pairs)")
        if stable is False:
            refs = [e for e in costs if stability(e) and settings[e] == settings[env]]
            verdicts = [f"vs {e} ({_pct(costs[e]['cost'], costs[e]['n_seeds'])}): "
                        f"**{_pair(c, costs[e])}**"
                        for e in refs]
            text += ("; " + "; ".join(verdicts) if verdicts else
                     f"; no open-loop-stable env in the {settings[env]} setting to compare with")
        lines.append(text + ".")
    return lines


def setting_verdicts(costs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Per setting: 'holds' / 'does not hold' when every (unstable, stable) pair of that
    setting says so, 'inconclusive' otherwise; settings without such a pair are left out."""
    settings = {env: setting(env) for env in costs}
    out: dict[str, list[str]] = defaultdict(list)
    for env, c in costs.items():
        if stability(env) is False:
            for ref in (e for e in costs if stability(e) and settings[e] == settings[env]):
                out[settings[env]].append(_pair(c, costs[ref]))
    return {s: v[0] if len(set(v)) == 1 else "inconclusive" for s, v in out.items()}


def plot_paths(rows: list[dict[str, Any]], out_dir: Path) -> dict[tuple[str, str], Path]:
    """The file of each (env, execution) plot of ``rows`` in ``out_dir``, sorted."""
    keys = sorted({(r["env"], r["execution"]) for r in rows})
    return {(env, mode): out_dir / (re.sub(r"[^A-Za-z0-9._=-]+", "_", f"{env}__{mode}")
                                    .strip("_") + ".png") for env, mode in keys}


def plot_env_executions(rows: list[dict[str, Any]], label: Any, out_dir: Path) -> list[Path]:
    """One PNG per (env, execution) in ``out_dir``: a panel per policy label, regret at the
    largest H against k, the learner (mean over seeds, 95% interval) and its chunk floor
    (dashed). Non-positive regrets are left off the log axis."""
    import matplotlib.pyplot as plt

    from qbc.infra.figures import save_figure  # lazy: it sets the Agg backend

    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["env"], r["execution"])].append(r)
    paths = plot_paths(rows, out_dir)
    for (env, mode), g in sorted(groups.items()):
        names = sorted({label(r) for r in g})
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            _panel(ax, [r for r in g if label(r) == name], name)
        fig.suptitle(f"{env}, {mode}, H = {g[0]['H']}", fontsize=10)
        save_figure(fig, paths[(env, mode)])
    return list(paths.values())


def _panel(ax: Any, rows: list[dict[str, Any]], name: str) -> None:
    """Learner and floor regret against k on one axis."""
    for col, style, what in (("regret", "-o", "learner"), ("floor_regret", "--s", "chunk floor")):
        by_k: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if r[col] is not None:
                by_k[r["chunk_len"]].append(r[col])
        pts = [(k, *_interval(v)) for k, v in sorted(by_k.items())]
        pts = [p for p in pts if p[1] > 0 and math.isfinite(p[1])]
        if pts:
            ks, m, lo, hi = (np.array(c) for c in zip(*pts, strict=True))
            ax.errorbar(ks, m, yerr=[np.maximum(m - lo, 0), np.maximum(hi - m, 0)], fmt=style,
                        capsize=3, label=what)
    ax.set_xscale("log", base=2)
    ks = sorted({r["chunk_len"] for r in rows})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_yscale("log")
    ax.set_xlabel("chunk length k")
    ax.set_ylabel("regret (mean over seeds, 95% CI)")
    ax.set_title(name, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def with_kept_note(text: str, old: Path) -> str:
    """``text`` (a generated README) with the hand-written note of the README it replaces at
    ``old`` carried over: the blockquote (lines starting with '>') right under ``old``'s title,
    e.g. what a published run is and is not. ``text`` unchanged when ``old`` has none."""
    if not old.is_file():
        return text
    lines = old.read_text().splitlines()[1:]
    start = next((i for i, x in enumerate(lines) if x.strip()), len(lines))
    note = []
    for line in lines[start:]:
        if not line.startswith(">"):
            break
        note.append(line)
    if not note:
        return text
    title, _, rest = text.partition("\n")
    return "\n".join([title, "", *note, ""]) + rest
