"""The ledger of issue 33: what the tokenizer costs and what it buys, on the same runs.

For every env of ``envs`` (each with its default scripted expert), every seed of ``seeds`` and
every learner of ``learners`` (:mod:`qbc.experiments.multimodal.learners`: mlp-mse, the Gaussian
``mlp-gaussian``, the AR token policy with uniform, smooth and k-means bins, the chunked token
policy ``chunk-ar-transformer`` with per-step tokens, k = 4, executed receding:1) one **cell**:
train the learner on that seed's demonstrations (``n_demos`` episodes of the expert, reset
seeds ``seed * n_demos + k``; training seed ``seed``; ``steps`` None: ``qbc train``'s
data-scaled default budget with early stopping) and roll it out coupled with the expert on
``episodes`` evaluation episodes (seeds 1,000,000, ...; the same for every cell), token policies
once per decoding, beside the floor of its tokenizer (the quantized expert q#pi*, or the
quantized chunk expert). Each row: success rate with its 95% Wilson interval, mode coverage
where the env reports ``info["mode"]`` (the detour task; PointMaze's planner route is not
reported by the env: n/a), return, regret J(expert) - J(policy) with its 95% interval.

Resumable: each finished cell is written to ``out/cells/<env>/seed-<s>/<learner>.json`` at once
(atomically); a run into the same ``out`` with the same settings keeps those cells and runs only
the missing ones, so a crash loses nothing finished, and a run with more envs, seeds or learners
adds only their cells. ``out/ledger_config.json`` holds the settings that shape a cell; a run with
others into the same ``out`` is refused (``overwrite`` starts afresh). One run at a time per
``out`` (a lock). The outputs, made from the cell files of the cells asked for:
``results.json`` (cell rows and the summary over seeds,
:mod:`qbc.experiments.multimodal.summary`) and ``results.md`` (the table and the paragraph of
where tokens win and where they cost).

The full run (4 envs x 3 seeds x 6 learners = 72 cells)::

    python scripts/multimodal_ledger.py --out runs/multimodal_ledger

Its wall time, from real seed-0 cells at the default budget (every training ran its 10,000
steps) on a shared 2-core CPU, one torch thread, 2026-12-07: DetourUnstable mlp-mse 32 s,
AR uniform 157 s, chunk 448 s; PointMaze 64 s, 218 s, 394 s; FetchPickAndPlace AR uniform 243 s
(mlp-mse 123 s and chunk 1478 s measured while other work shared the CPU, which made the AR cell
743 s). With mlp-gaussian taken as mlp-mse and smooth and k-means as uniform: about 77 minutes
per seed, about 4 hours for 3 seeds (up to about 4.6 hours with the unscaled Fetch chunk cell);
slower while the CPU is shared. Finished cells are kept, so it can run in pieces.

``--quick``: the tiny configuration of :func:`quick_config` (seconds per cell; for tests and
``reproduce --quick``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qbc.agents import make_expert
from qbc.data import dataset_exists, load_demonstrations
from qbc.data.collect import CollectConfig, collect
from qbc.data.expert_choice import default_expert
from qbc.envs.make import make_env
from qbc.errors import CorruptFileError, InvalidValueError
from qbc.experiments.multimodal.learners import (
    Training,
    check_execute,
    floor_actor,
    learner_actors,
    parse_learner,
    train_learner,
)
from qbc.experiments.multimodal.summary import results_text, summarize
from qbc.infra.environ import scoped_threads
from qbc.infra.files import atomic_write_json, atomic_write_text, json_safe, read_json_object
from qbc.infra.progress import Log, silent
from qbc.infra.run_folder import exclusive
from qbc.infra.validate import AT_LEAST_ONE, Rule, check_config
from qbc.policy import ModelConfig
from qbc.policy.decoding import parse_decoding
from qbc.rollout.evaluate import evaluate_actors

#: First evaluation seed (episode i: seed + i), the same for every cell.
EVAL_SEED = 1_000_000
CONFIG_FILE = "ledger_config.json"
#: Entries of ``out`` a run writes (removed by ``overwrite``).
OWNED = ("cells", "datasets", "policies", "results.json", "results.md", CONFIG_FILE)
#: Settings left out of the resume check: those that do not change a cell's numbers, and the
#: axes that only choose which cells run (a run with another seed or env adds its cells).
UNCHECKED = ("out", "threads", "overwrite", "quick", "envs", "seeds", "learners")


@dataclass
class LedgerConfig:
    """The ledger of issue 33: mlp-mse, Gaussian, AR token (uniform, smooth, k-means) and chunked
    token policies on multimodal and manipulation tasks, several seeds; success, mode coverage,
    regret and the quantized expert's floor, resumable cell by cell."""

    out: Path = Path("runs/multimodal_ledger")
    """run directory (cells/, datasets/, policies/, results.json, results.md); a run into a
    folder with finished cells of the same settings continues it."""
    envs: tuple[str, ...] = ("qbc/DetourStable-v0", "qbc/DetourUnstable-v0",
                             "qbc/PointMaze_Medium-v3", "qbc/FetchPickAndPlace-v4")
    """tasks, each with its default scripted expert (detour, maze-planner, fetch-...)."""
    learners: tuple[str, ...] = ("mlp-mse", "mlp-gaussian", "ar-transformer:uniform",
                                 "ar-transformer:smooth", "ar-transformer:kmeans",
                                 "chunk-ar-transformer")
    """policy kinds; 'kind:quantizer' for per-step token policies, 'chunk kind[:tokenizer]'."""
    decodings: tuple[str, ...] = ("sample", "argmax")
    """decodings of the token policies: argmax, mean, sample (temperature 1) or sample:T."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """seeds: each its own demonstrations (reset seeds seed * n_demos + k) and training seed."""
    n_demos: int = 100
    """demonstrations per env and seed."""
    episode_steps: int | None = None
    """steps per demonstration and evaluation episode; default: the env's time limit."""
    bins: int = 64
    """tokens per action dimension (per-step and chunk tokens)."""
    chunk_k: int = 4
    """actions per chunk of the chunk learners."""
    execute: str = "receding:1"
    """execution of the chunk learners and their floor: open-loop, receding:M, ensemble:C."""
    steps: int | None = None
    """training steps; default: qbc train's data-scaled budget with early stopping."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings (each learner reads its own)."""
    episodes: int = 100
    """coupled evaluation episodes per cell (seeds 1,000,000, ...)."""
    device: str = "auto"
    """training device: 'auto', 'cpu', 'cuda', ..."""
    threads: int = 1
    """torch CPU threads."""
    quick: bool = False
    """the tiny configuration of :func:`quick_config` (the given out and envs kept)."""
    overwrite: bool = False
    """start afresh: remove the ledger's files in out first."""


#: The settings ``--quick`` sets itself (:func:`quick_config`).
QUICK = {"seeds": (0, 1), "n_demos": 3, "episode_steps": 50, "steps": 20, "episodes": 4,
         "bins": 16, "decodings": ("sample",)}


def quick_config(cfg: LedgerConfig) -> LedgerConfig:
    """The ``--quick`` settings: two seeds, 3 demonstrations of 50 steps, 20 training steps of a
    tiny model, 4 evaluation episodes, sampled decoding; the given out, envs and learners kept.
    A setting given beside it that it would replace is refused (it would be ignored)."""
    default = LedgerConfig()
    given = [k for k in (*QUICK, "model") if getattr(cfg, k) != getattr(default, k)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InvalidValueError(f"--quick sets {flags} itself; leave them out, or drop --quick")
    return dataclasses.replace(
        cfg, **QUICK, quick=False,
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2, hidden=32, loc_layers=1))


def validate(cfg: LedgerConfig) -> None:
    """Every setting checked before anything is written (one-line errors)."""
    check_config(cfg, {"bins": Rule(lo=2, integer=True), "n_demos": AT_LEAST_ONE,
                       "episodes": AT_LEAST_ONE, "chunk_k": AT_LEAST_ONE,
                       "steps": Rule(lo=1, integer=True, optional=True),
                       "episode_steps": Rule(lo=1, integer=True, optional=True),
                       "threads": Rule(lo=0, integer=True)})
    for name, values in (("envs", cfg.envs), ("learners", cfg.learners),
                         ("seeds", cfg.seeds), ("decodings", cfg.decodings)):
        if not values or len(set(values)) != len(values):
            raise InvalidValueError(f"--{name} must name at least one, each once; got {values}")
    if any(s < 0 or s * cfg.n_demos + cfg.n_demos > EVAL_SEED for s in cfg.seeds):
        raise InvalidValueError(f"--seeds must be >= 0 with seed * n_demos + n_demos <= "
                                f"{EVAL_SEED} (the demonstrations' reset seeds stay below the "
                                f"evaluation's); got {cfg.seeds}")
    for learner in cfg.learners:
        parse_learner(learner)
    for decoding in cfg.decodings:
        parse_decoding(decoding)
    check_execute(cfg.execute, cfg.chunk_k)
    for env_id in cfg.envs:
        expert_name(env_id)
        make_env(env_id).close()  # an unknown id, or the robotics extra missing: one line


def expert_name(env_id: str) -> str:
    """The scripted expert of ``env_id``: ``detour`` on the detour task, else the env's own
    (``EnvSpec.expert``); an env without one is refused."""
    if env_id.startswith("qbc/Detour"):
        return "detour"
    name, source = default_expert(env_id)
    if not source.startswith("default: the scripted expert"):
        raise InvalidValueError(f"{env_id} has no scripted expert; the ledger takes the detour "
                                "variants and the Gymnasium-Robotics tasks (qbc/PointMaze_"
                                "Medium-v3, qbc/FetchPickAndPlace-v4, qbc/FetchPush-v4)")
    return name


def run_ledger(cfg: LedgerConfig, log: Log = silent) -> dict[str, Any]:
    """Run every missing (env, seed, learner) cell, then summarise all of them; ``log`` gets a
    line per cell. Returns the results (as in results.json)."""
    cfg = quick_config(cfg) if cfg.quick else cfg
    validate(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".lock", f"the ledger in {out}"), scoped_threads(cfg.threads):
        _claim(out, cfg)
        cells = [(e, s, learner) for e in cfg.envs for s in cfg.seeds for learner in cfg.learners]
        for cell in cells:  # a damaged finished cell is refused before any new work
            if cell_path(out, *cell).is_file():
                read_cell(cell_path(out, *cell), cell)
        demos: dict[tuple[str, int], Any] = {}
        for i, (env_id, seed, learner) in enumerate(cells, 1):
            path = cell_path(out, env_id, seed, learner)
            tag = f"[{i}/{len(cells)}] {env_id} seed {seed} {learner}"
            if path.is_file():
                log(f"{tag}: kept (finished before)")
                continue
            if (env_id, seed) not in demos:
                demos = {(env_id, seed): _demonstrations(out, env_id, seed, cfg)}
            cell = run_cell(env_id, seed, learner, cfg, demos[(env_id, seed)], out)
            atomic_write_json(path, json_safe(cell))
            log(f"{tag}: {_cell_line(cell)}")
        rows = [r for e, s, learner in cells for r in read_cell(cell_path(out, e, s, learner))]
        summary = summarize(rows)
        result = {"config": _config_dict(cfg), "rows": rows, "summary": summary}
        atomic_write_json(out / "results.json", json_safe(result))
        atomic_write_text(out / "results.md", results_text(result))
    return result


def _config_dict(cfg: LedgerConfig) -> dict[str, Any]:
    return json_safe({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()})


def _claim(out: Path, cfg: LedgerConfig) -> None:
    """Write out's config, or check that it holds this one (``overwrite``: start afresh)."""
    path = out / CONFIG_FILE
    if cfg.overwrite:
        for name in OWNED:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    mine = {k: v for k, v in _config_dict(cfg).items() if k not in UNCHECKED}
    if path.is_file():
        theirs = read_json_object(path, what="ledger config")
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differ:
            raise InvalidValueError(f"{out} holds a ledger with other settings ({', '.join(differ)}"
                                    f"); continue it with the same ones, choose another --out or "
                                    f"pass --overwrite")
    else:
        atomic_write_json(path, mine)


def read_cell(path: Path, cell: tuple[str, int, str] | None = None) -> list[dict[str, Any]]:
    """The rows of a finished cell's file: a JSON object whose "rows" is a list of objects with
    the fields the summary reads, of their kinds (and, given ``cell`` = (env, seed, learner),
    that cell's), else a CorruptFileError naming the file (delete it: the next run makes that
    cell again)."""
    rows = read_json_object(path, what="ledger cell").get("rows")
    if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
        raise CorruptFileError(f"ledger cell {str(path)!r} has no list of rows; it was damaged: "
                               "delete it and run the ledger again (it makes that cell again)")
    for row in rows:
        bad = next((k for k, ok in _ROW_FIELDS.items() if not ok(row.get(k))), None)
        if bad is None and cell is not None and (row["env"], row["seed"], row["learner"]) != cell:
            bad = "env/seed/learner (another cell's)"
        if bad is not None:
            raise CorruptFileError(f"ledger cell {str(path)!r}: a row's {bad} is missing or of "
                                   "the wrong kind; it was damaged: delete it and run the ledger "
                                   "again (it makes that cell again)")
    return rows


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


#: The fields of a cell's row that the summary reads, and what each must be.
_ROW_FIELDS = {
    **{k: lambda x: isinstance(x, str) for k in ("env", "policy", "role", "learner", "decoding")},
    "seed": lambda x: _number(x) and float(x).is_integer(),
    "episodes": lambda x: _number(x) and float(x).is_integer() and x >= 1,
    **{k: _number for k in ("return", "regret", "ended_early")},
    "regret_ci95": lambda x: isinstance(x, list) and len(x) == 2 and all(map(_number, x)),
    "success": lambda x: x is None or (_number(x) and 0 <= x <= 1),
    "modes": lambda x: x is None or (isinstance(x, dict) and all(map(_number, x.values()))),
}


def _slug(text: str) -> str:
    return text.removeprefix("qbc/").lower().replace(":", "-").replace("_", "-")


def cell_path(out: Path, env_id: str, seed: int, learner: str) -> Path:
    """Where the cell (env_id, seed, learner) is kept."""
    return out / "cells" / _slug(env_id) / f"seed-{seed}" / f"{_slug(learner)}.json"


def _demonstrations(out: Path, env_id: str, seed: int, cfg: LedgerConfig) -> Any:
    """The seed's demonstrations of ``env_id`` (collected into out/datasets once)."""
    dataset_id, root = dataset_of(env_id, seed), out / "datasets"
    if not dataset_exists(dataset_id, root):
        collect(CollectConfig(env=env_id, dataset_id=dataset_id, expert=expert_name(env_id),
                              episodes=cfg.n_demos, num_envs=min(cfg.n_demos, 100),
                              seed=seed * cfg.n_demos, max_episode_steps=cfg.episode_steps,
                              progress=False), root=root)
    return load_demonstrations(dataset_id, root=root)


def dataset_of(env_id: str, seed: int) -> str:
    """The Minari id of the seed's demonstrations of ``env_id``."""
    return f"ledger/{_slug(env_id).rsplit('-v', 1)[0]}-seed{seed}-v0"


def run_cell(env_id: str, seed: int, learner_name: str, cfg: LedgerConfig, demos: Any,
             out: Path) -> dict[str, Any]:
    """Train one learner and roll it out (with its decodings and floor) coupled with the
    expert; ``{"env", "seed", "learner", "seconds", "rows": [one per actor, expert first]}``."""
    t0 = time.perf_counter()
    learner = parse_learner(learner_name)
    expert = make_expert(expert_name(env_id), env_id)
    tr = Training(bins=cfg.bins, steps=cfg.steps, chunk_k=cfg.chunk_k, model=cfg.model,
                  device=cfg.device, seed=seed)
    policy_dir = out / "policies" / _slug(env_id) / f"seed-{seed}" / _slug(learner_name)
    policy, info = train_learner(learner, dataset_of(env_id, seed), demos, policy_dir, tr)
    actors = learner_actors(learner, policy, cfg.decodings, cfg.execute, seed)
    roles = {"expert": ("expert", "-"), **{k: ("learner", d) for k, (_, d) in actors.items()}}
    floor = floor_actor(learner, policy, env_id, expert, cfg.bins, cfg.execute)
    everyone = {"expert": expert, **{k: a for k, (a, _) in actors.items()}}
    if floor is not None:
        everyone[floor[0]], roles[floor[0]] = floor[1], ("floor", "-")
    horizon = int(demos.episode_lengths().max())
    report = evaluate_actors(env_id, everyone, EVAL_SEED, cfg.episodes, [horizon])
    rows = []
    for name, per_h in report.policies.items():
        m = per_h[str(horizon)]
        role, decoding = roles[name]
        rows.append({"env": env_id, "seed": seed, "learner": learner_name, "policy": name,
                     "role": role, "decoding": decoding,
                     "tokens": learner.tokens and role == "learner", "success": m.get("success"),
                     "success_ci95": m.get("success_ci95"), "modes": m.get("modes"),
                     "return": m["return"], "regret": m["regret"],
                     "regret_ci95": m["regret_ci95"], "ended_early": m["diverged_fraction"],
                     "horizon": horizon, "episodes": cfg.episodes, "n_demos": cfg.n_demos,
                     **(info if role == "learner" else {})})
    return {"env": env_id, "seed": seed, "learner": learner_name, "rows": rows,
            "seconds": time.perf_counter() - t0}


def _cell_line(cell: dict[str, Any]) -> str:
    """``success 87% (sample), 91% (argmax); floor 100%; 123 s``: the cell's progress line."""
    parts = []
    for r in cell["rows"]:
        if r["role"] == "expert":
            continue
        rate = "n/a" if r["success"] is None else f"{r['success']:.0%}"
        parts.append(f"{r['policy']} {rate}")
    return f"success {', '.join(parts)} ({cell['seconds']:.0f} s)"
