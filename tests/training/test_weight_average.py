"""--ema-decay: the averaged weights are what a run validates and saves as best/, the average
follows its warm-up rule, and --resume continues the same average."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from tiny import smooth_demos

from qbc.errors import InvalidValueError
from qbc.policy import ModelConfig
from qbc.training import TrainConfig, train
from qbc.training.averaging import TENSOR_PREFIX, WeightAverage
from qbc.training.config import validate_config


def _cfg(tmp_path, name, **kw):
    base = dict(dataset="synthetic", out=tmp_path / name, bins=16, steps=12, batch_size=32,
                eval_interval=4, warmup_steps=3, progress=False, rollout_episodes=0,
                select_by="val-loss", ema_decay=0.9,
                model=ModelConfig(d_model=32, n_heads=2, hidden=64))
    return TrainConfig(**{**base, **kw})


def test_the_average_warms_up_and_then_keeps_its_decay():
    layer = torch.nn.Linear(1, 1, bias=False)
    avg = WeightAverage(layer, decay=0.95)
    assert [avg.decay_after(n) for n in (0, 1, 10)] == pytest.approx([0.1, 2 / 11, 11 / 20])
    assert avg.decay_after(10_000) == 0.95
    values = [1.0, 3.0, 5.0]
    expected = values[0]  # the first update copies
    for i, v in enumerate(values):
        with torch.no_grad():
            layer.weight.fill_(v)
        avg.update(layer)
        if i:
            d = avg.decay_after(i)
            expected = d * expected + (1 - d) * v
    assert avg.module.weight.item() == pytest.approx(expected)
    assert layer.weight.item() == 5.0  # the trained module is not touched


def test_best_is_the_average_and_last_keeps_both(tmp_path):
    demos = smooth_demos(episodes=6, steps=20)
    # one evaluation at the last step: best/ and last/ are of the same step
    train(_cfg(tmp_path, "avg", eval_interval=12), demos)
    best = load_file(str(tmp_path / "avg" / "best" / "model.safetensors"))
    raw = load_file(str(tmp_path / "avg" / "last" / "model.safetensors"))
    shadow = load_file(str(tmp_path / "avg" / "last" / "trainer.safetensors"))
    params = [k for k in best if TENSOR_PREFIX + k in shadow]  # (buffers are not averaged)
    assert len(params) > 10
    assert all(torch.equal(best[k], shadow[TENSOR_PREFIX + k]) for k in params)
    assert not all(torch.equal(best[k], raw[k]) for k in params)
    assert int(shadow[TENSOR_PREFIX + "n_averaged"]) == 12
    # without averaging best/ is the trained weights of that step
    train(_cfg(tmp_path, "plain", eval_interval=12, ema_decay=0.0), demos)
    best = load_file(str(tmp_path / "plain" / "best" / "model.safetensors"))
    raw = load_file(str(tmp_path / "plain" / "last" / "model.safetensors"))
    assert all(torch.equal(best[k], raw[k]) for k in best)
    assert not any(k.startswith(TENSOR_PREFIX) for k in
                   load_file(str(tmp_path / "plain" / "last" / "trainer.safetensors")))


def test_resume_continues_the_same_average(tmp_path):
    demos = smooth_demos(episodes=6, steps=20)
    full = train(_cfg(tmp_path, "full"), demos)
    cut = _cfg(tmp_path, "cut")
    train(cut, demos, stop_at=6)
    resumed = train(replace(cut, resume=True), demos)
    by_step = {m["step"]: m for m in full.metrics}
    after = [m for m in resumed.metrics if m["step"] in (8, 12)]  # after the restart
    assert len(after) == 2
    for m in after:  # validation reads the average: equal only if it was restored
        assert m["val_loss"] == pytest.approx(by_step[m["step"]]["val_loss"], rel=1e-6)
    a = load_file(str(tmp_path / "full" / "last" / "trainer.safetensors"))
    b = load_file(str(tmp_path / "cut" / "last" / "trainer.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith(TENSOR_PREFIX))


def test_bad_decays_and_an_average_of_ste_weights_are_refused():
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(InvalidValueError, match="ema.decay"):
            validate_config(TrainConfig(dataset="qbc/x-v0", ema_decay=bad))
    with pytest.raises(InvalidValueError, match="--weight-quantizer"):
        validate_config(TrainConfig(dataset="qbc/x-v0", ema_decay=0.99, weight_quantizer="bc"))
