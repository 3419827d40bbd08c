"""Shared test set-up: datasets and outputs go to temporary folders, plots render off-screen."""

import os
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from hypothesis import settings
from in_process import run_child, run_cli
from tiny import TINY_MODEL, TINY_MODEL_FLAGS, copy_tiny_lin_run

# The suite starts fresh interpreters (CLI smoke tests, torchrun ranks, sweep and Ray workers):
# with PYTHONDONTWRITEBYTECODE set, as on some CI machines, each would compile qbc's ~200 modules
# from source again. Compiled files are written (to the ignored __pycache__ folders) and read.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Fixed example sequences: the fuzz tests search the same inputs on every run and machine, so CI
# cannot fail on an input nobody has seen. Set HYPOTHESIS_PROFILE=explore to search afresh.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

matplotlib.use("Agg")
# The test models are tiny: one thread is faster than two and cannot oversubscribe the CI cores
# (the suite runs one pytest worker per core). The commands the tests start in fresh
# interpreters (subprocesses, torchrun, sweep and Ray workers) inherit one thread too.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


# -- the order in which test files start -------------------------------------------------------
#: The files that take longest (over ~2.5 s each in a full run on 2 cores, longest first), by name
#: (whichever folder of tests/ the file sits in; names are unique across folders). pytest-xdist
#: hands whole files to its workers in collection order (pyproject: --dist loadfile
#: --no-loadscope-reorder), so these start first and the many short files fill in at the end;
#: otherwise a long file that starts last keeps one core busy while the other waits. Only the
#: order changes, and only between files.
LONGEST_FILES = ("test_sweep.py", "test_augment.py", "test_ddp_chunked.py", "test_ddp.py",
                 "test_fuzz_more_loaders.py", "test_learner_vs_floor.py", "test_reproduce.py",
                 "test_round_three_leftovers.py", "test_fuzz_loaders.py", "test_dagger.py",
                 "test_multimodal_ledger.py", "test_chunking_report.py", "test_train.py",
                 "test_compressive.py", "test_eval_path.py", "test_reproducibility.py",
                 "test_crash_safety.py", "test_sweep_chunk_defaults.py", "test_chunk_policy.py",
                 "test_expert_zoo.py", "test_refusals.py", "test_rollout.py", "test_docs_site.py",
                 "test_video.py", "test_robotics.py", "test_quickstart.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of :data:`LONGEST_FILES` first, in that order; the others after them in their
    collected order (the sort is stable: the tests of one file keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# -- tiny things to train on, shared -----------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model():
    """The smallest transformer the tests train (``tiny.TINY_MODEL``) as a ModelConfig."""
    from qbc.policy import ModelConfig

    return ModelConfig(**TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_model_flags() -> list[str]:
    """The same model as flags of ``qbc train`` (``tiny.TINY_MODEL_FLAGS``)."""
    return list(TINY_MODEL_FLAGS)


TINY_LIN_DATASET = "qbc/lin-v0"


@pytest.fixture(scope="session")
def tiny_lin_run(tmp_path_factory) -> Path:
    """Made once per session, read-only: a folder holding ``minari/`` with the dataset
    qbc/lin-v0 (4 episodes of 20 steps of qbc/LinearUnstable-v0 by its default expert) and
    ``run/``, a tiny policy trained on it (8 bins, 4 steps, no closing rollout). Copy it into
    a test's own folder with :func:`tiny.copy_tiny_lin_run` before using it."""
    from qbc.data import load_demonstrations
    from qbc.data.collect import CollectConfig, collect
    from qbc.policy import ModelConfig
    from qbc.training import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny_lin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
        collect(CollectConfig(env="qbc/LinearUnstable-v0", dataset_id=TINY_LIN_DATASET,
                              episodes=4, num_envs=4, max_episode_steps=20))
        train(TrainConfig(dataset=TINY_LIN_DATASET, out=root / "run", bins=8, steps=4,
                          batch_size=16, eval_interval=2, warmup_steps=1, progress=False,
                          rollout_episodes=0, model=ModelConfig(**TINY_MODEL)),
              load_demonstrations(TINY_LIN_DATASET))
    return root


@pytest.fixture(scope="session")
def tiny_lin_copy(tiny_lin_run):
    """:func:`tiny.copy_tiny_lin_run` bound to the session's tiny run: ``tiny_lin_copy(root)``."""
    return lambda root: copy_tiny_lin_run(tiny_lin_run, Path(root))


@pytest.fixture(scope="session")
def transition_folder(tmp_path_factory) -> Path:
    """Made once per session, read-only: a tiny transition model's folder
    (``qbc.rollout.augment.save_transition_model``: transition.json + transition.safetensors),
    fitted for 2 steps on 64 random transitions (obs (64, 3), actions (64, 2), 8 uniform bins).
    Copy it before changing it."""
    import numpy as np

    from qbc.rollout.augment import (
        TransitionModelConfig,
        fit_transition_model,
        save_transition_model,
    )
    from qbc.tokenizer import ActionTokenizer

    rng = np.random.default_rng(0)
    obs, act = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
    tok = ActionTokenizer.fit(act, quantizer="uniform", n_bins=8)
    model = fit_transition_model(obs, act, obs + 0.1 * act.sum(1, keepdims=True), tok,
                                 TransitionModelConfig(steps=2, hidden=16), progress=False)
    return save_transition_model(model, tmp_path_factory.mktemp("tm") / "tm")


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, then the count it had before (tiny models run fastest
    on one thread, and the test machine's cores are shared)."""
    from qbc.infra.environ import scoped_threads

    with scoped_threads(1):
        yield


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test gets its own Minari dataset folder, so no test sees another's datasets."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    os.makedirs(tmp_path / "minari", exist_ok=True)
    yield


# -- the command line, in-process (tests/in_process.py) -----------------------------------------
@pytest.fixture(scope="session")
def cli():
    """:func:`run_cli`: ``cli(["train", ...], cwd=..., env=...)`` -> CliResult(returncode,
    stdout, stderr), the command run in this process (no interpreter start-up per row)."""
    return run_cli


@pytest.fixture
def children_in_process(monkeypatch):
    """The experiment drivers' child commands (``python -m qbc.cli ...``, ``python
    scripts/X.py ...``) run in this process (:func:`in_process.run_child`), not in fresh
    interpreters; tests/infra/test_child_processes.py keeps the real subprocesses covered."""
    import qbc.experiments.learner_vs_floor.plan as floor_plan
    import qbc.experiments.reproduce as reproduce

    for module in (floor_plan, reproduce):
        monkeypatch.setattr(module, "run_command", run_child)
