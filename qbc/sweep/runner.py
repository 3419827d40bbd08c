"""What one cell does — train each policy, roll everything out against the expert, make the
rows — and the dataset cache the cells read from.

:func:`run_cell` is the unit of work that the local process pool and Ray execute; it takes and
returns plain JSON-safe data (plus, optionally, the demonstrations themselves) and writes only
inside its own work directory, which it clears first, so a cell killed half-way is simply run
again from scratch.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from qbc.agents import make_expert
from qbc.data import dataset_exists, dataset_lock, load_demonstrations
from qbc.data.collect import CollectConfig, collect
from qbc.envs.make import opened_env
from qbc.errors import OutputExistsError
from qbc.infra.environ import scoped_threads
from qbc.infra.run_folder import LOCK_WAIT_S, locked_output
from qbc.policy import ModelConfig, needs_tokenizer
from qbc.policy.decoding import parse_decoding
from qbc.policy.registry import model_for
from qbc.quantizers import get_quantizer_class, quantile_params, range_settings
from qbc.rollout.coupled import QuantizedExpert
from qbc.rollout.evaluate import evaluate_actors
from qbc.sweep.cells import Cell, DatasetSpec
from qbc.sweep.chunk_runner import run_chunk_cell
from qbc.sweep.rows import (
    QUANTIZED_EXPERT_NEAREST,
    budget_columns,
    capped_horizons,
    make_row,
    nominal_bin_width,
)
from qbc.sweep.spec import QUANTIZED_EXPERT
from qbc.tokenizer import ActionTokenizer
from qbc.training import TrainConfig, train
from qbc.training.settings import model_with_used_location


# -- datasets -------------------------------------------------------------------------------------
def ensure_dataset(ds: DatasetSpec, num_envs: int = 16, lock_timeout: float = LOCK_WAIT_S,
                   progress: bool = False) -> bool:
    """Collect the dataset ``ds`` unless it exists already; True when it was collected now.

    Called by the parent only, before any cell runs. Another sweep sharing the datasets root
    may be collecting the same dataset: this waits for its lock (at most ``lock_timeout``
    seconds, then LockTimeoutError naming the holder and the lock file; ``progress`` shows the
    wait) and then reuses the dataset.
    """
    if dataset_exists(ds.dataset_id):
        return False
    # collect() below holds the lock already then
    with dataset_lock(ds.dataset_id, wait=lock_timeout, progress=progress,
                      wait_flag="--lock-timeout"):
        return _collect_missing(ds, num_envs)


def _collect_missing(ds: DatasetSpec, num_envs: int) -> bool:
    """Collect ``ds`` unless it exists (checked again under its lock)."""
    if dataset_exists(ds.dataset_id):
        return False
    expert = ds.expert_dict
    cfg = CollectConfig(env=ds.env, dataset_id=ds.dataset_id, expert=expert["name"],
                        env_kwargs=ds.env_kwargs_dict,
                        episodes=ds.n_demos, num_envs=num_envs, seed=ds.seed,
                        expert_params=dict(expert["params"]),
                        expert_noise=ds.expert_noise, max_episode_steps=ds.episode_steps)
    try:
        collect(cfg)
    except OutputExistsError:  # another sweep sharing the datasets root made it meanwhile
        return False
    return True


# -- one cell -------------------------------------------------------------------------------------
def _single_thread():
    """One torch thread (same numbers whatever the machine, no oversubscription in a pool)."""
    return scoped_threads(1)


def run_cell(cell: dict[str, Any], work_root: str, demos: Any = None) -> dict[str, Any]:
    """Run one cell; returns ``{"cell": key, "rows": [...], "seconds": wall time}``.

    Args:
        cell: :meth:`Cell.to_dict` of the cell.
        work_root: folder of the cells' work directories (``<work_root>/<key>`` is cleared and
            holds the trained checkpoints afterwards; it is locked while the cell runs).
        demos: the cell's :class:`qbc.data.Demonstrations`; default: loaded from the dataset
            cache (Ray passes them in, so that workers need not share the datasets folder).
    """
    c = Cell(**cell)
    with _single_thread(), locked_output(Path(work_root) / c.key, f"sweep (cell {c.key})"):
        return _run_cell(c, Path(work_root), demos)


def _run_cell(cell: Cell, work_root: Path, demos: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    work = work_root / cell.key
    if work.exists():
        shutil.rmtree(work)  # leftovers of a run that was killed
    work.mkdir(parents=True)
    if demos is None:
        demos = load_demonstrations(cell.dataset.dataset_id)
    expert_cfg = cell.dataset.expert_dict
    # the expert of the env variant the cell runs on (its data, rollouts and floor too)
    with opened_env(cell.env, **cell.env_kwargs_dict) as env:
        expert = make_expert(expert_cfg["name"], env, **expert_cfg["params"])
    if cell.chunk_len:
        rows = run_chunk_cell(cell, work, demos, expert)
    else:
        rows = _run_step_cell(cell, work, demos, expert)
    seconds = time.perf_counter() - t0
    for row in rows:
        row["wall_seconds"] = seconds
    return {"cell": cell.key, "rows": rows, "seconds": seconds}


def _run_step_cell(cell: Cell, work: Path, demos: Any, expert: Any) -> list[dict[str, Any]]:
    """Train (or wrap) each per-step policy of ``cell``, roll all out coupled; the rows."""
    import torch

    s = cell.settings
    tr, ro = s["train"], s["rollout"]
    actors: dict[str, Any] = {"expert": expert}
    extra: dict[str, dict[str, Any]] = {}
    for kind in cell.policies:
        t1 = time.perf_counter()
        if kind == QUANTIZED_EXPERT:
            quantile = tr["quantile"] if "quantile" in range_settings(cell.quantizer) else 0.0
            params = quantile_params(cell.quantizer, quantile)
            tok = ActionTokenizer(cell.quantizer, cell.bins, tr["per_dim"], params)
            tok.fit(demos.actions)
            actors[kind] = QuantizedExpert(expert, tok, rng=np.random.default_rng(cell.seed))
            extra[kind] = {"val_loss": None}
            if tok.stochastic:  # the floor of an argmax-decoded learner rounds to the nearest
                actors[QUANTIZED_EXPERT_NEAREST] = QuantizedExpert(expert, tok)
                extra[QUANTIZED_EXPERT_NEAREST] = extra[kind]
        else:
            actors[kind], extra[kind] = _train(cell, kind, demos, work / kind)
        extra[kind]["train_seconds"] = time.perf_counter() - t1
    horizons = capped_horizons(cell)
    # Policies decoded by sampling draw from one generator seeded by the cell, in rollout order.
    draws = torch.Generator().manual_seed(cell.seed)
    for kind in cell.policies:
        if kind != QUANTIZED_EXPERT:
            actors[kind].generator = draws
    report = evaluate_actors(cell.env, actors, ro["seed"], ro["episodes"], horizons,
                             num_envs=ro["num_envs"],
                             divergence_threshold=ro["divergence_threshold"],
                             env_kwargs=cell.env_kwargs_dict)
    width = nominal_bin_width(demos.actions, cell.bins)
    return [make_row(cell, kind, h, report.policies[kind][str(h)],
                     report.policies["expert"][str(h)], width, extra[kind])
            for kind in extra for h in horizons]


def _train(cell: Cell, kind: str, demos: Any, out: Path) -> tuple[Any, dict[str, Any]]:
    """Train policy ``kind`` for ``cell``: (the policy, its columns: best validation loss and
    step budget)."""
    tr = cell.settings["train"]
    # The grid's settings are shared by every policy of a cell; each kind is given the ones it
    # reads (qbc train refuses a setting its run would ignore).
    token: dict[str, Any] = {}
    model = ModelConfig(**tr["model"])
    if needs_tokenizer(kind):
        token = dict(quantizer=cell.quantizer, bins=cell.bins, per_dim=tr["per_dim"])
        if "quantile" in range_settings(cell.quantizer):
            token["quantile"] = tr["quantile"]
        if not get_quantizer_class(cell.quantizer).joint:  # joint tokens have no order
            token["token_target"] = tr["token_target"]
    model = model_for(kind, model)  # less the model settings this kind does not read
    # ... and the ordered head's, where this cell builds none (vq on several action dimensions)
    model = model_with_used_location(kind, model, cell.quantizer, int(demos.actions.shape[-1]))
    cfg = TrainConfig(
        dataset=cell.dataset.dataset_id, out=out, policy=kind, **token,
        select_by=tr.get("select_by", "action-mse"), model=model, steps=tr["steps"],
        batch_size=tr["batch_size"], lr=tr["lr"], warmup_steps=tr["warmup_steps"],
        seed=cell.seed, val_fraction=tr["val_fraction"], eval_interval=tr["eval_interval"],
        device="cpu", overwrite=True, rollout_episodes=0, progress=False)
    result = train(cfg, demos)
    policy = result.policy
    if policy.tokenizer is not None:
        policy.decode_mode, policy.temperature = parse_decoding(tr["decode"])
    return policy, {"val_loss": result.best_val_loss,
                    **budget_columns(result.step, result.budget, result.best_step)}
