"""How far the token learner is from its own quantization floor, with and without DAgger/DART.

For every env, seed and quantizer this runs, through the ``qbc`` command:

- ``bc``: ``qbc collect`` (expert demonstrations) then ``qbc train`` (default budget);
- ``dart``: ``qbc collect --dart auto --policy <bc run>`` (noise fitted to the BC policy's error,
  same episode seeds and count; or ``--dart SIGMA`` with ``--dart-sigma``) then ``qbc train``
  (with ``--dart-train-flags`` too);
- ``dagger``: ``qbc dagger`` with rounds x episodes-per-round chosen so that every method uses
  the same number of expert episodes (by default 100 = 50 BC episodes + one round of 50
  episodes driven by the round-0 learner alone, every visited state labelled by the expert);
- ``mlp-mse`` (once per env and seed): the continuous regressor on the BC demonstrations;

then the coupled evaluation of ``qbc rollout`` (:func:`qbc.rollout.evaluate.evaluate`, in this
process) of each policy against the expert on seeds disjoint from the data, with argmax and mean
decoding. The quantized expert (the expert's actions through the policy's own
tokenizer, deterministic encoding: nearest rounding for ``smooth``) is rolled out on the same
seeds: it is the floor the learner is compared with, the one an argmax learner reproduces. Each
row's floor is that of its own tokenizer (DAgger keeps round 0's unless --dagger-tokenizer refit).
For ``smooth`` the stochastic q#π* (stochastic rounding, the theory's object) is reported beside
it (``qexp_stochastic_regret``); mean decoding is not a quantized actor, so no floor matches it.

Outputs in ``--out``: ``results.csv`` (one row per run and decoding, rewritten after every
finished job) with ``settings.json`` (the settings its rows were made with), ``summary.csv`` and
``README.md`` (means over seeds of this invocation's envs, seeds and quantizers, the targets of
the comparison checked), and every run's folder. Finished steps are kept: re-running the same
command continues where a killed one stopped, and a folder holding only ``results.csv`` and
``settings.json`` (e.g. a study committed half-way) continues without redoing the jobs its table
holds (:mod:`qbc.experiments.learner_vs_floor.stored`).

Entry point: ``python scripts/learner_vs_floor.py [--quick] [--out DIR] [--workers N]``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbc.errors import CorruptFileError, InvalidValueError
from qbc.experiments.learner_vs_floor.config import (
    DECODINGS,
    ENVS,
    EVAL_SEED,
    FloorConfig,
    eval_episodes,
    quick_config,
    validate,
)
from qbc.experiments.learner_vs_floor.plan import Plan, finished, mark_finished, qbc_command
from qbc.experiments.learner_vs_floor.report import report
from qbc.experiments.learner_vs_floor.stored import JobKey, WallClock, load_rows, save_rows
from qbc.experiments.learner_vs_floor.summary import floor_ratio, summarise
from qbc.infra.child_processes import stopped_on_exit, thread_pool
from qbc.infra.environ import scoped_threads
from qbc.infra.files import (
    atomic_write_csv,
    atomic_write_text,
    read_csv_rows,
    read_json_object,
)
from qbc.infra.progress import Log, silent
from qbc.infra.run_folder import output_dir
from qbc.interactive.config import DaggerConfig
from qbc.rollout.evaluate import evaluate
from qbc.rollout.inputs import EvalConfig, open_inputs
from qbc.rollout.report import write_report


def collect_bc(plan: Plan, env_id: str, seed: int) -> None:
    """The expert demonstrations of ``env_id`` for ``seed`` (kept once written)."""
    marker = plan.run_dir(env_id, seed, "data-bc")
    if finished(marker):
        return
    marker.mkdir(parents=True, exist_ok=True)
    qbc_command(["collect", *plan.common_collect(env_id, seed), "--dataset",
          plan.dataset(env_id, seed, "bc"), "--overwrite"], marker / "log.txt", plan.env)
    mark_finished(marker)


def train_run(plan: Plan, env_id: str, seed: int, name: str, dataset: str,
              quantizer: str | None, more_flags: list[str] | None = None) -> Path:
    """``qbc train`` into the run folder ``name`` (kept once finished)."""
    run = plan.run_dir(env_id, seed, name)
    if not finished(run):
        kind = [] if quantizer is not None else ["--policy", "mlp-mse"]
        qbc_command(["train", "--dataset", dataset, "--out", str(run / "run"), "--overwrite", *kind,
              *plan.train_flags(quantizer, seed), *(more_flags or [])], run / "log.txt",
             plan.env)
        mark_finished(run)
    return run / "run"


def dart_run(plan: Plan, env_id: str, seed: int, quantizer: str,
             bc_run: Path | None) -> Path:
    """DART demonstrations (noise fitted to the BC policy ``bc_run``, or the fixed
    ``--dart-sigma``) and the policy trained on them."""
    name = f"dart-{quantizer}"
    data = plan.run_dir(env_id, seed, f"data-{name}")
    dataset = plan.dataset(env_id, seed, "dart", quantizer)
    noise = (["--dart", "auto", "--policy", str(bc_run)] if bc_run is not None
             else ["--dart", plan.cfg.dart_sigma])
    if not finished(data):
        data.mkdir(parents=True, exist_ok=True)
        qbc_command(["collect", *plan.common_collect(env_id, seed), "--dataset", dataset, *noise,
              "--overwrite"], data / "log.txt", plan.env)
        mark_finished(data)
    return train_run(plan, env_id, seed, name, dataset, quantizer, plan.cfg.dart_train_flags)


def dagger_run(plan: Plan, env_id: str, seed: int, quantizer: str) -> Path:
    """``qbc dagger`` with the same number of expert episodes as BC (or, with
    --dagger-defaults, on the command's own schedule); its last round's policy."""
    cfg = plan.cfg
    run = plan.run_dir(env_id, seed, f"dagger-{quantizer}")
    rounds, schedule = _dagger_schedule(cfg)
    flags = ["dagger", "--env", env_id, "--expert", ENVS[env_id].expert, "--out", str(run / "run"),
             *schedule, "--seed", str(1000 * seed), "--dataset-base",
             f"floor/{plan.slug(env_id)}-s{seed}-dagger-{quantizer}",
             "--eval-episodes", str(min(eval_episodes(cfg, env_id), 20)), "--quantizer", quantizer,
             "--bins", str(cfg.bins), "--policy", "ar-transformer", "--no-progress",
             "--tokenizer", cfg.dagger_tokenizer]
    if cfg.max_episode_steps:
        flags += ["--max-episode-steps", str(cfg.max_episode_steps)]
    if cfg.steps:
        flags += ["--steps", str(cfg.steps)]
    model_flags, overrides = _split_train_flags(cfg.extra_train_flags)
    flags += model_flags  # `qbc dagger` takes --model.* itself; the training seed is its --seed
    if overrides:
        flags += ["--train-overrides", *overrides]
    if not finished(run):
        qbc_command(flags, run / "log.txt", plan.env)  # resumes its own finished rounds
        mark_finished(run)
    return run / "run" / f"round-{rounds}"


def _dagger_schedule(cfg: FloorConfig) -> tuple[int, list[str]]:
    """DAgger's rounds after round 0 and the ``qbc dagger`` flags that set its schedule: none
    with --dagger-defaults (one round of --episodes with --quick), else the equal-label design
    (rounds + 1 rounds of episodes / (rounds + 1), a constant beta after round 0)."""
    if cfg.dagger_defaults and not cfg.quick:
        return DaggerConfig.__dataclass_fields__["rounds"].default, []
    if cfg.dagger_defaults:
        return 1, ["--rounds", "1", "--episodes-per-round", str(cfg.episodes)]
    per_round = max(1, cfg.episodes // (cfg.dagger_rounds + 1))
    return cfg.dagger_rounds, ["--rounds", str(cfg.dagger_rounds), "--episodes-per-round",
                               str(per_round), "--beta", "constant", "--beta-value",
                               str(cfg.dagger_beta)]


def _split_train_flags(extra: list[str]) -> tuple[list[str], list[str]]:
    """``extra``'s ``--flag value`` pairs split into the ``--model.*`` flags (as given) and
    the others as ``qbc dagger --train-overrides`` KEY=VALUE items (``--eval-interval 30
    --range-margin 0.5`` -> ``["eval_interval=30", "range_margin=0.5"]``), which the command
    reads with their types."""
    model: list[str] = []
    overrides: list[str] = []
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag.startswith("--model."):
            model += [flag, value]
        else:
            overrides.append(f"{flag[2:].replace('-', '_')}={value}")
    return model, overrides


def rollout(plan: Plan, env_id: str, seed: int, run: Path, name: str, decode: str) -> Path:
    """Coupled rollouts of ``run`` against the expert (and the quantized expert): the
    evaluation of ``qbc rollout`` with these settings, run in this process into
    ``rollout-NAME-DECODE/out`` (kept once finished with the same settings)."""
    folder = plan.run_dir(env_id, seed, f"rollout-{name}-{decode}")
    H, episodes = plan.horizon(env_id), eval_episodes(plan.cfg, env_id)
    if not (finished(folder) and _evaluated_as(folder / "out", episodes, H)):
        folder.mkdir(parents=True, exist_ok=True)
        # the env copies only batch the work: the episodes' seeds fix every number reported
        cfg = EvalConfig(out=folder / "out", policy=str(run), episodes=episodes, horizons=(H,),
                         seed=EVAL_SEED, decode=decode, num_envs=min(episodes, 200),
                         progress=False, overwrite=True)
        _evaluate(cfg, plan.out / "datasets", folder / "log.txt")
        mark_finished(folder)
    return folder / "out" / "metrics.json"


def _evaluate(cfg: EvalConfig, datasets: Path, log: Path) -> None:
    """:func:`qbc.rollout.evaluate.evaluate` of ``cfg`` (the policy's expert read from its
    dataset under ``datasets``) written into ``cfg.out``; its lines, warnings and verdict
    appended to ``log``."""
    with open(log, "a") as fh:
        def line(text: str) -> None:
            fh.write(text + "\n")
            fh.flush()

        line(f"$ evaluate --policy {cfg.policy} --decode {cfg.decode} --episodes "
             f"{cfg.episodes} --horizons {cfg.horizons[0]} --seed {cfg.seed} --out {cfg.out}")
        inputs = open_inputs(cfg, datasets_root=datasets)
        with output_dir(cfg.out, cfg.overwrite, "rollout") as out:
            report = evaluate(cfg, inputs, out=out, log=line)
            write_report(out, report)
        for warning in report.warnings:
            line(f"warning: {warning}")
        if report.verdict:
            line(report.verdict["text"])


def _evaluated_as(out: Path, episodes: int, H: int) -> bool:
    """Whether the finished rollout in ``out`` ran ``episodes`` episodes of horizon ``H`` (a
    comparison continued with other evaluation settings redoes its rollouts)."""
    try:
        config = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return config.get("episodes") == episodes and config.get("horizons") == [H]


# -- one unit of work ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    env_id: str
    seed: int
    quantizer: str | None
    """None: the mlp-mse reference."""


def run_job(plan: Plan, job: Job) -> list[dict[str, Any]]:
    """Every run and rollout of ``job``; its rows of results.csv."""
    env_id, seed, q = job.env_id, job.seed, job.quantizer
    bc_data = plan.dataset(env_id, seed, "bc")
    labels_bc = _dataset_steps(plan, bc_data)
    if q is None:
        run = train_run(plan, env_id, seed, "mlp-mse", bc_data, None)
        metrics = rollout(plan, env_id, seed, run, "mlp-mse", "argmax")
        return [_row(plan, job, "mlp-mse", "-", labels_bc, metrics)]
    rows = []
    auto_dart = "dart" in plan.cfg.methods and plan.cfg.dart_sigma == "auto"
    runs = {}
    bc_run = None
    if "bc" in plan.cfg.methods or auto_dart:  # DART's auto sigma needs the BC policy
        bc_run = train_run(plan, env_id, seed, f"bc-{q}", bc_data, q)
        runs["bc"] = (bc_run, labels_bc)
    if "dart" in plan.cfg.methods:
        runs["dart"] = (dart_run(plan, env_id, seed, q, bc_run if auto_dart else None),
                        _dataset_steps(plan, plan.dataset(env_id, seed, "dart", q)))
    if "dagger" in plan.cfg.methods:
        last = dagger_run(plan, env_id, seed, q)
        runs["dagger"] = (last, _dagger_labels(last.parent))
    for method, (run, labels) in runs.items():
        if method not in plan.cfg.methods:
            continue
        for decode in DECODINGS:
            metrics = rollout(plan, env_id, seed, run, f"{method}-{q}", decode)
            rows.append(_row(plan, job, method, decode, labels, metrics))
    return rows


def _dataset_steps(plan: Plan, dataset_id: str) -> int:
    """Transitions (= expert labels) of a Minari dataset in the comparison's datasets root."""
    meta = plan.out / "datasets" / dataset_id / "data" / "metadata.json"
    with _made_by_the_comparison(meta):
        return int(read_json_object(meta, "dataset metadata")["total_steps"])


def _dagger_labels(run: Path) -> int:
    """Expert labels used by the DAgger run ``run`` (its rounds.csv's last row)."""
    with _made_by_the_comparison(run / "rounds.csv"):
        return int(read_csv_rows(run / "rounds.csv", "DAgger rounds table")[-1]["expert_labels"])


@contextlib.contextmanager
def _made_by_the_comparison(path: Path) -> Iterator[None]:
    """Reading a file that a finished step of the comparison made: a missing or damaged one
    is a CorruptFileError naming it (the step's folder is kept as finished, so it must be
    deleted to be made again)."""
    try:
        yield
    except (OSError, KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, CorruptFileError):
            raise
        raise CorruptFileError(f"{path} is missing or damaged ({type(exc).__name__}: {exc}); "
                               "delete the run folder that holds it (and its .floor-done) to "
                               "make it again") from None


def _row(plan: Plan, job: Job, method: str, decode: str, labels: int,
         metrics_path: Path) -> dict[str, Any]:
    with _made_by_the_comparison(metrics_path):
        return _row_of(plan, job, method, decode, labels,
                       read_json_object(metrics_path, "rollout metrics"), metrics_path)


def _row_of(plan: Plan, job: Job, method: str, decode: str, labels: int,
            metrics: dict[str, Any], metrics_path: Path) -> dict[str, Any]:
    H = str(plan.horizon(job.env_id))
    pol = metrics["policies"]
    learner, expert = pol["policy"][H], pol["expert"][H]
    qexp = pol.get("quantized_expert", {}).get(H)  # nearest rounding: the argmax floor
    qexp_stochastic = pol.get("quantized_expert_stochastic", {}).get(H)  # smooth only
    if qexp is None and job.quantizer is not None:
        raise KeyError(f"no quantized-expert rollout at H={H}")  # named by the caller
    row = {"env": job.env_id, "quantizer": job.quantizer or "-", "seed": job.seed,
           "method": method, "decode": decode, "expert_labels": labels, "H": int(H),
           "expert_return": expert["return"], "regret": learner["regret"],
           "regret_ci_low": learner["regret_ci95"][0], "regret_ci_high": learner["regret_ci95"][1],
           "diverged": learner["diverged_fraction"],
           "qexp_regret": qexp["regret"] if qexp else math.nan,
           "qexp_diverged": qexp["diverged_fraction"] if qexp else math.nan,
           "qexp_stochastic_regret": qexp_stochastic["regret"] if qexp_stochastic else math.nan}
    row["ratio"] = floor_ratio(row["regret"], row["qexp_regret"])
    return row


# -- the whole comparison ------------------------------------------------------------------------
def run_comparison(cfg: FloorConfig, log: Log = silent) -> list[dict[str, Any]]:
    """Run (or continue) the comparison; write results.csv, summary.csv and README.md. ``log``
    gets one line per finished job."""
    cfg = quick_config(cfg) if cfg.quick else cfg
    validate(cfg)
    if not _valid_sigma(cfg.dart_sigma):
        raise InvalidValueError(f"--dart-sigma must be 'auto' or a positive number, got "
                                f"{cfg.dart_sigma!r}")
    plan = Plan(cfg)
    stored = load_rows(plan.out, cfg)  # a damaged table or other settings: refused first
    clock = WallClock(plan.out)
    plan.out.mkdir(parents=True, exist_ok=True)
    jobs = [Job(e, s, q) for e in cfg.envs for s in cfg.seeds
            for q in ((*cfg.quantizers, None) if cfg.mlp_mse else cfg.quantizers)]
    keys = {_key(j) for j in jobs}
    to_run = [j for j in jobs if _key(j) not in stored]
    rows = [row for j in jobs if _key(j) in stored for row in stored[_key(j)]]
    others = [row for key, kept in stored.items() if key not in keys for row in kept]
    order = _row_order(cfg)
    try:
        with stopped_on_exit():  # a kill or Ctrl-C stops the runs under way too
            for env_id, seed in dict.fromkeys((j.env_id, j.seed) for j in to_run):
                collect_bc(plan, env_id, seed)
            clock.save()
            # parallel jobs evaluate in this process's threads: one torch thread each, as the
            # commands they start get one (OMP_NUM_THREADS=1)
            with scoped_threads(1 if cfg.workers > 1 else None), \
                    thread_pool(max(1, cfg.workers)) as pool:
                finished = pool.map(lambda j: run_job(plan, j), to_run)
                for job, done in zip(to_run, finished, strict=True):
                    rows += done
                    save_rows(plan.out, cfg, sorted(rows + others, key=order))
                    clock.save()
                    log(f"[{clock.this_invocation():7.0f} s] {job.env_id} seed {job.seed} "
                        f"{job.quantizer or 'mlp-mse'}: done")
    finally:  # a comparison that fails, is interrupted or terminated still counts its time
        seconds = clock.save()
    rows.sort(key=order)
    save_rows(plan.out, cfg, sorted(rows + others, key=order))
    summary = summarise(rows, labels_required=not cfg.dagger_defaults)
    atomic_write_csv(plan.out / "summary.csv", summary, list(summary[0]) if summary else [])

    atomic_write_text(plan.out / "README.md", report(cfg, summary, seconds))
    return rows


def _key(job: Job) -> JobKey:
    return (job.env_id, job.seed, job.quantizer or "-")


def _row_order(cfg: FloorConfig):
    """Sort key of results.csv: this invocation's envs in their order, then any others."""
    def key(r: dict[str, Any]) -> tuple:
        env_rank = cfg.envs.index(r["env"]) if r["env"] in cfg.envs else len(cfg.envs)
        return (env_rank, r["env"], r["quantizer"], r["method"], r["decode"], r["seed"])
    return key


def _valid_sigma(sigma: str) -> bool:
    if sigma == "auto":
        return True
    try:
        return 0 < float(sigma) < math.inf
    except ValueError:
        return False
