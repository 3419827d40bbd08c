"""Every published result, re-run from one place and checked against its stored headline numbers.

Each folder under ``docs/results/`` is one :class:`Result`: the shell commands that make it (a
full version, whose outputs are the published files, and a quick version of a few seconds to a
minute), a function that reads its headline numbers from the outputs, and ``reference.json`` in
the folder with the stored numbers, their tolerances and how they were made::

    {"result": "counterexample",
     "full":  {"commands": [...], "commit": "...", "date": "...", "values": {key: ref, ...}},
     "quick": {"commands": [...], "commit": "...", "date": "...", "values": {key: ref, ...}}}

where each ``ref`` is ``{"value": v, "rtol": r, "atol": a}`` plus optional ``"max"`` / ``"min"``
bounds (a claim such as "model-based loss <= 5 eps" holds whatever the stored value).

``run_result`` runs one result's commands (``{out}`` in a command is its output folder),
``compare`` checks the numbers, ``update_reference`` stores new ones after an intended change.
Entry point: ``python scripts/reproduce_results.py [--quick] [--only NAME ...] [--update]``.
"""

from __future__ import annotations

import datetime
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.errors import InvalidValueError, UnknownNameError
from qbc.experiments.multimodal import ledger_headline, multimodal_headline
from qbc.experiments.reproduce_headlines import (
    chunking_headline,
    counterexample_headline,
    counterexample_sampling_headline,
    learner_vs_floor_headline,
    obs_encoder_headline,
    scaling_headline,
    sweep_headline,
)
from qbc.infra.child_processes import run as run_command
from qbc.infra.child_processes import stopped_on_exit
from qbc.infra.files import atomic_write_json, read_json

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "docs" / "results"
REFERENCE_FILE = "reference.json"
MODES = ("quick", "full")


@dataclass(frozen=True)
class Result:
    """One published result.

    Attributes:
        name: its folder under ``docs/results`` (may contain '/').
        full: shell commands of the published run; ``{out}`` is the output folder.
        quick: shell commands of the reduced run.
        headline: output folder -> {key: number}; the numbers a reader takes from the result.
        publish: files (relative to the output folder) copied into ``docs/results/<name>`` by a
            full run.
        rtol: default relative tolerance of every key (per key in reference.json).
        pending: registered before its first full run: no folder under ``docs/results`` yet
            (the first ``--update`` runs make it; then the flag goes), or a folder holding only
            its ``progress`` files.
        progress: files of an unfinished full run that may be kept in the folder of a pending
            result (a study longer than one sitting, committed half-way): a full run copies
            them into its output folder first and continues from them.
    """

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    headline: Callable[[Path], dict[str, float]]
    publish: tuple[str, ...] = ()
    rtol: float = 0.1
    pending: bool = False
    progress: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return RESULTS_DIR / self.name


def _sweep(name: str, workers: int = 2, plots: tuple[str, ...] = ("regret_vs_H.png",)) -> Result:
    full_config = f"scripts/sweeps/{name}.toml"
    quick_config = f"scripts/sweeps/quick/{name}.toml"
    return Result(
        name=f"sweeps/{name}",
        full=(f"qbc sweep --config {full_config} --workers {workers} --out {{out}} --no-progress",),
        quick=(f"qbc sweep --config {quick_config} --workers 1 --out {{out}} --no-progress",),
        headline=sweep_headline,
        publish=("report.md", "summary.csv", "results.csv", "sweep_config.json", *plots),
        rtol=0.25,
    )


#: The settings the comparisons published before the ordered head, selection by action error,
#: DAgger's fixed tokenizer and two-hot targets became defaults were made with (so they
#: reproduce as published). learner_vs_floor_defaults was made before the ordered head's
#: location had its MLP and dropped the hidden state, and before two-hot targets.
LINEAR_LOCATION = (" --extra-train-flags='--model.loc-layers 0 --model.loc-inputs obs+trunk"
                   " --token-target soft'")

EARLIER_DEFAULTS = (" --extra-train-flags='--model.head plain --select-by val-loss"
                    " --token-target soft' --dagger-tokenizer refit")


def _learner_vs_floor(name: str, env: str, flags: str = "", earlier: bool = True) -> Result:
    """A ``scripts/learner_vs_floor.py`` comparison on ``env`` with ``flags`` (and, with
    ``earlier``, :data:`EARLIER_DEFAULTS`); its quick run on the same env (``--quick`` alone
    runs the first default env, qbc/ScalarUnstable-v0)."""
    script = "python scripts/learner_vs_floor.py"
    flags = flags + (EARLIER_DEFAULTS if earlier else "")
    quick_env = "" if env == "qbc/ScalarUnstable-v0" else f" --envs {env}"
    return Result(
        name=name,
        full=(f"{script} --envs {env}{flags} --workers 2 --out {{out}}",),
        quick=(f"{script} --quick{quick_env}{flags} --out {{out}}",),
        headline=learner_vs_floor_headline,
        publish=("README.md", "summary.csv", "results.csv"),
        rtol=0.25,
    )


#: The ledger with all six of its learners (its script's default).
LEDGER = "scripts/multimodal_ledger.py"

RESULTS: dict[str, Result] = {r.name: r for r in (
    Result(
        name="counterexample",
        full=("python scripts/reproduce_counterexample.py --out {out}",),
        quick=("python scripts/reproduce_counterexample.py --out {out} --episodes 20 "
               "--n-demos 100 --horizons 10 300 --model-steps 600",),
        headline=counterexample_headline,
        publish=("table.json", "table.md", "loss_vs_horizon.png"),
    ),
    Result(  # docs/theory.md's mean-vs-sampled table (Algorithm 1 with sampled model states)
        name="counterexample_sampling",
        full=("python scripts/counterexample_sampling.py --out {out}",),
        quick=("python scripts/counterexample_sampling.py --out {out} --gaussian-seeds 0 "
               "--token-seeds 0 --episodes 20 --n-demos 100 --horizons 10 300 "
               "--model-steps 600",),
        headline=counterexample_sampling_headline,
        publish=("per_seed.json", "summary.json", "table.md"),
    ),
    Result(
        name="quantized_expert_scaling",
        full=tuple(f"python scripts/quantized_expert_scaling.py --x0-std {s} "
                   f"--out {{out}}/x0std{s}.json" for s in ("1", "0.1")),
        quick=tuple(f"python scripts/quantized_expert_scaling.py --x0-std {s} --episodes 40 "
                    f"--out {{out}}/x0std{s}.json" for s in ("1", "0.1")),
        headline=scaling_headline,
        publish=("x0std1.json", "x0std1.png", "x0std0.1.json", "x0std0.1.png"),
    ),
    Result(
        name="obs_encoder",
        full=("bash scripts/compare_obs_encoders.sh {out}",),
        quick=("DEMOS=30 STEPS=300 EPISODES=30 ENCODERS='none qrp:k=16,bits=2' "
               "bash scripts/compare_obs_encoders.sh {out}",),
        headline=obs_encoder_headline,
        rtol=0.25,
    ),
    Result(
        name="learner_vs_floor_defaults",
        full=("python scripts/learner_vs_floor.py --envs qbc/ScalarUnstable-v0 "
              f"qbc/LinearUnstable-v0 --seeds 0 1 2{LINEAR_LOCATION} --workers 2 --out {{out}}",),
        quick=(f"python scripts/learner_vs_floor.py --quick{LINEAR_LOCATION} --out {{out}}",),
        headline=learner_vs_floor_headline,
        publish=("README.md", "summary.csv", "results.csv"),
        rtol=0.25,
    ),
    Result(  # issue 29's comparison: six envs, five seeds, every default; run over several sittings
        name="learner_vs_floor_six_envs",
        full=("python scripts/learner_vs_floor.py --dagger-defaults --workers 2 --out {out}",),
        quick=("python scripts/learner_vs_floor.py --quick --dagger-defaults --out {out}",),
        headline=learner_vs_floor_headline,
        publish=("README.md", "summary.csv", "results.csv", "settings.json"),
        rtol=0.25,
        pending=True,
        progress=("results.csv", "settings.json", "elapsed.json"),
    ),
    _learner_vs_floor("learner_vs_floor", "qbc/ScalarUnstable-v0"),
    _learner_vs_floor("learner_vs_floor_linear_unstable", "qbc/LinearUnstable-v0"),
    _learner_vs_floor("learner_vs_floor_pendulum", "Pendulum-v1"),
    _learner_vs_floor("learner_vs_floor_inverted_pendulum", "InvertedPendulum-v5"),
    _learner_vs_floor("learner_vs_floor_wide_dart", "qbc/ScalarUnstable-v0",
                      " --methods dart --no-mlp-mse --dart-sigma 1.5"
                      " --dart-train-flags=--quantile 0.05"),
    _learner_vs_floor("learner_vs_floor_pendulum_wide_dart", "Pendulum-v1",
                      " --methods dart --no-mlp-mse --dart-sigma 0.5"),
    _learner_vs_floor("learner_vs_floor_pendulum_wide_dart_select", "Pendulum-v1",
                      " --methods dart --no-mlp-mse --seeds 0 1 2 3 4 5 6 7 8 9"
                      " --dart-sigma 0.5"
                      " --dart-train-flags='--select-by rollout --select-episodes 100'"),
    _learner_vs_floor("learner_vs_floor_pendulum_select", "Pendulum-v1",
                      " --methods bc dart --no-mlp-mse"
                      " --dart-train-flags='--select-by rollout --select-episodes 100'"),
    Result(
        name="chunking",
        full=("qbc sweep --config scripts/sweeps/chunking.toml --workers 2 --out {out} "
              "--no-progress", "python scripts/chunking_report.py {out}"),
        quick=("qbc sweep --config scripts/sweeps/quick/chunking.toml --workers 1 --out {out} "
               "--no-progress", "python scripts/chunking_report.py {out}"),
        headline=chunking_headline,
        publish=("README.md", "report.md", "summary.csv", "results.csv", "sweep_config.json",
                 "regret_vs_H.png", "regret_vs_chunk_len.png"),
        rtol=0.25,
    ),
    Result(
        name="multimodal",
        full=("python scripts/multimodal.py --out {out}",),
        quick=("python scripts/multimodal.py --out {out} --envs qbc/DetourStable-v0 "
               "--n-demos 20 --steps 100 --episodes 20 --decodings sample",),
        headline=multimodal_headline,
        publish=("results.json", "results.md"),
        rtol=0.0,
    ),
    Result(name="multimodal_ledger", full=(f"python {LEDGER} --out {{out}}",),
           quick=(f"python {LEDGER} --quick --out {{out}}",), headline=ledger_headline,
           publish=("results.json", "results.md"), rtol=0.0),
    _sweep("regret_vs_horizon"),
    _sweep("regret_vs_bin_width", plots=("regret_vs_H.png", "regret_vs_bin_width.png")),
    _sweep("regret_vs_n_demos"),
    # the same three grids with today's training defaults (each sweep's own budget and model)
    _sweep("regret_vs_horizon_defaults"),
    _sweep("regret_vs_bin_width_defaults", plots=("regret_vs_H.png", "regret_vs_bin_width.png")),
    _sweep("regret_vs_n_demos_defaults"),
)}


# --- running and comparing --------------------------------------------------------------------

def select(names: list[str] | None) -> list[Result]:
    """The results named, or every published one when ``names`` is empty (a pending result,
    with nothing stored to compare, runs only when named); an unknown name is refused."""
    if not names:
        return [r for r in RESULTS.values() if not r.pending]
    unknown = [n for n in names if n not in RESULTS]
    if unknown:
        raise UnknownNameError("result", unknown[0], RESULTS)
    return [RESULTS[n] for n in names]


def run_result(result: Result, mode: str, out: Path, log: Path | None = None) -> dict[str, float]:
    """Run ``result``'s commands of ``mode`` with output folder ``out`` (replaced; a full run
    starts from the ``progress`` files kept in the result's folder), from the repository root
    with datasets under ``out/minari``; return its headline numbers.

    A failing command raises :class:`RuntimeError` naming it and the log file."""
    if mode not in MODES:
        raise InvalidValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    kept = continue_from_progress(result, out) if mode == "full" else []
    log = log or out.with_suffix(".log")
    # `python` and `qbc` in the commands are this interpreter's (its bin folder first on PATH),
    # not whichever other environment the shell would find first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MINARI_DATASETS_PATH": str(out / "minari"), "OMP_NUM_THREADS": "1",
           "PATH": path}
    with open(log, "w") as log_file, stopped_on_exit():  # a kill stops the command too
        if kept:
            log_file.write(f"continuing from {', '.join(kept)} kept in {result.folder}\n")
        for command in getattr(result, mode):
            command = command.format(out=out)
            log_file.write(f"$ {command}\n")
            log_file.flush()
            returncode = run_command(command, shell=True, cwd=REPO, env=env, stdout=log_file,
                                     stderr=subprocess.STDOUT)
            if returncode != 0:
                raise RuntimeError(f"{result.name}: `{command}` exited {returncode}; "
                                   f"see {log}")
    return result.headline(out)


def within(now: float, ref: dict[str, Any]) -> bool:
    """True if ``now`` is within ``ref``'s tolerance of its value and inside its bounds."""
    if now is None or not math.isfinite(now):
        return False
    close = abs(now - ref["value"]) <= ref.get("atol", 0.0) + ref.get("rtol", 0.0) * abs(
        ref["value"])
    return close and now <= ref.get("max", math.inf) and now >= ref.get("min", -math.inf)


def compare(result: Result, mode: str, now: dict[str, float]) -> list[dict[str, Any]]:
    """One row per headline key (stored or new): result, key, stored, now, ok."""
    stored = load_reference(result).get(mode, {}).get("values", {})
    rows = []
    for key in sorted(set(stored) | set(now)):
        ref, value = stored.get(key), now.get(key)
        ok = ref is not None and value is not None and within(value, ref)
        rows.append({"result": result.name, "key": key,
                     "stored": None if ref is None else ref["value"], "now": value, "ok": ok})
    return rows


def load_reference(result: Result) -> dict[str, Any]:
    path = result.folder / REFERENCE_FILE
    return read_json(path, what="result reference") if path.exists() else {}


def update_reference(result: Result, mode: str, now: dict[str, float]) -> Path:
    """Store ``now`` as ``mode``'s reference values (keeping each key's tolerances and bounds),
    with the commands, the commit and today's date."""
    doc = load_reference(result) or {"result": result.name}
    old = doc.get(mode, {}).get("values", {})
    values = {}
    for key, value in now.items():
        ref = dict(old.get(key, {"rtol": result.rtol, "atol": 1e-3}))
        ref["value"] = value
        values[key] = ref
    doc[mode] = {"commands": list(getattr(result, mode)), "commit": current_commit(),
                 "date": datetime.date.today().isoformat(), "values": values}
    path = result.folder / REFERENCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)  # a pending result's first run
    atomic_write_json(path, doc)
    return path


def continue_from_progress(result: Result, out: Path) -> list[str]:
    """Copy the ``progress`` files kept in ``result``'s folder into ``out`` (those ``out`` does
    not hold yet), so its full run continues from them; the names copied."""
    copied = []
    for name in result.progress:
        kept, target = result.folder / name, Path(out) / name
        if kept.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, target)
            copied.append(name)
    return copied


def publish(result: Result, out: Path) -> None:
    """Copy a full run's published files into ``docs/results/<name>`` (made if pending)."""
    result.folder.mkdir(parents=True, exist_ok=True)
    for name in result.publish:
        shutil.copyfile(Path(out) / name, result.folder / name)


def current_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The table the entry point prints: result / key / stored / now / within tolerance."""
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    width = max([len(r["result"]) + len(r["key"]) + 3 for r in rows] + [20])
    lines = [f"{'result / key':<{width}}{'stored':>11}{'now':>11}  within tolerance"]
    for r in rows:
        name = f"{r['result']} / {r['key']}"
        lines.append(f"{name:<{width}}{fmt(r['stored']):>11}{fmt(r['now']):>11}  "
                     f"{'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)
