"""Compatibility: training moved to :mod:`qbc.training` (the library; the ``qbc train`` command
is a module of the command package); the names below keep ``from qbc.train import ...`` working.

``python -m qbc.train`` / ``torchrun -m qbc.train`` are deprecated: they print one line and run
``python -m qbc.cli train`` with the same flags.
"""

from qbc.training import (
    OptimConfig,
    SplitTensors,
    TrainConfig,
    TrainResult,
    check_train_memory,
    default_rollout_seed,
    default_steps,
    evaluate_split,
    fit_tokenizer,
    history_index,
    lr_factor,
    make_batch,
    make_optimizer,
    prepare_data,
    resolve_budget,
    rollout_evaluation,
    run_dir,
    run_identity,
    run_train,
    save_last,
    selection_return,
    should_stop,
    train,
    train_step,
    train_transition_model,
    update_best,
    validate_config,
)
from qbc.training.checkpoint import RUN_OUTPUTS, claim_run
from qbc.training.config import (
    AUTO_PATIENCE,
    MAX_AUTO_STEPS,
    MIN_AUTO_STEPS,
    RULES,
    SELECT_BY,
    config_dict,
)
from qbc.training.evaluation import policy_obs

__all__ = [
    "AUTO_PATIENCE", "MAX_AUTO_STEPS", "MIN_AUTO_STEPS", "RULES", "RUN_OUTPUTS", "SELECT_BY",
    "OptimConfig", "SplitTensors", "TrainConfig", "TrainResult", "check_train_memory",
    "claim_run", "config_dict", "default_rollout_seed", "default_steps", "evaluate_split",
    "fit_tokenizer", "history_index", "lr_factor", "make_batch", "make_optimizer", "policy_obs",
    "prepare_data", "resolve_budget", "rollout_evaluation", "run_dir", "run_identity",
    "run_train", "save_last", "selection_return", "should_stop", "train", "train_step",
    "train_transition_model", "update_best", "validate_config",
]

if __name__ == "__main__":  # deprecated entry point: run the qbc.cli package as `qbc train`
    import runpy
    import sys

    print("qbc: `python -m qbc.train` is deprecated and will be removed in the next release; "
          "use `python -m qbc.cli train` (torchrun: `-m qbc.cli train`)", file=sys.stderr)
    sys.argv[1:1] = ["train"]
    runpy.run_module("qbc.cli", run_name="__main__", alter_sys=True)
