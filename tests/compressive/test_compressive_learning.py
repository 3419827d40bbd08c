"""Learners, datasets, the experiment grid and the `qbc compressive run` command."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from qbc.cli import main
from qbc.cli.compressive import CompressiveConfig, resolve
from qbc.compressive import (
    GaussianProjection,
    InnerProductEstimator,
    compare_quantizers,
    fit_score,
    make_split,
    projection_quantizer,
    run_grid,
    summarize,
)
from qbc.compressive.datasets import synthetic
from qbc.compressive.learners import nearest_neighbour_predict
from qbc.errors import InvalidValueError, UnknownNameError


def test_nn_by_raw_inner_product_equals_nn_by_debiased_cosine():
    x, y = synthetic("classification", n=300, d=64, seed=1)
    q = projection_quantizer("uniform", 2)
    z = q.quantize(GaussianProjection(k=32, seed=0).fit(x).transform(x))
    train, test, y_train = z[:200], z[200:], y[:200]
    est = InnerProductEstimator(q)
    cos = est.debias(est.raw(test[:, None, :], train[None, :, :]))  # (100, 200)
    np.testing.assert_array_equal(nearest_neighbour_predict(train, y_train, test),
                                  y_train[np.argmax(cos, axis=1)])


def test_learners_on_easy_problems():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    labels = (x[:, 0] > 0).astype(np.int64)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert fit_score("nn", xn, labels, xn, labels) == 1.0  # each unit row is its own neighbour
    assert fit_score("linear", x[:150], labels[:150], x[150:], labels[150:]) > 0.9
    w = rng.standard_normal(8)
    assert fit_score("ls", x[:150], x[:150] @ w, x[150:], x[150:] @ w) < 1e-20
    with pytest.raises(UnknownNameError):
        fit_score("svm", x, labels, x, labels)


def test_synthetic_is_high_similarity():
    x, y = synthetic("classification", n=400, d=256, within_cosine=0.8, seed=0)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = xn @ xn.T
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    assert cos[same].mean() == pytest.approx(0.8, abs=0.03)
    assert abs(cos[y[:, None] != y[None, :]].mean()) < 0.05


def test_split_preprocessing():
    s = make_split("diabetes", "regression", test_fraction=0.25, seed=0)
    assert s.x_train.dtype == np.float32 and s.x_train.shape[1] == 10
    assert len(s.y_test) == pytest.approx(0.25 * 442, abs=1)
    assert s.y_train.mean() == pytest.approx(0, abs=1e-5) and s.y_train.std() == pytest.approx(1)
    with pytest.raises(InvalidValueError, match="regression"):
        make_split("digits", "regression")
    with pytest.raises(UnknownNameError):
        make_split("mnist", "classification")


def test_grid_rows_summary_and_paired_comparison():
    split = make_split("diabetes", "regression")
    rows = run_grid(split, "ls", [1, 3, "full"], [16], ["lloyd_max", "uniform"], [0, 1, 2],
                    progress=False)
    assert len(rows) == 3 * (2 * 2 + 1)
    summary = {(s["quantizer"], s["bits"]): s for s in summarize(rows)}
    # Unquantized projections (k=16 >= d=10) span the same space for every seed: least squares
    # gives the same predictions, hence zero spread over seeds; quantized ones depend on the seed.
    assert summary[("none", "full")]["std"] < 1e-6
    assert summary[("lloyd_max", "3")]["std"] > 1e-3
    # Every learner beats the mean predictor (MSE 1 on the standardised target).
    assert all(s["mean"] < 0.8 for s in summary.values())
    s = summary[("uniform", "3")]
    assert s["n"] == 3 and s["ci_low"] <= s["mean"] <= s["ci_high"]
    winners = {w["bits"]: w for w in compare_quantizers(rows)}
    assert winners["1"]["winner"] == "tie"  # both 1-bit quantizers are the same sign quantizer
    assert winners["3"]["winner"] in ("lloyd_max", "uniform")


def test_resolve_accepts_commas_and_spaces():
    grid = resolve(CompressiveConfig(bits=("1,2", "full"), k=("32,16",), quantizer=("uniform",),
                                     seeds=2, first_seed=5))
    assert grid["bits"] == ["1", "2", "full"] and grid["ks"] == [16, 32]
    assert grid["seeds"] == [5, 6] and grid["task"] == "classification"
    with pytest.raises(InvalidValueError, match="bits"):
        resolve(CompressiveConfig(bits=("1,two",)))
    with pytest.raises(UnknownNameError):
        resolve(CompressiveConfig(quantizer=("lloyd",)))


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["compressive", "run", "--dataset", "digits", "--model", "nn", "--bits", "1,2,full",
            "--k", "8,16", "--quantizer", "lloyd_max,uniform", "--seeds", "2", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "k=16" in printed and "full" in printed
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * (2 * 2 + 1)
    assert {r["quantizer"] for r in rows} == {"lloyd_max", "uniform", "none"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["ks"] == [8, 16] and config["model"] == "nn"
    for name in ("summary.csv", "summary.json", "accuracy_vs_bits.png", "accuracy_vs_k.png"):
        assert (out / name).stat().st_size > 0
    # An existing output directory is refused without --overwrite (exit code 2, one line).
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_cli_user_errors(tmp_path, capsys):
    base = ["compressive", "run", "--k", "8", "--seeds", "1", "--no-plots", "--no-progress"]
    assert main([*base, "--dataset", "digits", "--model", "ls", "--out", str(tmp_path / "a")]) == 2
    assert "regression" in capsys.readouterr().err
    assert main([*base, "--quantizer", "nope", "--out", str(tmp_path / "b")]) == 2
    assert "unknown quantizer" in capsys.readouterr().err
