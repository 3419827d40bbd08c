"""The run folder of ``qbc train``: claiming it (locked; new, ``--overwrite`` or ``--resume``),
``last/`` (weights, optimiser, schedule, step and random states: everything ``--resume``
needs, no pickle), the run's identity, and the checks before a run is continued."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qbc.errors import CorruptFileError, InvalidValueError, OutputExistsError
from qbc.infra.files import atomic_write_json, atomic_write_text, read_json_object
from qbc.infra.run_folder import atomic_write_dir, exclusive, lock_path_for, output_dir, recover_dir
from qbc.policy.loading import load_parts, load_tensors, save_checkpoint, save_tensors
from qbc.training.averaging import WeightAverage
from qbc.training.config import TrainConfig, config_dict, validate_with_data
from qbc.training.distributed import DistContext, session
from qbc.training.run_log import RunLog, check_run_log

#: Everything a run writes into its folder: an --overwrite run replaces all of it, also the
#: entries it does not write itself (curves of a --tensorboard run, a --augment model).
RUN_OUTPUTS = ("train_config.json", "metrics.jsonl", "summary.json", "best", "last",
               "transition", "tensorboard", "wandb")

#: Settings that may differ between a run and its ``--resume`` ('out': a run is found by its
#: folder, however its path is spelled, and a moved folder still resumes; 'run_id' is checked
#: by :func:`run_identity`).
_RESUMABLE_CHANGES = {"out", "run_id", "steps", "epochs", "patience", "resume", "overwrite",
                      "progress", "device", "tensorboard", "wandb",
                      "rollout_episodes", "augment", "transition_steps", "transition_head",
                      "transition_bins", "rollout_horizon", "rollout_seed", "eval_interval"}

#: The files of a run folder that record its run id (``run_id``, drawn when the run starts).
_RUN_ID_FILES = ("train_config.json", "last/config.json", "best/config.json")


# -- the run folder --------------------------------------------------------------------------------
@contextmanager
def run_dir(cfg: TrainConfig, into: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """The folder to write the run into, locked, and whether to resume from it.

    ``into``: write a new run into this folder (missing or empty, owned by the caller: DAgger's
    staged ``--overwrite``) instead of ``cfg.out``, which the stored configs still name.

    ``--resume`` continues ``out/last`` in place and refuses (``OutputExistsError``, nothing
    written) a missing, empty or other folder: there is nothing to continue. Otherwise
    :func:`qbc.infra.run_folder.output_dir`: a new run is written straight into a missing or
    empty ``out`` (a crash leaves it resumable);
    with ``--overwrite`` an existing run stays untouched until the new one has finished in a
    staging folder beside it, and is then replaced."""
    if into is not None:
        with output_dir(into, False, "train") as work:
            yield work, False
        return
    out = cfg.out
    what = ("does not exist" if not out.exists() else
            "is empty" if out.is_dir() and not any(out.iterdir()) else
            "has no last/trainer_state.json")
    no_run = OutputExistsError(
        f"--resume: {out} holds no resumable run (it {what}); give the --out of the run to "
        "continue, or leave --resume out to start a new run")
    if cfg.resume and _resumable(out):
        with exclusive(lock_path_for(out), f"qbc train is writing {str(out)!r}"):
            recover_dir(out / "last")  # a crash between the renames of the last save
            if not (out / "last" / "trainer_state.json").is_file():
                raise no_run  # replaced before the lock was ours
            run_identity(out)  # the parts of the folder belong to one run
            yield out, True
        return
    if cfg.resume:  # nothing to continue: refused, nothing written (a typo in --out would
        raise no_run  # otherwise start a new run somewhere else without a word)
    refusal = (f"run directory {out} is not empty; pass --overwrite to replace its run, "
               "--resume to continue it, or choose another --out")
    with output_dir(out, cfg.overwrite, "train", refusal,
                    keep=lambda d: (d / "last" / "trainer_state.json").is_file(),
                    owned=RUN_OUTPUTS) as work:
        yield work, False


@contextmanager
def claim_run(cfg: TrainConfig, ctx: DistContext,
              into: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """:func:`run_dir` on rank 0, its (folder, resuming) shared with every rank."""
    with ExitStack() as stack:
        yield ctx.main_first(lambda: stack.enter_context(run_dir(cfg, into)))


@dataclass
class ClaimedRun:
    """Where and how a run trains, once its settings and data are checked."""

    device: torch.device
    ctx: DistContext
    work: Path
    """the folder the run is written into (``out``, or a staging folder under --overwrite)."""
    resuming: bool
    """whether it continues the ``last/`` in ``work``."""
    run_log: RunLog | None


@contextmanager
def claimed_run(cfg: TrainConfig, demos: Any, run_log: RunLog | None = None,
                into: Path | None = None) -> Iterator[ClaimedRun]:
    """Check the settings against ``demos``, start the process group (under torchrun), claim
    the run folder (:func:`~qbc.training.checkpoint.claim_run`) and open the run log:
    ``run_log``, else (rank 0) one in the run folder as ``cfg.tensorboard`` / ``cfg.wandb``
    ask. ``into``: see :func:`run_dir`."""
    device = validate_with_data(cfg, demos)
    check_run_log(cfg.wandb)  # before the run folder is claimed: a refused run writes nothing
    with session(device) as ctx, claim_run(cfg, ctx, into) as (work, resuming):
        with _own_run_log(cfg, ctx, work, run_log) as log:
            yield ClaimedRun(device, ctx, work, resuming, log)


@contextmanager
def _own_run_log(cfg: TrainConfig, ctx: DistContext, work: Path,
                 given: RunLog | None) -> Iterator[RunLog | None]:
    """``given``, else (rank 0 only) a RunLog writing into the run folder ``work``."""
    if given is not None or not ctx.is_main:
        yield given
        return
    with RunLog(work, config_dict(cfg), cfg.tensorboard, cfg.wandb) as own:
        yield own


def _resumable(out: Path) -> bool:
    return (out / "last" / "trainer_state.json").is_file() or (out / ".last.old").is_dir()


def run_identity(out: Path) -> str | None:
    """The run id of the run in ``out`` (None for a run made before run ids were recorded).
    A folder whose parts were written by different runs (a ``last/`` copied from another
    run, an interrupted swap) is refused: resuming it would mix two runs."""
    ids = {}
    for rel in _RUN_ID_FILES:
        if (out / rel).is_file():
            stored = read_json_object(out / rel, what="run config")
            stored = stored.get("train", stored) if rel != _RUN_ID_FILES[0] else stored
            if isinstance(stored, dict) and isinstance(stored.get("run_id"), str):
                ids[rel] = stored["run_id"]
    if len(set(ids.values())) > 1:
        detail = ", ".join(f"{rel}: {rid[:8]}" for rel, rid in ids.items())
        raise CorruptFileError(
            f"--resume: the files of {out} belong to different runs (run ids {detail}); "
            "resume the run each came from in its own folder, or start a new run in another "
            "--out")
    return next(iter(ids.values()), None)


def write_metrics(path: Path, records: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON record per line, replaced as a whole."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    """Records of an earlier run up to step ``upto`` (later ones were not checkpointed)."""
    if not path.is_file():
        return []
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{str(path)!r} is not UTF-8 text ({exc}): restore it or start "
                               "afresh with --overwrite") from None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        try:
            rec = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                continue  # a torn last line from a crash
            raise CorruptFileError(f"{str(path)!r}, line {number} is not JSON ({exc}) and is not "
                                   "the last line (a crash tears only that one): repair that "
                                   "line or start afresh with --overwrite") from None
        except (ValueError, RecursionError) as exc:  # NaN, inf, 5000 digits, nesting
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CorruptFileError(f"{str(path)!r}, line {number}: {why}; a run writes finite "
                                   "numbers only: repair that line or start afresh with "
                                   "--overwrite") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("step", 0), int):
            raise CorruptFileError(f"{str(path)!r}, line {number} is not a metrics record (a "
                                   "JSON object with an integer 'step'): repair that line or "
                                   "start afresh with --overwrite")
        if rec.get("step", 0) <= upto:
            out.append(rec)
    return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


# -- last/: save and resume -----------------------------------------------------------------------
def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = optimizer.state_dict()
    tensors = {f"optim.{pid}.{name}": torch.as_tensor(v)
               for pid, st in sd["state"].items() for name, v in st.items()}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in sd["param_groups"]]
    return tensors, groups


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                          groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_last(out: Path, module, normalizer, tokenizer, optimizer, scheduler, step: int,
              batch_gen: torch.Generator, np_rng: np.random.Generator | None,
              best: dict[str, Any], config: dict[str, Any], env_id: str | None = None,
              average: WeightAverage | None = None) -> None:
    """Everything needed to continue: the checkpoint, optimizer, schedule, step and RNG states
    (and the weight average, when the run keeps one).
    ``out/last`` is replaced as a whole (:func:`qbc.infra.run_folder.atomic_write_dir`), so a kill
    at any moment leaves the weights and the optimizer state of one and the same step."""
    tensors, groups = _optimizer_state(optimizer)
    if average is not None:
        tensors.update(average.state_tensors())
    tensors["rng.batch"] = batch_gen.get_state()
    tensors["rng.torch_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
    state = {"step": step, "optimizer_param_groups": groups, "scheduler": scheduler.state_dict(),
             "np_rng": None if np_rng is None else np_rng.bit_generator.state, "best": best}

    def fill(last: Path) -> None:
        save_checkpoint(last, module, normalizer, tokenizer, config, env_id)
        save_tensors(last / "trainer.safetensors", tensors)
        atomic_write_json(last / "trainer_state.json", state)

    atomic_write_dir(out / "last", fill)


def load_last(out: Path, conf: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The run in ``out/last`` to continue with the settings ``conf`` (refused if they or the
    data differ: :func:`check_resume_config`): (module, normalizer, tokenizer, trainer state)."""
    last = out / "last"
    stored = read_json_object(last / "config.json", what="checkpoint config")
    stored = (stored.get("train") if isinstance(stored, dict) else None) or {}
    if not isinstance(stored, dict):
        raise CorruptFileError(f"{last / 'config.json'}: 'train' is not an object")
    check_resume_config(stored, conf)
    module, _, normalizer, tokenizer = load_parts(last)
    state = read_json_object(last / "trainer_state.json", what="trainer state")
    return module, normalizer, tokenizer, state


def restore_progress(out: Path, state: dict[str, Any], optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler,
                     batch_gen: torch.Generator, np_rng: np.random.Generator | None,
                     average: WeightAverage | None = None, steps: int | None = None
                     ) -> tuple[int, dict[str, Any]]:
    """Put the optimiser, schedule, weight average and every random generator back as
    ``out/last`` saved them (trainer ``state`` from :func:`load_last`); returns (step, best). A
    damaged state is a CorruptFileError; a step beyond this run's budget ``steps`` (when given)
    is refused (:func:`check_resumed_step`)."""
    try:
        tensors = load_tensors(out / "last" / "trainer.safetensors", "trainer state")
        _load_optimizer_state(optimizer, tensors, state["optimizer_param_groups"])
        if average is not None:
            average.load_state_tensors(tensors)
        scheduler.load_state_dict(state["scheduler"])
        batch_gen.set_state(tensors["rng.batch"])
        torch.set_rng_state(tensors["rng.torch_cpu"])
        if "rng.torch_cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.torch_cuda"])
        if np_rng is not None:
            np_rng.bit_generator.state = state["np_rng"]
        start, best = int(state["step"]), state["best"]
        if start < 0 or not isinstance(best, dict) or int(best["step"]) < 0:
            raise ValueError(f"step {start} or its best step is negative")
        for key, value in best.items():  # the numbers the selection compares with
            if value is not None and not (isinstance(value, (int, float))
                                          and not isinstance(value, bool)
                                          and math.isfinite(value)):
                raise ValueError(f"best checkpoint's {key!r} is {value!r}, not a finite number")
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError,
            OverflowError) as exc:  # fields of the wrong type or size (a list for an object)
        raise CorruptFileError(f"{out / 'last'} cannot be resumed from ({exc}); "
                               "start again with --overwrite") from None
    schedule = state["scheduler"]
    check_resumed_step(out, start, schedule.get("last_epoch") if isinstance(schedule, dict)
                       else None, steps)
    return start, best


def check_resumed_step(out: Path, step: int, schedule_step: Any, steps: int | None) -> None:
    """Refuse to continue from the stored ``step`` unless it is where the saved run stopped:
    the step of its schedule (``schedule_step``, advanced once per step) and within the budget
    recorded in ``last/config.json`` (else CorruptFileError naming trainer_state.json: an
    edited step 1,000,000 resumed, trained nothing and exited 0), and within this run's budget
    ``steps`` (else InvalidValueError: a smaller --steps than the run has reached would train
    nothing and report the smaller budget). A finished run resumed with its budget passes."""
    train = read_json_object(out / "last" / "config.json", what="checkpoint config").get("train")
    saved = train.get("steps") if isinstance(train, dict) else None
    beyond = isinstance(saved, int) and not isinstance(saved, bool) and step > saved
    if schedule_step != step or beyond:
        raise CorruptFileError(
            f"{out / 'last' / 'trainer_state.json'}: step {step} is not where the run stopped "
            f"(its schedule is at step {schedule_step!r}, its recorded budget {saved!r} steps); "
            "the file was edited or damaged: start again with --overwrite")
    if steps is not None and step > steps:
        raise InvalidValueError(
            f"--resume: the run in {out} has already reached step {step}, beyond this run's "
            f"budget of {steps} steps; give a budget (--steps or --epochs) of at least {step} "
            "steps to continue it, or start a new run in another --out")


def check_resume_config(stored: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with other settings or other data (a run is found by its folder, so
    'out' itself may differ: a run reached by another spelling of its path, or moved, resumes;
    runs saved before data hashes were recorded are not checked for the data). A setting the
    stored run predates (absent from its config) counts as unchanged while it keeps its
    default."""
    if "dataset_sha256" in stored and stored["dataset_sha256"] != current.get("dataset_sha256"):
        raise InvalidValueError(
            f"--resume: the demonstrations of {current.get('dataset')!r} differ from those the "
            "run in progress was trained on (content hash); resume with the same data, or "
            "start a new run in another --out")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}

    def changed(k: str) -> bool:
        if k not in stored and k in defaults:
            return current.get(k) != json.loads(json.dumps(defaults[k], default=str))
        return stored.get(k) != current.get(k)

    diff = sorted(k for k in set(stored) | set(current)
                  if k not in _RESUMABLE_CHANGES and k != "dataset_sha256" and changed(k))
    if diff:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {current.get(k)!r}" for k in diff)
        raise InvalidValueError(
            f"--resume with settings that differ from the run in progress ({detail}); use the "
            "same settings, or start a new run in another --out")
