"""Training: log-loss behavior cloning of a policy over quantized actions (``qbc train``) and of
chunk policies (``qbc train-chunked``).

>>> from qbc.training import TrainConfig, train
>>> result = train(TrainConfig(dataset="qbc/linear-unstable-lqr-v0", out=Path("runs/ar")), demos)

A run directory holds::

    train_config.json   the resolved configuration
    metrics.jsonl       one JSON record per evaluation (train/val loss, lr, samples/s, ...)
    best/               policy checkpoint with the lowest validation loss (qbc.policy.load_policy)
    last/               the latest checkpoint + optimizer.safetensors, trainer.safetensors and
                        trainer_state.json: everything ``--resume`` needs (no pickle)
    summary.json        final numbers

The modules: :mod:`~qbc.training.config` (settings, step budget, checks),
:mod:`~qbc.training.data` (the split, tensors, batches), :mod:`~qbc.training.optim` (AdamW,
schedule, one step), :mod:`~qbc.training.loop` (:func:`train`),
:mod:`~qbc.training.checkpoint` (the run folder, ``last/``, resume),
:mod:`~qbc.training.evaluation` (validation, selection, closing rollout),
:mod:`~qbc.training.transition` (the model of ``--augment model``), :mod:`~qbc.training.run`
(:func:`run_train`: a whole run from a dataset id) and :mod:`~qbc.training.chunked`.

Data-parallel training: ``qbc train --dataset ... [flags]`` started by
``torchrun --nproc-per-node N`` (the command line is in the README, "Distributed training") runs N
processes (gloo on CPU, NCCL with one GPU per process). Every process draws the same global batch
of ``--batch-size`` rows and trains on its 1/N slice under DistributedDataParallel, so the run
follows the single-process run up to float rounding; rank 0 alone writes the run directory, shows
progress and runs the evaluation rollouts. The run directory must be visible to every rank
(``--resume`` reads it on all of them).
"""

from qbc.training.checkpoint import run_dir, run_identity, save_last
from qbc.training.chunked import ChunkTrainConfig, run_train_chunked, train_chunked
from qbc.training.config import (
    OptimConfig,
    TrainConfig,
    check_train_memory,
    default_steps,
    resolve_budget,
    validate_config,
)
from qbc.training.data import (
    SplitTensors,
    fit_tokenizer,
    history_index,
    make_batch,
    prepare_data,
    split_demos,
)
from qbc.training.evaluation import (
    default_rollout_seed,
    evaluate_split,
    rollout_evaluation,
    selection_return,
    should_stop,
    update_best,
)
from qbc.training.loop import TrainResult, train
from qbc.training.optim import lr_factor, make_optimizer, train_step
from qbc.training.run import TrainSummary, run_train
from qbc.training.transition import train_transition_model

__all__ = [
    "ChunkTrainConfig", "OptimConfig", "SplitTensors", "TrainConfig", "TrainResult",
    "TrainSummary",
    "check_train_memory", "default_rollout_seed", "default_steps", "evaluate_split",
    "fit_tokenizer", "history_index", "lr_factor", "make_batch", "make_optimizer",
    "prepare_data", "resolve_budget", "rollout_evaluation", "run_dir", "run_identity",
    "run_train", "run_train_chunked", "save_last", "selection_return", "should_stop",
    "split_demos", "train", "train_chunked", "train_step", "train_transition_model",
    "update_best", "validate_config",
]
