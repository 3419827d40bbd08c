"""Shared test set-up: datasets and outputs go to temporary folders, plots render off-screen."""

import os

import matplotlib
import pytest
import torch
from hypothesis import settings

# Fixed example sequences: the fuzz tests search the same inputs on every run and machine, so CI
# cannot fail on an input nobody has seen. Set HYPOTHESIS_PROFILE=explore to search afresh.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

matplotlib.use("Agg")
# The test models are tiny: one thread is faster than two and cannot oversubscribe the CI cores.
torch.set_num_threads(1)


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
