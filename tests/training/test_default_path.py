"""The default path to the floor: the ordered head, checkpoint selection by action error,
DAgger's fixed tokenizer and the learner-vs-floor verdict."""

import json

import numpy as np
import pytest
import torch
from tiny import Demos  # the demonstrations stand-in with a split by episode

from qbc.policy import ModelConfig, build_policy
from qbc.rollout.growth import floor_verdict
from qbc.tokenizer import ActionTokenizer
from qbc.training import TrainConfig, rollout_evaluation, train, update_best

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _linear_demos(episodes=20, steps=40):
    """u = x_0 - x_1 on x ~ U(-1, 1)^2: a linear expert seen on a bounded range of states."""
    rng = np.random.default_rng(3)
    obs = rng.uniform(-1, 1, size=(episodes * steps, 2)).astype(np.float32)
    act = (obs[:, :1] - obs[:, 1:]).astype(np.float32)
    return Demos(obs, act, np.repeat(np.arange(episodes), steps))


def _cfg(tmp_path, name, **kw):
    base = dict(dataset="synthetic", out=tmp_path / name, bins=16, steps=300, batch_size=64,
                eval_interval=100, warmup_steps=20, lr=3e-3, progress=False,
                rollout_episodes=0, model=ModelConfig(d_model=32, n_heads=2))
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_the_ordered_head_sends_states_beyond_the_data_to_the_edge_bins(tmp_path):
    # States whose action lies beyond the data's range get the edge codeword, as the clipped
    # quantized expert does; the plain head gives inner bins at several of these states.
    run = train(_cfg(tmp_path, "ordered", model=ModelConfig(d_model=32, n_heads=2,
                                                             head="ordered")), _linear_demos())
    policy = run.policy
    low, high = policy.tokenizer.codebooks()[0, [0, -1]]
    far = np.array([[3, 1], [1, 3], [-3, -1], [10, 0], [0, 10], [2, -2], [-2, 2]], np.float32)
    want = np.where(far[:, 0] > far[:, 1], high, low)
    assert policy.act(far)[:, 0] == pytest.approx(want)
    inside = np.random.default_rng(4).uniform(-0.8, 0.8, size=(50, 2)).astype(np.float32)
    assert np.abs(policy.act(inside)[:, 0] - (inside[:, 0] - inside[:, 1])).max() < 0.3


def test_the_ordered_head_only_adds_to_the_logits_and_is_stored():
    acts = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer="kmeans", n_bins=8)
    torch.manual_seed(0)
    module = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2), 3, 2, tok)
    centers = module.bin_centers.numpy()
    assert centers.min(1) == pytest.approx([-1, -1]) and centers.max(1) == pytest.approx([1, 1])
    # the order of the codewords is kept: the largest codeword maps to 1
    assert np.argmax(centers, 1).tolist() == np.argmax(tok.codebooks(), 1).tolist()
    obs = torch.randn(4, 1, 3)
    tokens, _ = module.decode(obs)
    assert torch.equal(module.logits(obs, tokens).argmax(-1)[:, 0], tokens[:, 0])
    assert module.config_dict()["ordered_head"] is True


def test_the_ordered_heads_location_has_an_mlp_by_default_and_old_checkpoints_stay_linear():
    from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy

    acts = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer="uniform", n_bins=8)
    module = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2, hidden=24), 3, 2,
                          tok)
    saved = module.config_dict()
    assert saved["loc_layers"] == 2 and saved["loc_hidden"] == 24
    assert module.loc_mlp[0].in_features == 3 and module.loc_mlp[-1].out_features == 2
    # the MLP is part of the location: changing its output layer changes the logits
    obs, tokens = torch.randn(4, 1, 3), torch.zeros(4, 2, dtype=torch.long)
    before = module.logits(obs, tokens)
    with torch.no_grad():
        module.loc_mlp[-1].bias.add_(0.5)
    assert not torch.allclose(before, module.logits(obs, tokens))
    # a checkpoint saved before the field existed rebuilds the linear location it was trained with
    old = {k: v for k, v in saved.items() if k not in ("loc_layers", "loc_hidden")}
    assert ARTransformerPolicy(ARTransformerConfig(**old)).loc_mlp is None
    linear = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2, loc_layers=0), 3,
                          2, tok)
    assert linear.loc_mlp is None


def test_the_location_reads_the_hidden_state_unless_told_to_read_the_observation_alone():
    from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy

    acts = np.random.default_rng(1).normal(size=(500, 2)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer="uniform", n_bins=8)
    module = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2, loc_inputs="obs"),
                          3, 2, tok)
    saved = module.config_dict()
    assert saved["loc_trunk"] is False and not hasattr(module, "loc_w")
    # the location is the same for every earlier token: only the free logits read them
    obs = torch.randn(4, 1, 3)
    a, b = torch.zeros(4, 2, dtype=torch.long), torch.full((4, 2), 7, dtype=torch.long)
    with torch.no_grad():
        module.head_w.zero_()
        module.head_b.zero_()
    assert torch.allclose(module.logits(obs, a), module.logits(obs, b))
    # the default, and a checkpoint saved before the field existed, read the hidden state too
    old = {k: v for k, v in saved.items() if k != "loc_trunk"}
    trunk = ARTransformerPolicy(ARTransformerConfig(**old))
    assert trunk.loc_w.shape == (2, 16)
    with torch.no_grad():
        trunk.head_w.zero_()
        trunk.head_b.zero_()
        trunk.loc_w.normal_()  # (a constant w would read the layer-normed mean, 0)
    assert not torch.allclose(trunk.logits(obs, a)[:, 1], trunk.logits(obs, b)[:, 1])
    on = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2), 3, 2, tok)
    assert on.config_dict()["loc_trunk"] is True and on.loc_w.shape == (2, 16)


def test_action_error_selection_keeps_the_better_acting_checkpoint():
    best = {"val_loss": None, "step": 0}
    # log-loss rises while the decoded actions improve (over-confident logits)
    best, up1 = update_best(best, {"val_loss": 1.0, "val_action_mse": 0.5}, 200, "action-mse")
    best, up2 = update_best(best, {"val_loss": 3.0, "val_action_mse": 0.1}, 400, "action-mse")
    assert up1 and up2 and best["step"] == 400 and best["min_val_step"] == 200
    by_loss = {"val_loss": None, "step": 0}
    by_loss, _ = update_best(by_loss, {"val_loss": 1.0, "val_action_mse": 0.5}, 200, "val-loss")
    by_loss, up = update_best(by_loss, {"val_loss": 3.0, "val_action_mse": 0.1}, 400, "val-loss")
    assert not up and by_loss["step"] == 200


def test_a_run_selects_by_action_error_by_default_and_records_its_defaults(tmp_path):
    run = train(_cfg(tmp_path, "default", steps=40, eval_interval=10), _linear_demos(8, 20))
    assert run.budget["select_by"] == "action-mse"
    mse = {m["step"]: m["val_action_mse"] for m in run.metrics}
    assert run.best_step == min(mse, key=mse.get)
    conf = json.loads((tmp_path / "default" / "train_config.json").read_text())
    assert conf["select_by"] == "action-mse" and conf["model"]["head"] == "ordered"
    assert conf["token_target"] == "two-hot"


def test_the_verdict_names_the_likely_cause_of_a_miss():
    fell = floor_verdict({"regret": 10.0, "failed": 0.1}, {"regret": 3.0, "failed": 0.0}, 100.0)
    assert not fell["met"] and "dart" in fell["fix"] and "dagger" in fell["fix"]
    # a DAgger run's own verdict asks for more of its rounds, not for `qbc dagger`
    ran_dagger = floor_verdict({"regret": 10.0, "failed": 0.1}, {"regret": 3.0, "failed": 0.0},
                               100.0, {"command": "dagger"})
    assert "--rounds" in ran_dagger["fix"] and "qbc dagger" not in ran_dagger["fix"]
    assert fell["ratio"] == pytest.approx(10 / 3) and "target missed" in fell["text"]
    early = floor_verdict({"regret": 10.0, "failed": 0.0}, {"regret": 3.0, "failed": 0.0}, 100.0,
                          {"steps": 10_000, "best_step": 200, "select_by": "val-loss"})
    assert "selection" in early["cause"] and "--select-by" in early["fix"]
    short = floor_verdict({"regret": 10.0, "failed": 0.0}, {"regret": 3.0, "failed": 0.0}, 100.0,
                          {"steps": 1000, "best_step": 1000, "stopped_early": False})
    assert "under-training" in short["cause"] and "--steps" in short["fix"]
    met = floor_verdict({"regret": 5.9, "failed": 0.0}, {"regret": 3.0, "failed": 0.0}, 100.0)
    assert met["met"] and met["cause"] is None and "target met" in met["text"]
    # a floor at or below 0: the allowance of 1% of the expert's return
    near_zero = floor_verdict({"regret": 0.7, "failed": 0.0}, {"regret": -0.2, "failed": 0.0},
                              100.0)
    assert near_zero["met"] and near_zero["ratio"] is None and near_zero["limit"] == 0.8


class _ZeroTokenPolicy:
    """A token policy stand-in that always acts 0 (it diverges on an unstable system)."""

    def __init__(self):
        self.tokenizer = ActionTokenizer.fit(np.linspace(-3, 3, 100, dtype=np.float32)[:, None],
                                             quantizer="uniform", n_bins=16)

    def act(self, obs, deterministic=True):
        return np.zeros((len(obs), 1), np.float32)


def test_the_closing_rollout_prints_the_verdict_and_the_cause_of_a_miss():
    from qbc.cli.train import format_summary
    from qbc.training import TrainSummary

    prov = {"qbc": {"expert": {"name": "lqr", "params": {}}, "seed": 0, "n_episodes": 2}}
    demos = Demos(np.zeros((10, 1), np.float32), np.zeros((10, 1), np.float32),
                  np.repeat(np.arange(2), 5), env_id="qbc/ScalarUnstable-v0", metadata=prov)
    r = rollout_evaluation(_ZeroTokenPolicy(), demos, episodes=6, horizon=100, seed=50)
    verdict = r.verdict
    assert r.actors["policy"].failed_fraction == 1.0
    assert r.actors["quantized_expert"].failed_fraction == 0.0
    assert verdict["floor_regret"] == r.floor_regret and not verdict["met"]
    assert "never visit" in verdict["cause"] and "dart" in verdict["fix"]
    summary = TrainSummary(policy="ar-transformer", dataset="d", steps=10, best_step=10,
                           best_val_loss=1.0, final_train_loss=1.0, train_samples_per_s=1.0,
                           seconds={}, budget={}, checkpoint="x", rollout=r)
    text = format_summary(summary)
    assert "the quantized expert (deterministic encoding: the floor of argmax decoding)" in text
    assert "learner vs floor" in text and "Likely cause" in text


def test_a_smooth_policys_closing_rollout_shows_both_floors():
    # the closing rollout showed only the nearest-rounding floor; qbc rollout shows both
    from qbc.cli.train import format_summary
    from qbc.training import TrainSummary

    policy = _ZeroTokenPolicy()
    policy.tokenizer = ActionTokenizer.fit(np.linspace(-3, 3, 100, dtype=np.float32)[:, None],
                                           quantizer="smooth", n_bins=16)
    prov = {"qbc": {"expert": {"name": "lqr", "params": {}}, "seed": 0, "n_episodes": 2}}
    demos = Demos(np.zeros((10, 1), np.float32), np.zeros((10, 1), np.float32),
                  np.repeat(np.arange(2), 5), env_id="qbc/ScalarStable-v0", metadata=prov)
    r = rollout_evaluation(policy, demos, episodes=6, horizon=50, seed=50)
    nearest, stochastic = r.actors["quantized_expert"], r.actors["quantized_expert_stochastic"]
    assert r.floor_regret == nearest.regret  # the verdict's floor stays the argmax one
    assert stochastic.regret != nearest.regret  # stochastic rounding draws other actions
    again = rollout_evaluation(policy, demos, episodes=6, horizon=50, seed=50)
    assert again.actors["quantized_expert_stochastic"].regret == stochastic.regret  # seeded
    summary = TrainSummary(policy="ar-transformer", dataset="d", steps=10, best_step=10,
                           best_val_loss=1.0, final_train_loss=1.0, train_samples_per_s=1.0,
                           seconds={}, budget={}, checkpoint="x", rollout=r)
    assert "the stochastic q#π* (stochastic rounding" in format_summary(summary)
    uniform = rollout_evaluation(_ZeroTokenPolicy(), demos, episodes=2, horizon=10, seed=50)
    assert "quantized_expert_stochastic" not in uniform.actors


def test_gaussian_histogram_targets_peak_at_the_nearest_codeword():
    from qbc.training.data import gauss_targets

    acts = np.random.default_rng(5).normal(size=(400, 2)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer="uniform", n_bins=16)
    probe = np.concatenate([acts[:50], 10 * acts[:5]])  # inside the range and far beyond it
    soft = gauss_targets(tok, probe, sigma=0.75)
    assert soft.shape == (55, 2, 16) and np.allclose(soft.sum(-1), 1.0)
    assert np.array_equal(soft.argmax(-1), tok.encode(probe))
    # neighbours share the probability: the nearest bin keeps well under all of it
    assert soft[:50].max(-1).mean() < 0.7


@pytest.mark.parametrize("quantizer", ["uniform", "kmeans"])
def test_two_hot_targets_mean_the_action_and_peak_at_its_token(quantizer):
    from qbc.training.data import two_hot_targets

    acts = np.random.default_rng(6).normal(size=(400, 2)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer=quantizer, n_bins=16)
    probe = np.concatenate([acts[:100], 10 * acts[:5]])  # inside the range and far beyond it
    soft = two_hot_targets(tok, probe)
    assert soft.shape == (105, 2, 16) and np.allclose(soft.sum(-1), 1.0)
    assert ((soft > 0).sum(-1) <= 2).all()  # two neighbouring codewords at most
    code = tok.codebooks()
    lo, hi = code.min(1), code.max(1)
    mean = np.einsum("ndk,dk->nd", soft, code)
    np.testing.assert_allclose(mean, np.clip(probe, lo, hi), atol=1e-5)  # mean codeword = action
    assert np.array_equal(soft.argmax(-1), tok.encode(probe))  # argmax = the action's token


def test_the_default_targets_are_two_hot_and_the_earlier_ones_stay_available():
    from qbc.training.data import make_batch

    acts = np.random.default_rng(7).uniform(-1, 1, size=(64, 1)).astype(np.float32)
    tok = ActionTokenizer.fit(acts, quantizer="uniform", n_bins=8)

    class Split:  # the fields make_batch reads
        obs = torch.zeros(64, 1, 1)
        actions = torch.from_numpy(acts)
        raw_actions = acts
        tokens = torch.from_numpy(tok.encode(acts))

    idx = torch.arange(64)
    two_hot = make_batch(Split, idx, tok, "two-hot", np.random.default_rng(0))
    assert two_hot["soft"].shape == (64, 1, 8) and (two_hot["soft"].max(-1).values < 1).any()
    for earlier in ("one-hot", "soft"):  # 'soft' trained deterministic quantizers on one-hot
        batch = make_batch(Split, idx, tok, earlier, np.random.default_rng(0))
        assert "soft" not in batch and torch.equal(batch["tokens"], Split.tokens)


def test_the_heads_location_setting_is_refused_where_no_ordered_head_reads_it(tmp_path):
    from qbc.errors import InvalidValueError
    from qbc.training.settings import check_settings_apply

    for policy in ("mlp-mse", "independent-categorical"):
        cfg = _cfg(tmp_path, policy, policy=policy,
                   model=ModelConfig(d_model=32, n_heads=2, loc_layers=0))
        with pytest.raises(InvalidValueError, match="--model.loc-layers"):
            check_settings_apply(cfg)
        trunk = _cfg(tmp_path, policy, policy=policy,
                     model=ModelConfig(d_model=32, n_heads=2, loc_inputs="obs"))
        with pytest.raises(InvalidValueError, match="--model.loc-inputs"):
            check_settings_apply(trunk)
    check_settings_apply(_cfg(tmp_path, "ar", model=ModelConfig(d_model=32, n_heads=2,
                                                                 loc_layers=0)))
