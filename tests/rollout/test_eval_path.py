"""One evaluation path and typed results (issue 31): :func:`qbc.rollout.evaluate.evaluate_actors`
measures actors held in memory exactly as a coupled rollout + horizon metrics did;
``DaggerRound`` and ``Certificate`` give back the files they were read from; ``qbc rollout`` and
``qbc dagger`` take ``--config FILE`` (a run's saved config or TOML), flags overriding, a bad
file refused in one line before anything is written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_MODEL_FLAGS

import qbc  # noqa: F401  (registers the qbc/ envs)
from qbc.agents import make_expert
from qbc.certify.result import Certificate
from qbc.interactive.rounds import ROUND_FIELDS, DaggerRound
from qbc.rollout.coupled import QuantizedExpert, coupled_rollout
from qbc.rollout.evaluate import evaluate_actors
from qbc.rollout.metrics import horizon_metrics
from qbc.tokenizer import ActionTokenizer

ENV = "qbc/ScalarUnstable-v0"


# -- evaluate_actors --------------------------------------------------------------------------
def _actors(low: float, high: float, seed: int) -> dict:
    """The LQR expert, its quantized expert on a grid over [low, high] (actions outside it are
    clipped) and a stochastic-rounding one drawing from ``seed``."""
    expert = make_expert("lqr", ENV)
    tok = ActionTokenizer.fit(np.linspace(low, high, 50)[:, None], quantizer="smooth", n_bins=8)
    return {"expert": expert, "quantized_expert": QuantizedExpert(expert, tok),
            "stochastic": QuantizedExpert(expert, tok, rng=np.random.default_rng(seed))}


@pytest.mark.parametrize("num_envs", [None, 3])
def test_evaluate_actors_measures_what_the_coupled_rollout_did(num_envs):
    direct = coupled_rollout(ENV, _actors(-1, 1, 7), range(100, 107), 30, num_envs=num_envs)
    want = horizon_metrics(direct, [10, 30])
    report = evaluate_actors(ENV, _actors(-1, 1, 7), 100, 7, [30, 10], num_envs=num_envs)
    assert report.horizons == [10, 30] and report.reference == "expert"
    assert report.policies == want["policies"]  # bit for bit, stochastic rounding included
    for name in direct.names:
        assert np.array_equal(report.result.observations[name], direct.observations[name])
    assert report.coupling is None and report.expert is None
    assert set(report.growth) == {"quantized_expert", "stochastic"}


def test_evaluate_actors_counts_clipped_actions_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the caller reports; evaluate_actors stays quiet
        report = evaluate_actors(ENV, _actors(-1e-3, 1e-3, 0), 0, 4, [20])
    counts = report.clipped_actions["quantized_expert"]
    assert 0 < counts["clipped"] <= counts["values"] == 4 * 20


def test_evaluate_actors_against_another_reference():
    report = evaluate_actors(ENV, {"policy": make_expert("lqr", ENV)}, 5, 3, [15],
                             reference="policy")
    assert report.reference == "policy" and report.growth == {}
    assert report.policies["policy"]["15"]["regret"] == 0.0


# -- typed results ----------------------------------------------------------------------------
def _round(**kw) -> dict:
    row = {"round": 1, "beta": 0.75, "episodes": 3, "steps": 36, "expert_labels": 72,
           "dataset": "dagger/run/round-1-v0", "val_loss": 1.25, "regret": 0.5,
           "regret_ci_lo": 0.25, "regret_ci_hi": 0.75, "diverged_fraction": 0.0,
           "floor_regret": 0.125, "floor_diverged_fraction": 0.0, "expert_return": -3.5,
           "success": None, "success_ci_lo": None, "success_ci_hi": None,
           "policy": "round-1/best"}
    return {**row, **kw}


def test_a_dagger_round_is_its_rounds_csv_row():
    row = _round()
    r = DaggerRound.from_json(row)
    assert list(r.to_json()) == ROUND_FIELDS and r.to_json() == row
    assert r["regret"] == r.regret == 0.5 and r == DaggerRound(**row)
    with pytest.raises(KeyError):
        r["regret_mean"]
    old = {k: v for k, v in row.items() if not k.startswith("floor")}  # before floors
    assert DaggerRound.from_json({**old, "unknown": 1}).floor_regret is None


def _certificate() -> dict:
    cert = {"env_id": ENV, "dataset": "qbc/d-v0", "expert": "lqr",
            "expert_spec": {"name": "lqr", "params": {}, "source": "dataset"},
            "tokenizer": {"quantizer": "uniform", "vocab_size": 8}, "n_demos": 20,
            "q_sharp_pi_star": "deterministic", "eps_q": {"worst_case_bound": 0.1},
            "eps_q_used": 0.1, "eps_q_kind": "worst case", "piiss": {"gains": [0.1]},
            "rtvc": {"k": 2.0}, "gamma_at_(k+1)eps_q": 0.3, "gamma_grid": "inside",
            "kappa_at_gamma": 0.0, "kappa_grid": "inside", "bound_shapes": {"horizons": [10]},
            "bound_hypotheses": {}, "note": "shapes"}
    return cert


def test_a_certificate_gives_back_its_json_keys_in_order():
    cert = _certificate()
    c = Certificate.from_json(cert)
    assert (c.gamma, c.kappa, c.nearest, c.measured_regret) == (0.3, 0.0, None, None)
    assert list(c.to_json().items()) == list(cert.items())
    full = {**cert, "nearest": {"eps_q_used": 0.05}, "measured_regret": {"policy": {"10": 1.0}}}
    assert list(Certificate.from_json(full).to_json().items()) == list(full.items())


@pytest.mark.slow
def test_certify_puts_a_rollouts_regret_beside_the_bounds(tmp_path, tiny_lin_copy, cli):
    tiny_lin_copy(tmp_path)
    ran = cli(["rollout", "--policy", "run/best", "--out", "ro", "--episodes", "3",
               "--horizons", "5", "10", "--num-envs", "3", "--no-progress"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    res = cli(["certify", "--dataset", "qbc/lin-v0", "--out", "cert", "--bins", "8",
               "--episodes", "3", "--horizon", "20", "--horizons", "5,10", "--sizes", "0.1",
               "--rollout", "ro"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cert = json.loads((tmp_path / "cert" / "certificate.json").read_text())
    metrics = json.loads((tmp_path / "ro" / "metrics.json").read_text())
    assert list(cert)[-1] == "measured_regret"
    assert cert["measured_regret"]["policy"] == {
        h: m["regret"] for h, m in metrics["policies"]["policy"].items()}
    assert "expert" not in cert["measured_regret"]


# -- qbc rollout --config ---------------------------------------------------------------------
ROLLOUT = ["--episodes", "3", "--horizons", "5", "10", "--num-envs", "3", "--no-progress"]


@pytest.fixture
def rolled(tmp_path, tiny_lin_copy, cli) -> Path:
    """A folder with the tiny run and ``ro/``, a rollout of it."""
    tiny_lin_copy(tmp_path)
    res = cli(["rollout", "--policy", "run/best", "--out", "ro", *ROLLOUT], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return tmp_path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_rollouts_config_fed_back_repeats_it(rolled, cli):
    res = cli(["rollout", "--config", "ro/config.json", "--out", "again"], cwd=rolled)
    assert res.returncode == 0, res.stderr
    first, again = _json(rolled / "ro" / "config.json"), _json(rolled / "again" / "config.json")
    assert again.pop("out") == "again" and first.pop("out") == "ro" and again == first
    a, b = _json(rolled / "ro" / "metrics.json"), _json(rolled / "again" / "metrics.json")
    assert a["policies"] == b["policies"]
    res = cli(["rollout", "--config", "ro/config.json", "--out", "e2", "--episodes", "2"],
              cwd=rolled)
    assert res.returncode == 0, res.stderr
    assert _json(rolled / "e2" / "config.json")["episodes"] == 2


def test_a_rollout_toml_with_an_expert_params_table(rolled, cli):
    (rolled / "r.toml").write_text('policy = "run/best"\nepisodes = 2\nhorizons = [5]\n'
                                   'num_envs = 2\nprogress = false\n'
                                   "[expert_params]\nnoise_std = 0.0\n")
    res = cli(["rollout", "--config", "r.toml", "--out", "t"], cwd=rolled)
    assert res.returncode == 0, res.stderr
    conf = _json(rolled / "t" / "config.json")
    assert (conf["episodes"], conf["horizons"]) == (2, [5])
    assert conf["expert_params"] == {"noise_std": 0.0}


BAD = [
    ('{"episodes": 2, "episdoes": 3}', "bad.json", ["unknown setting 'episdoes'",
                                                    "did you mean episodes"]),
    ('episodes = "many"\n', "bad.toml", ["setting 'episodes'", "must be an integer"]),
    ('expert_params = 3\n', "bad.toml", ["setting 'expert_params'", "got 3"]),
    ("episodes = [", "bad.toml", ["is not valid TOML"]),
    ("nowhere.json", None, ["'nowhere.json': no such file", "runs/rollout/config.json"]),
]


@pytest.mark.parametrize("text, name, words", BAD)
@pytest.mark.slow
def test_a_bad_rollout_config_is_one_line_and_writes_nothing(rolled, cli, text, name, words):
    if name is not None:
        (rolled / name).write_text(text)
    res = cli(["rollout", "--config", name or text, "--policy", "run/best", "--out", "o"],
              cwd=rolled)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("qbc rollout: error:") and all(w in lines[0] for w in words)
    assert not (rolled / "o").exists()


# -- qbc dagger --config ----------------------------------------------------------------------
DAGGER = ["--env", ENV, "--rounds", "1", "--episodes-per-round", "3", "--max-episode-steps",
          "12", "--eval-episodes", "3", "--num-envs", "3", "--bins", "8", "--steps", "4",
          "--batch-size", "16", "--device", "cpu", "--no-progress", *TINY_MODEL_FLAGS,
          "--train-overrides", "eval_interval=2", "warmup_steps=1"]


@pytest.mark.slow
def test_a_dagger_runs_config_fed_back_runs_it_again(tmp_path, cli):
    res = cli(["dagger", "--out", "a", *DAGGER], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = cli(["dagger", "--config", "a/dagger_config.json", "--out", "b"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    a = _json(tmp_path / "a" / "dagger_config.json")
    b = _json(tmp_path / "b" / "dagger_config.json")
    assert (a.pop("out"), b.pop("out")) == ("a", "b")
    assert (a.pop("dataset_base"), b.pop("dataset_base")) == ("dagger/a", "dagger/b")
    assert a == b and a["train_overrides"] == {"eval_interval": 2, "warmup_steps": 1}
    rows = [(tmp_path / run / "rounds.csv").read_text() for run in "ab"]
    assert len(rows[0].splitlines()) == 3  # header, rounds 0 and 1
    assert rows[0].replace("dagger/a/", "dagger/b/") == rows[1]


def test_a_dagger_toml_with_tables_and_a_flag_over_it(tmp_path, cli):
    (tmp_path / "d.toml").write_text(
        f'env = "{ENV}"\nrounds = 1\nepisodes_per_round = 3\nmax_episode_steps = 12\n'
        'eval_episodes = 3\nnum_envs = 3\nbins = 8\nsteps = 4\nbatch_size = 16\n'
        'device = "cpu"\nprogress = false\n[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n'
        "[train_overrides]\neval_interval = 2\nwarmup_steps = 1\n")
    res = cli(["dagger", "--config", "d.toml", "--out", "t", "--bins", "6"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    conf = _json(tmp_path / "t" / "dagger_config.json")
    assert (conf["bins"], conf["model"]["d_model"], conf["train_overrides"]["warmup_steps"]) \
        == (6, 16, 1)


@pytest.mark.parametrize("text, name, words", [
    ('{"rounds": 1, "roundz": 2}', "bad.json", ["unknown setting 'roundz'",
                                                "did you mean rounds"]),
    ('rounds = 1.5\n', "bad.toml", ["setting 'rounds'", "must be an integer"]),
    ('[model]\nd_modle = 8\n', "bad.toml", ["unknown setting 'model.d_modle'"]),
    ('train_overrides = "x"\n', "bad.toml", ["setting 'train_overrides'"]),
    ("nowhere.toml", None, ["'nowhere.toml': no such file", "dagger_config.json"]),
])
def test_a_bad_dagger_config_is_one_line_and_writes_nothing(tmp_path, cli, text, name, words):
    if name is not None:
        (tmp_path / name).write_text(text)
    res = cli(["dagger", "--config", name or text, "--env", ENV, "--out", "o"], cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("qbc dagger: error:") and all(w in lines[0] for w in words)
    assert not (tmp_path / "o").exists() and not any((tmp_path / "minari").iterdir())


def test_the_verdict_of_mean_decoding_says_no_floor_is_its_own():
    from qbc.rollout.report import learner_verdict

    def metrics(floor_of_decoding):
        per_h = {"regret": 1.0, "diverged_fraction": 0.0, "return": 100.0}
        return {"horizons": [50], "policies": {name: {"50": per_h} for name in
                                               ("expert", "policy", "quantized_expert")},
                "floors": {"quantized_expert": {"floor_of_decoding": floor_of_decoding}}}

    mean, argmax = learner_verdict(metrics(False)), learner_verdict(metrics(True))
    assert mean["floor"] == argmax["floor"] == "quantized_expert"
    assert "not a quantized actor: compared with the deterministic one" in mean["text"]
    assert argmax["text"].startswith("H = 50, floor quantized_expert: learner vs floor")


def test_a_chunk_floor_at_or_below_the_expert_has_no_ratio():
    from qbc.rollout.report import floor_ratios

    def metrics(floor_regret):
        return {"horizons": [50], "policies": {
            "policy": {"50": {"regret": 2.0, "diverged_fraction": 0.0}},
            "quantized_chunk_expert": {"50": {"regret": floor_regret, "diverged_fraction": 0.0}}}}

    assert floor_ratios(metrics(0.5))["horizons"]["50"]["ratio"] == 4.0
    for floor in (0.0, -0.5):  # a negative ratio would read as 'below the floor'
        assert floor_ratios(metrics(floor))["horizons"]["50"]["ratio"] is None
