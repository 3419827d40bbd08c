"""Settings that used to be accepted and silently ignored or misapplied are refused up front:
--range-margin with a quantizer that has no fitted range, --dart auto with a policy of another
env, boolean arrays given as actions."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import TINY_MODEL

from qbc.cli import main
from qbc.data import dataset_exists
from qbc.data.collect import CollectConfig, collect
from qbc.errors import InvalidValueError
from qbc.quantizers import make_quantizer
from qbc.quantizers.binning import quantile_params
from qbc.tokenizer import ActionTokenizer


@pytest.mark.parametrize("quantizer", ["kmeans", "lloyd_max", "sign"])
def test_range_margin_with_a_quantizer_that_ignores_it_is_refused(quantizer):
    with pytest.raises(InvalidValueError, match="--range-margin"):
        quantile_params(quantizer, 0.0, 0.5)
    assert quantile_params(quantizer, 0.0, 0.0) == {}
    assert quantile_params("uniform", 0.0, 0.5) == {"quantile": 0.0, "margin": 0.5}


def test_train_refuses_range_margin_with_kmeans_before_reading_anything(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "test/none-v0", "--quantizer", "kmeans",
                 "--range-margin", "0.5", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--range-margin" in err and "'kmeans' would ignore it" in err, err
    assert not out.exists()


@pytest.mark.slow
def test_dart_auto_refuses_a_policy_of_another_env(tmp_path, capsys):
    from qbc.data import load_demonstrations
    from qbc.policy import ModelConfig
    from qbc.training import TrainConfig, train

    collect(CollectConfig(env="qbc/ScalarStable-v0", dataset_id="test/s-v0", episodes=4,
                          num_envs=2, max_episode_steps=10, progress=False))
    train(TrainConfig(dataset="test/s-v0", out=tmp_path / "run", bins=8, steps=4,
                      batch_size=16, eval_interval=2, warmup_steps=1, progress=False,
                      rollout_episodes=0, model=ModelConfig(**TINY_MODEL)),
          load_demonstrations("test/s-v0"))
    # the same shapes (obs (1,), action (1,)), another env
    assert main(["collect", "--env", "qbc/ScalarUnstable-v0", "--dataset", "test/d-v0",
                 "--episodes", "2", "--max-episode-steps", "10", "--dart", "auto", "--policy",
                 str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "was trained on qbc/ScalarStable-v0, not qbc/ScalarUnstable-v0" in err, err
    assert not dataset_exists("test/d-v0")


def test_boolean_actions_are_refused_by_tokenizers_and_quantizers():
    flags = np.random.default_rng(0).random((50, 2)) > 0.5
    with pytest.raises(InvalidValueError, match="dtype bool"):
        ActionTokenizer("uniform", n_bins=8).fit(flags)
    fitted = ActionTokenizer("uniform", n_bins=8).fit(flags.astype(np.float32))
    with pytest.raises(InvalidValueError, match="dtype bool"):
        fitted.encode(flags)
    with pytest.raises(InvalidValueError, match="dtype bool"):
        make_quantizer("uniform", n_bins=8).fit(flags[:, 0])
