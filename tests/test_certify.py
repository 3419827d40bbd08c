"""The certificate's quantities on cases with known answers, and the certify command."""

import json

import numpy as np
import pytest

from qbc.agents import make_expert
from qbc.certify import bound_shapes, piiss_gain, quantization_error, rtvc_violation_rate
from qbc.cli import main
from qbc.tokenizer import ActionTokenizer

SCALAR = "qbc/ScalarStable-v0"


def test_piiss_gain_of_a_scalar_linear_closed_loop_matches_the_closed_form():
    # e' = a_cl e + r while perturbed: the gap rises to r (1 - a_cl^T)/(1 - a_cl) ≈ r/(1 - a_cl)
    # and then decays geometrically with rate a_cl.
    expert = make_expert("lqr", SCALAR)
    a_cl = 0.5 - float(np.asarray(expert.K).ravel()[0])
    res = piiss_gain(SCALAR, expert, sizes=[0.01, 0.1], seeds=range(5), horizon=60)
    for r, g in zip(res["sizes"], res["gains"], strict=True):
        assert g == pytest.approx(r / (1 - a_cl), rel=1e-3)
    assert res["power_fit"] is None or abs(res["power_fit"]["slope"] - 1) < 1e-3
    assert res["exponential"]
    assert res["gap_decay_rate_per_step"][0] == pytest.approx(abs(a_cl), rel=1e-2)


def test_piiss_flags_an_unstable_closed_loop():
    expert = make_expert("linear", "qbc/ScalarUnstable-v0", gain_scale=0.3)
    res = piiss_gain("qbc/ScalarUnstable-v0", expert, sizes=[0.1], seeds=range(3), horizon=200)
    assert not res["exponential"]


def test_binning_is_rtvc_and_kmeans_is_not():
    expert = make_expert("lqr", SCALAR)
    states = np.random.default_rng(0).normal(size=(2000, 1))
    actions = expert.act(states.astype(np.float32))
    for name, expect_small in (("uniform", True), ("kmeans", False)):
        tok = ActionTokenizer.fit(actions, quantizer=name, n_bins=16)
        eps = quantization_error(tok, actions)
        eps_q = eps["worst_case_bound"] or eps["in_distribution_mean"]
        res = rtvc_violation_rate(expert, tok, states, deltas=[0.01], eps_q=eps_q, k=2.0)
        if expect_small:
            assert res["violation_rate"][0] == 0.0
        else:
            assert res["violation_rate"][0] > 0.0


def test_bound_shapes_grow_as_the_theorems_say():
    b = bound_shapes([10, 100, 1000], n_demos=100, eps_q=0.01, gamma=0.02, kappa=0.0, k=2)
    thm3, thm7, thm2 = (np.array(b[k]) for k in ("thm3", "thm7", "thm2"))
    assert thm3[2] / thm3[1] == pytest.approx(10.0)  # κ = 0: linear in H
    assert thm7[2] / thm7[1] == pytest.approx(10.0)
    assert thm2[2] / thm2[1] > 50  # the H² ε_q term dominates


def test_certify_command(tmp_path, capsys):
    assert main(["collect", "--env", SCALAR, "--expert", "lqr", "--episodes", "20",
                 "--num-envs", "20", "--dataset", "qbc/cert-test-v0"]) == 0
    out = tmp_path / "cert"
    assert main(["certify", "--dataset", "qbc/cert-test-v0", "--out", str(out), "--bins", "8",
                 "--episodes", "5", "--horizon", "50", "--horizons", "10,100"]) == 0
    cert = json.loads((out / "certificate.json").read_text())
    assert cert["eps_q"]["worst_case_bound"] > 0
    assert cert["piiss"]["exponential"] and len(cert["bound_shapes"]["thm3"]) == 2
    assert "P-IISS" in capsys.readouterr().out
    assert main(["certify", "--dataset", "qbc/no-such-v0", "--out", str(tmp_path / "x")]) == 2
