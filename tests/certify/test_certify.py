"""The certificate's quantities on cases with known answers, and the certify command."""

import json

import numpy as np
import pytest

from qbc.agents import make_expert
from qbc.certify.certificate import (
    bound_hypotheses,
    bound_shapes,
    certificate,
    gamma_at,
    kappa_at,
    piiss_gain,
    quantization_error,
    rtvc_violation_rate,
)
from qbc.certify.deployment import algorithm_1_deployment
from qbc.certify.result import Certificate
from qbc.cli import main
from qbc.cli.certify import format_certificate
from qbc.rollout.coupled import QuantizedExpert, coupled_rollout
from qbc.rollout.metrics import horizon_metrics
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
    printed = capsys.readouterr().out
    assert "P-IISS" in printed and "thm3: hypotheses hold" in printed
    assert "thm2: NOT shown to apply" in printed  # uniform: a deterministic q#π*
    # "hypotheses hold" says what it rests on: estimates, and assumptions that are not checked
    assert "assumed, not checked" in printed.split("thm7:")[1]
    assert "tokens changed" not in printed  # a deterministic q#π*: κ's tolerance is 2 cells
    assert cert["bound_hypotheses"]["thm7"]["hypotheses"][0]["holds"] is None
    assert main(["certify", "--dataset", "qbc/no-such-v0", "--out", str(tmp_path / "x")]) == 2


# -- smooth binning: the stochastic q#π* is the theory's object ---------------------------------
def _smooth(bins: int = 16):
    expert = make_expert("lqr", SCALAR)
    states = np.random.default_rng(0).normal(size=(2000, 1))
    actions = expert.act(states.astype(np.float32))
    return expert, states, actions, ActionTokenizer.fit(actions, quantizer="smooth", n_bins=bins)


def test_stochastic_smooth_eps_q_is_below_a_bin_width_and_above_nearest_rounding():
    _, _, actions, tok = _smooth()
    width = tok.quantizers_[0].bin_width
    draws = quantization_error(tok, actions, rng=np.random.default_rng(0))
    nearest = quantization_error(tok, actions)
    assert (draws["rounding"], nearest["rounding"]) == ("stochastic", "nearest")
    assert draws["worst_case_bound"] == pytest.approx(width)
    assert nearest["worst_case_bound"] == pytest.approx(width / 2)
    assert width / 2 < draws["in_distribution_max"] < width * (1 + 1e-5)
    # E|stochastic error| = 2 f (1 - f) w against min(f, 1 - f) w for nearest: larger on average
    assert draws["in_distribution_mean"] > 1.2 * nearest["in_distribution_mean"]
    again = quantization_error(tok, actions, rng=np.random.default_rng(0))
    assert again == draws  # seeded draws: the same numbers


def test_stochastic_smooth_rtvc_under_shared_draws_changes_tokens_at_rate_delta_over_width():
    expert, states, _, tok = _smooth()
    width = tok.quantizers_[0].bin_width
    gain = abs(float(np.asarray(expert.K).ravel()[0]))  # |du/dx| of the linear expert
    res = rtvc_violation_rate(expert, tok, states, deltas=[0.001, 0.01], eps_q=width, k=2.0,
                              n_pairs=20_000, stochastic=True)
    assert res["rounding"] == "stochastic" and res["violation_rate"] == [0.0, 0.0]
    # shared uniform draws: the token moves with probability |Δu| / w (TV-continuity)
    for delta, rate in zip(res["deltas"], res["token_change_rate"], strict=True):
        assert rate == pytest.approx(gain * delta / width, rel=0.25, abs=2e-3)


def test_stochastic_floor_rolls_out_reproducibly_and_costs_more_than_nearest_rounding():
    expert, _, _, tok = _smooth(bins=8)
    actors = {"expert": expert, "nearest": QuantizedExpert(expert, tok),
              "stochastic": QuantizedExpert(expert, tok, rng=np.random.default_rng(0)),
              "stochastic_again": QuantizedExpert(expert, tok, rng=np.random.default_rng(0))}
    m = horizon_metrics(coupled_rollout(SCALAR, actors, range(20), 100), [100])["policies"]
    regret = {name: m[name]["100"]["regret"] for name in actors if name != "expert"}
    assert regret["stochastic"] == regret["stochastic_again"]
    assert regret["stochastic"] > regret["nearest"] > 0


def test_certificate_of_smooth_measures_the_stochastic_q_sharp_and_labels_nearest():
    expert, states, actions, tok = _smooth()
    cert = certificate(SCALAR, expert, tok, states, actions, n_demos=20, sizes=[0.01, 0.1],
                       deltas=[0.001, 0.01], horizons=[10, 100], horizon=40, seeds=range(3))
    width = tok.quantizers_[0].bin_width
    assert cert["eps_q"]["rounding"] == "stochastic" and cert["rtvc"]["rounding"] == "stochastic"
    assert cert["eps_q_used"] == pytest.approx(width)
    assert cert["nearest"]["eps_q_used"] == pytest.approx(width / 2)
    hyp = cert["bound_hypotheses"]
    assert hyp["thm2"]["applies"] and hyp["thm3"]["applies"]
    assert "nearest" in hyp["thm3"]["evaluated_with"]
    assert hyp["thm7"]["applies"] is False  # deployment unknown: not shown
    assert cert["gamma_grid"].startswith("above the largest size")  # (k+1)·w > 0.1: flagged
    # κ is measured at that γ (added to the δ grid), not read off the grid's end
    assert cert["kappa_grid"] == "inside"
    assert cert["rtvc"]["deltas"] == [0.001, 0.01, cert["gamma_at_(k+1)eps_q"]]
    assert cert["kappa_at_gamma"] == cert["rtvc"]["violation_rate"][-1]
    # inside the grid too: measured there, not interpolated between its neighbours
    inside = certificate(SCALAR, expert, tok, states, actions, n_demos=20, sizes=[0.01, 0.1],
                         deltas=[0.001, 10.0], horizons=[10], horizon=40, seeds=range(3))
    gamma = inside["gamma_at_(k+1)eps_q"]
    assert inside["rtvc"]["deltas"] == [0.001, gamma, 10.0]
    assert inside["kappa_at_gamma"] == inside["rtvc"]["violation_rate"][1]
    # printed: k·ε_q is two bin widths for the stochastic q#π*, so its κ is 0 by construction;
    # the line gives the tolerance-0 token change rate beside it (not on the nearest line)
    printed = format_certificate(Certificate.from_json(
        {"env_id": SCALAR, "dataset": "d", "expert": "lqr", "expert_spec": {}, "n_demos": 20,
         "tokenizer": {"quantizer": "smooth", "vocab_size": 16}, **cert}))
    # Theorem 3 (nearest rounding for smooth) is linear in H only where κ(γ((k+1)ε_q)) is 0
    growth = next(line for line in printed.splitlines() if line.startswith("thm3's H² term"))
    near = cert["nearest"]
    assert ("linear in H" in growth) == (near["kappa"] == 0)
    doc = {"env_id": SCALAR, "dataset": "d", "expert": "lqr", "expert_spec": {}, "n_demos": 20,
           "tokenizer": {"quantizer": "smooth", "vocab_size": 16}, **cert,
           "nearest": {**near, "kappa": 0.05}}
    onset = (near["gamma"] + 3 * near["eps_q_used"] + 1 / 20) / 0.05
    assert onset >= 1
    assert f"κ(γ((k+1)ε_q)) = 0.05 > 0: the shape grows as κ·H² and that term dominates from " \
           f"H ≈ {onset:.3g} on" in format_certificate(Certificate.from_json(doc))
    # an onset below one step is not printed as a horizon: the H² term dominates at once
    big = {**near, "kappa": 2 * (near["gamma"] + 3 * near["eps_q_used"] + 1 / 20)}
    early = format_certificate(Certificate.from_json({**doc, "nearest": big}))
    assert "dominates from the first step (the linear terms over κ: 0.5 < 1)" in early
    assert "from H ≈" not in early
    # a small κ > 0 is printed as itself, not rounded to 0.000 beside "> 0"
    small = format_certificate(Certificate.from_json({**doc, "nearest": {**near, "kappa": 3e-4}}))
    assert "κ(γ((k+1)ε_q)) = 0.0003 > 0" in small and "κ there = 0.0003" in small
    assert "not shown to apply" not in small.split("thm3's H² term")[1]
    # where Theorem 3's hypotheses fail (e.g. k-means), its growth line says it is a shape only
    hyps = {**cert["bound_hypotheses"], "thm3": {**cert["bound_hypotheses"]["thm3"],
                                                  "applies": False}}
    failed = format_certificate(Certificate.from_json({**doc, "bound_hypotheses": hyps}))
    assert "Theorem 3 is not shown to apply" in failed.split("thm3's H² term")[1]
    # measured regret columns keep their whole names (two share a 16-letter prefix)
    measured = {name: {"10": 1.0, "100": 2.0}
                for name in ("quantized_expert", "quantized_expert_stochastic")}
    header = next(line for line in format_certificate(Certificate.from_json(
        {**doc, "nearest": near, "measured_regret": measured})).splitlines()
        if line.lstrip().startswith("H "))
    assert header.split()[-2:] == ["quantized_expert", "quantized_expert_stochastic"]
    kappa_lines = [line for line in printed.splitlines() if "RTVC violation rate" in line]
    assert len(kappa_lines) == 2 and cert["rtvc"]["violation_rate"][:2] == [0.0, 0.0]
    rates = ", ".join(f"{d:g}: {v:.3f}" for d, v in zip(
        cert["rtvc"]["deltas"], cert["rtvc"]["token_change_rate"], strict=True))
    assert kappa_lines[0].endswith("tokens changed (tolerance 0, shared draws): " + rates)
    assert cert["rtvc"]["token_change_rate"][-1] > 0
    assert "tokens changed" not in kappa_lines[1]


def test_bound_hypotheses_follow_the_quantizer_and_deployment():
    expert = make_expert("lqr", SCALAR)
    states = np.random.default_rng(0).normal(size=(2000, 1))
    actions = expert.act(states.astype(np.float32))
    gain = piiss_gain(SCALAR, expert, sizes=[0.01, 0.1], seeds=range(3), horizon=40)
    labels = {}
    for name in ("uniform", "kmeans"):
        tok = ActionTokenizer.fit(actions, quantizer=name, n_bins=16)
        eps = quantization_error(tok, actions)
        eps_q = eps["worst_case_bound"] or eps["in_distribution_mean"]
        rtvc = rtvc_violation_rate(expert, tok, states, deltas=[0.01], eps_q=eps_q)
        labels[name] = bound_hypotheses("nearest", eps["worst_case_bound"], gain, rtvc,
                                        model_based=(True, "sampled, never re-synced"))
    holds = {name: {thm: {h["name"]: h["holds"] for h in v["hypotheses"]}
                    for thm, v in lab.items()} for name, lab in labels.items()}
    assert labels["uniform"]["thm3"]["applies"] and not labels["uniform"]["thm2"]["applies"]
    assert holds["uniform"]["thm2"]["stochastic q#π*"] is False
    assert not labels["kmeans"]["thm3"]["applies"]
    assert holds["kmeans"]["thm3"]["binning quantizer (worst-case ε_q)"] is False
    assert holds["kmeans"]["thm3"]["kε_q-RTVC (k = 2)"] is False
    assert labels["kmeans"]["thm7"]["applies"]  # model-based deployment needs no smoothness
    unknown = bound_hypotheses("nearest", 0.1, gain, rtvc)
    assert unknown["thm7"]["hypotheses"][0]["holds"] is None and not unknown["thm7"]["applies"]


def test_tv_modulus_named_for_smooth_binning_holds_in_several_dimensions():
    # The certificate's basis for "TV-continuous q#π*": per-dimension stochastic rounding moves
    # the token law by at most Σ_d |Δu_d| / w_d in total variation; a single |Δu| / w (one
    # dimension's modulus) is exceeded once two dimensions move together.
    from qbc.quantizers import make_quantizer

    q = make_quantizer("smooth", n_bins=9).fit(np.linspace(-1.0, 1.0, 50))
    w = q.bin_width
    u, moved = np.array([0.1, -0.3]), np.array([0.1, -0.3]) + 0.3 * w
    law = [np.outer(*q.soft_targets(x)) for x in (u, moved)]  # product of the two dimensions
    tv = 0.5 * np.abs(law[0] - law[1]).sum()
    assert np.abs(moved - u).max() / w < tv <= np.abs(moved - u).sum() / w + 1e-9
    gain = {"gains": [0.1], "exponential": True}
    rtvc = {"deltas": [0.01], "violation_rate": [0.0], "k": 2.0}
    how = {h["name"]: h["how"] for h in bound_hypotheses("stochastic", w, gain, rtvc)["thm2"][
        "hypotheses"]}
    assert "Σ_d |Δu_d|/w_d" in how["TV-continuous q#π*"]


def test_kappa_outside_the_delta_grid_is_flagged_not_clamped_silently():
    rtvc = {"deltas": [0.01, 0.1], "violation_rate": [0.0, 0.5]}
    assert kappa_at(rtvc, 0.055) == (pytest.approx(0.25), "inside")
    value, where = kappa_at(rtvc, 1.0)
    assert value == 0.5 and where.startswith("above the largest δ") and "lower value" in where
    value, where = kappa_at(rtvc, 0.001)
    assert value == 0.0 and where.startswith("below the smallest δ") and "upper value" in where
    assert kappa_at(rtvc, float("inf"))[1].startswith("above")


def test_only_a_sampled_never_resynced_model_run_is_algorithm_1():
    run = ["expert", "policy", "policy_model_based"]
    mean = algorithm_1_deployment(run, {"model_sample": False, "resync_every": 0})
    resynced = algorithm_1_deployment(run, {"model_sample": True, "resync_every": 5})
    sampled = algorithm_1_deployment(run, {"model_sample": True, "resync_every": 0})
    assert mean[0] is False and "--model-sample" in mean[1]
    assert resynced[0] is False and "every 5 steps" in resynced[1]
    assert sampled[0] is True
    assert algorithm_1_deployment(["expert", "policy"], {"model_sample": True})[0] is False
    assert algorithm_1_deployment(run, None)[0] is None  # a config.json that says nothing
    assert algorithm_1_deployment(run, {"model_sample": "yes", "resync_every": 0})[0] is None
    assert algorithm_1_deployment(None, None) == (None, "no rollout given")


def test_gamma_between_unsorted_sizes_is_interpolated_not_extrapolated():
    gain = {"sizes": [0.3, 0.01], "gains": [0.6, 0.01], "power_fit": {"slope": 1.2}}
    value, where = gamma_at(gain, 0.1)
    assert where == "inside"
    assert value == pytest.approx(np.exp(np.interp(np.log(0.1), np.log([0.01, 0.3]),
                                                   np.log([0.01, 0.6]))))
    assert gamma_at(gain, 0.001)[1].startswith("below the smallest size (0.01)")


def test_sizes_that_end_episodes_and_deltas_past_float32_are_handled(tmp_path, capsys):
    # --sizes 1e11: infinite gains (episodes ended early) made writing certificate.json an
    # internal error; --deltas 1e308: the expert's NaN actions were blamed on the dataset
    assert main(["collect", "--env", "qbc/LinearUnstable-v0", "--episodes", "4", "--num-envs",
                 "4", "--max-episode-steps", "20", "--dataset", "qbc/cert-huge-v0"]) == 0
    flags = ["certify", "--dataset", "qbc/cert-huge-v0", "--bins", "8", "--episodes", "3"]
    assert main([*flags, "--out", str(tmp_path / "c"), "--sizes", "0.1,1e11"]) == 0
    cert = json.loads((tmp_path / "c" / "certificate.json").read_text())
    assert cert["piiss"]["gains"][1] is None and cert["piiss"]["gains"][0] > 0
    capsys.readouterr()
    assert main([*flags, "--out", str(tmp_path / "d"), "--deltas", "0.1,1e308"]) == 2
    assert "--deltas 1e+308 moves the states past float32's range" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
