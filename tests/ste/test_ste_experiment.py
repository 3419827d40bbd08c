"""The two-layer STE experiment (model, dynamics, N50 fit) and the three `qbc ste` commands on
tiny configurations."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from qbc.cli import main
from qbc.cli.ste import run_recover
from qbc.errors import InvalidValueError, OutputExistsError
from qbc.ste.recover import RecoverConfig, crossing, fit_exponent
from qbc.ste.recurrence import count_returns
from qbc.ste.twolayer import TwoLayerModel, make_problem, recovery_trials, run_ste


def test_population_ste_gradient_matches_the_closed_form():
    # E[Zᵀv vᵀσ(Zq)] − E[Zᵀv vᵀσ(Zw*)] = sqrt(2/(πn))·‖v‖²·(q − w*) for σ = sign
    model = TwoLayerModel(m=4, v="uniform")
    n, N = 6, 200_000
    p = make_problem(model, n, N, trials=1, seed=0)
    q = p.w_star.clone()
    q[0, :2] *= -1
    h = torch.where(torch.bmm(p.Z, q[:, :, None]) >= 0, 1.0, -1.0).view(1, N, model.m)
    r = (h * p.v[:, None]).sum(-1) - p.y
    g = torch.bmm(r[:, None], p.U)[0, 0] / N
    expected = math.sqrt(2 / (math.pi * n)) * float(p.v.norm() ** 2) * (q - p.w_star)[0]
    # standard error of each coordinate is about 0.01 here; 0.05 is five of them
    assert torch.allclose(g, expected, atol=0.05), (g, expected)


def test_noiseless_w_star_is_a_fixed_point_and_large_N_recovers():
    model = TwoLayerModel(m=4, iters=200)
    p = make_problem(model, 10, 400, trials=6, seed=1)
    p.w0 = p.w_star * 0.3
    run = run_ste(model, p)
    assert torch.equal(run.w_last, p.w0)  # zero gradient at w*: never moves
    assert run.recovered_last.all() and run.recovered_ergodic.all()
    erg, last = recovery_trials(model, 10, 400, trials=12, seed=2)
    assert last.mean() >= 0.9
    # with lr = 0.1 the ergodic average still carries the transient; with lr = 1 it does not
    erg, last = recovery_trials(dataclasses.replace(model, lr=1.0), 10, 400, trials=12, seed=2)
    assert last.mean() >= 0.9 and erg.mean() >= 0.9


def test_too_few_samples_do_not_recover():
    erg, last = recovery_trials(TwoLayerModel(m=4, iters=100), 24, 4, trials=12, seed=3)
    assert last.mean() <= 0.1 and erg.mean() <= 0.1


def test_problems_are_seeded_and_noise_levels_share_data():
    model = TwoLayerModel(m=3)
    a, b = make_problem(model, 5, 7, 2, seed=4), make_problem(model, 5, 7, 2, seed=4)
    assert torch.equal(a.Z, b.Z) and torch.equal(a.y, b.y)
    noisy = make_problem(dataclasses.replace(model, noise=0.5), 5, 7, 2, seed=4)
    assert torch.equal(noisy.Z, a.Z) and torch.equal(noisy.w0, a.w0)
    assert not torch.equal(noisy.y, a.y)


@pytest.mark.parametrize("change", [{"inputs": "exponential", "normalize": True},
                                    {"activation": "step", "v": "rademacher"},
                                    {"init": "zeros", "lr_scaling": "none", "lr": 0.01}])
def test_model_options_run(change):
    model = TwoLayerModel(m=3, iters=20, **change)
    run = run_ste(model, make_problem(model, 6, 30, 3, seed=5), record=True)
    assert run.hamming.shape == (3, 20) and np.isfinite(run.loss).all()


def test_bad_model_options_raise():
    with pytest.raises(InvalidValueError, match="activation"):
        TwoLayerModel(activation="relu").validate()
    with pytest.raises(InvalidValueError):
        TwoLayerModel(lr=0).validate()


def test_crossing_and_exponent():
    N = np.array([4, 8, 16, 32, 64])
    assert crossing(N, np.array([0.0, 0.2, 0.8, 1.0, 1.0])) == pytest.approx(
        np.exp(np.log(8) + 0.5 * np.log(2)))
    assert math.isnan(crossing(N, np.array([0.0, 0.1, 0.2, 0.3, 0.4])))
    # non-monotone noise is smoothed before the crossing is read
    assert 7.99 <= crossing(N, np.array([0.0, 0.6, 0.4, 1.0, 1.0])) <= 16
    slope, _ = fit_exponent({8: 3 * 8**1.5, 16: 3 * 16**1.5, 32: 3 * 32**1.5})
    assert slope == pytest.approx(1.5)


def test_count_returns():
    ham = np.array([[3, 0, 0, 1, 0, 2, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    assert count_returns(ham, np.array([False, True, False])).tolist() == [3, 0, 0]


@pytest.mark.slow
def test_recover_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "rec"
    cfg = RecoverConfig(out=out, n=(6, 10), ratios=(0.5, 1, 2, 4, 8), trials=8, bootstrap=20,
                        model=TwoLayerModel(m=4, iters=60))
    summary = run_recover(cfg)
    for name in ("recovery.csv", "n50.csv", "summary.json", "config.json", "recovery_vs_N.png",
                 "recovery_vs_N_over_n2.png", "n50_vs_n.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["model"]["m"] == 4
    assert "exponent" in capsys.readouterr().out
    assert summary["last"]["n50"]["6"] is not None
    with pytest.raises(OutputExistsError):
        run_recover(cfg)


@pytest.mark.slow
def test_cli_commands_end_to_end(tmp_path, capsys):
    rc = main(["ste", "recurrence", "--out", str(tmp_path / "rc"), "--n", "8", "--N", "40",
               "--noise", "0", "0.3", "--trials", "2", "--model.m", "8", "--model.iters", "150"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "returns" in text and (tmp_path / "rc" / "recurrence.png").is_file()
    rows = (tmp_path / "rc" / "recurrence.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    rc = main(["ste", "benchmark", "--out", str(tmp_path / "bm"), "--methods", "fp", "bc",
               "bnn++", "--seeds", "0", "--epochs", "2", "--hidden", "32"])
    assert rc == 0
    table = (tmp_path / "bm" / "table.csv").read_text()
    assert "bnn++" in table
    assert "True" in table.splitlines()[2]  # bc deployed with exactly ±1 weights
    # existing output without --overwrite: one-line error, exit code 2
    assert main(["ste", "benchmark", "--out", str(tmp_path / "bm"), "--epochs", "1"]) == 2
    assert main(["ste", "recover", "--out", str(tmp_path / "x"), "--model.v", "nope"]) == 2
