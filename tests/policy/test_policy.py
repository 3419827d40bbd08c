"""Policies: the AR transformer (KV cache, causality, log-loss), baselines, wrapper, checkpoints."""

import json
import re

import numpy as np
import pytest
import torch

from qbc.errors import CorruptFileError, InvalidValueError, UnknownNameError
from qbc.policy import (
    ModelConfig,
    Normalizer,
    Policy,
    available_policies,
    build_policy,
    load_policy,
    save_checkpoint,
)
from qbc.policy.decoding import pick_tokens, token_log_loss
from qbc.tokenizer import ActionTokenizer

OBS_DIM, ACT_DIM = 3, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    act = np.tanh(obs @ rng.normal(size=(OBS_DIM, ACT_DIM))).astype(np.float32)
    return obs, act


def _tokenizer(quantizer="uniform", bins=16, seed=0):
    return ActionTokenizer.fit(_data(seed=seed)[1], quantizer=quantizer, n_bins=bins)


def _module(kind="ar-transformer", quantizer="uniform", obs_history=1, seed=0, **model):
    torch.manual_seed(seed)
    tok = _tokenizer(quantizer)
    mod = build_policy(kind, ModelConfig(obs_history=obs_history, **model), OBS_DIM, ACT_DIM, tok)
    return mod, tok


def _policy(kind="ar-transformer", quantizer="uniform", obs_history=1):
    mod, tok = _module(kind, quantizer, obs_history)
    obs, act = _data()
    return Policy(mod, Normalizer.fit(obs, act), tok if mod.is_token_policy else None)


# -- KV cache --------------------------------------------------------------------------------------
@pytest.mark.parametrize("quantizer,obs_history", [("uniform", 1), ("uniform", 3), ("vq", 2)])
def test_cached_decoding_equals_full_recomputation(quantizer, obs_history):
    mod, tok = _module(quantizer=quantizer, obs_history=obs_history, n_layers=2)
    mod.eval()
    # Larger weights than at init so the tokens actually depend on the observation and prefix
    # (the ordered head's log-precision is a log scale: left as it is).
    with torch.no_grad():
        for name, p in mod.named_parameters():
            if name != "log_prec":
                p.mul_(20.0)
    obs = torch.randn(64, obs_history, OBS_DIM, generator=torch.Generator().manual_seed(1))
    t_cache, p_cache = mod.decode(obs, use_cache=True)
    t_full, p_full = mod.decode(obs, use_cache=False)
    assert t_cache.shape == (64, tok.n_tokens)
    assert torch.equal(t_cache, t_full)
    torch.testing.assert_close(p_cache, p_full, atol=1e-5, rtol=1e-4)
    assert len(torch.unique(t_cache[:, -1])) > 1  # not a degenerate constant output
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    s_cache, _ = mod.decode(obs, sample=True, temperature=3.0, generator=g1, use_cache=True)
    s_full, _ = mod.decode(obs, sample=True, temperature=3.0, generator=g2, use_cache=False)
    assert torch.equal(s_cache, s_full)
    assert not torch.equal(s_cache, t_cache)  # sampling really sampled


def test_teacher_forced_logits_match_decoding_and_are_causal():
    mod, tok = _module(n_layers=2)
    mod.eval()
    obs = torch.randn(16, 1, OBS_DIM)
    tokens, probs = mod.decode(obs, sample=True, generator=torch.Generator().manual_seed(0))
    forced = torch.softmax(mod.logits(obs, tokens), dim=-1)
    torch.testing.assert_close(forced, probs, atol=1e-5, rtol=1e-4)
    # Changing token i changes only the predictions of positions after i.
    changed = tokens.clone()
    changed[:, 1] = (changed[:, 1] + 5) % tok.vocab_size
    a, b = mod.logits(obs, tokens), mod.logits(obs, changed)
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert (a[:, 2:] - b[:, 2:]).abs().max() > 1e-4


def test_onednn_is_switched_off_only_by_the_opt_in_and_restored():
    """Decoding leaves oneDNN alone; ``Policy(disable_onednn=True)`` turns it off during each
    call only, puts back whatever it was, and acts the same up to rounding."""
    policy = _policy()
    during = []
    handle = policy.module.blocks[0].mlp.fc.register_forward_hook(
        lambda m, i, o: during.append(torch.backends.mkldnn.enabled))
    obs = _data(8)[0]
    try:
        reference = policy.act(obs)
        assert during and all(during)  # the default: no process-wide change
        policy.disable_onednn = True
        for enabled in (True, False):
            torch.backends.mkldnn.enabled = enabled
            during.clear()
            np.testing.assert_allclose(policy.act(obs), reference, atol=1e-5)
            assert during and not any(during)
            assert torch.backends.mkldnn.enabled is enabled
    finally:
        torch.backends.mkldnn.enabled = True
        handle.remove()


def test_decoding_still_calls_hooks():
    """Skipping nn.Module.__call__ for speed never skips a registered hook (per module or
    global)."""
    mod, _ = _module(n_layers=2)
    mod.eval()
    obs = torch.randn(2, 1, OBS_DIM)
    ref_tokens, ref_probs = mod.decode(obs)
    seen = []
    handle = mod.blocks[1].mlp.fc.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        tokens, probs = mod.decode(obs)
    finally:
        handle.remove()
    assert len(seen) == ACT_DIM  # the prefix pass and one cached step per further token
    torch.testing.assert_close(probs, ref_probs)
    assert torch.equal(tokens, ref_tokens)
    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: calls.append(type(m).__name__))
    try:
        mod.decode(obs)
    finally:
        handle.remove()
    assert calls.count("LayerNorm") == ACT_DIM * (2 * 2 + 1)  # 2 per block + the final one
    seen.clear()
    mod.decode(obs)
    assert not seen and len(calls) > 0  # removed hooks stay removed


# -- log-loss --------------------------------------------------------------------------------------
def test_soft_target_loss_is_expected_log_loss_of_stochastic_rounding():
    """Single position: sum_k p_k (-log q_k) equals the Monte-Carlo mean of the sampled CE."""
    rng = np.random.default_rng(0)
    tok = ActionTokenizer.fit(rng.uniform(-1, 1, size=(200, 1)), quantizer="smooth", n_bins=8)
    actions = rng.uniform(-1, 1, size=(5, 1))
    logits = torch.randn(5, 1, 8, generator=torch.Generator().manual_seed(0))
    soft = torch.from_numpy(tok.soft_targets(actions))
    exact = float(token_log_loss(logits, torch.zeros(5, 1, dtype=torch.long), soft))
    n = 4000
    sampled = torch.from_numpy(tok.encode(np.tile(actions, (n, 1)), rng=rng))  # (n*5, 1)
    logp_rep = torch.log_softmax(logits, -1).repeat(n, 1, 1)
    per = -logp_rep.gather(-1, sampled[..., None])[:, 0, 0]
    draws = per.view(n, 5).mean(1).numpy()  # the sampled-token CE of each of n draws
    assert abs(np.mean(draws) - exact) < 4 * np.std(draws) / np.sqrt(len(draws))
    # And by hand: sum over the two neighbouring bins.
    logq = torch.log_softmax(logits, -1).numpy()
    by_hand = -(tok.soft_targets(actions) * logq).sum(-1).mean()
    assert exact == pytest.approx(by_hand, rel=1e-6)


def test_ar_soft_loss_with_sampled_prefix_is_unbiased_for_the_sequence_log_loss():
    """Two positions: the exact expected log-loss over all four two-hot outcomes equals the mean
    of the model's soft loss with stochastically rounded prefixes."""
    rng = np.random.default_rng(1)
    acts = rng.uniform(-1, 1, size=(300, 2))
    tok = ActionTokenizer.fit(acts, quantizer="smooth", n_bins=6)
    torch.manual_seed(0)
    mod = build_policy("ar-transformer", ModelConfig(d_model=16, n_heads=2), 3, 2, tok).eval()
    with torch.no_grad():
        for name, p in mod.named_parameters():
            if name != "log_prec":  # (a log scale: left as it is)
                p.mul_(30.0)
    obs = torch.randn(1, 1, 3)
    a = np.array([[0.13, -0.41]])
    soft = tok.soft_targets(a)[0]  # (2, 6)
    exact = 0.0
    for t0 in np.flatnonzero(soft[0]):
        for t1 in np.flatnonzero(soft[1]):
            seq = torch.tensor([[t0, t1]])
            with torch.no_grad():
                logp = torch.log_softmax(mod.logits(obs, seq), -1)[0]
            exact += soft[0, t0] * soft[1, t1] * -float(logp[0, t0] + logp[1, t1]) / 2
    n = 4000
    prefixes = torch.from_numpy(tok.encode(np.repeat(a, n, 0), rng=rng))
    soft_t = torch.from_numpy(soft)[None].expand(n, -1, -1)
    batch = {"obs": obs.expand(n, -1, -1), "tokens": prefixes, "soft": soft_t}
    with torch.no_grad():
        logp = torch.log_softmax(mod.logits(batch["obs"], prefixes), -1)
        est = (-(soft_t * logp).sum(-1).mean(-1)).numpy()  # per-draw loss
        assert float(mod.loss(batch)) == pytest.approx(est.mean(), rel=1e-5)
    assert abs(np.mean(est) - exact) < 4 * np.std(est) / np.sqrt(n) + 1e-6
    assert np.std(est) > 0  # the prefix really was sampled


def test_sampling_follows_the_probabilities():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.0, 0.3]])).repeat(20000, 1)
    tokens, _ = pick_tokens(logits, sample=True, generator=torch.Generator().manual_seed(0))
    freq = np.bincount(tokens.numpy(), minlength=4) / len(tokens)
    np.testing.assert_allclose(freq, [0.1, 0.6, 0.0, 0.3], atol=0.015)
    assert freq[2] == 0.0


# -- every kind through the numpy wrapper ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["ar-transformer", "independent-categorical", "mlp-mse",
                                  "mlp-gaussian"])
def test_every_kind_trains_and_acts_with_the_right_shapes(kind):
    policy = _policy(kind)
    obs, act = _data()
    tok = policy.tokenizer
    x = torch.from_numpy(policy.normalizer.obs(obs[:32]))[:, None]
    batch = {"obs": x, "actions": torch.from_numpy(act[:32])}
    if tok is not None:
        batch["tokens"] = torch.from_numpy(tok.encode(act[:32]))
    loss = policy.module.train().loss(batch)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None for p in policy.module.parameters() if p.requires_grad)
    policy.module.eval()
    out = policy.act(obs[:5])
    assert out.shape == (5, ACT_DIM) and out.dtype == np.float32
    assert policy.act(obs[0]).shape == (1, ACT_DIM)
    out2 = policy.act(obs[:5], deterministic=False, generator=torch.Generator().manual_seed(0))
    assert out2.shape == (5, ACT_DIM)
    if kind == "mlp-mse":
        with pytest.raises(InvalidValueError):
            policy.action_distribution(obs[:5])
    elif kind == "mlp-gaussian":
        mean, std = policy.action_distribution(obs[:5])
        np.testing.assert_allclose(mean, out, rtol=1e-5, atol=1e-6)
        assert std.shape == (5, ACT_DIM) and (std > 0).all()
        assert not np.allclose(out2, out)
    else:
        probs = policy.action_distribution(obs[:5])
        assert probs.shape == (5, ACT_DIM, tok.vocab_size)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        policy.decode_mode = "mean"
        np.testing.assert_allclose(policy.act(obs[:5]), tok.expected_action(probs), rtol=1e-5,
                                   atol=1e-6)


def test_registry_and_typed_errors():
    assert available_policies() == ["ar-transformer", "independent-categorical", "mlp-gaussian",
                                    "mlp-mse"]
    with pytest.raises(UnknownNameError, match="ar-transformer"):
        build_policy("ar-transformr", ModelConfig(), OBS_DIM, ACT_DIM, _tokenizer())
    with pytest.raises(InvalidValueError, match="tokenizer"):
        build_policy("ar-transformer", ModelConfig(), OBS_DIM, ACT_DIM, None)
    with pytest.raises(InvalidValueError, match="divisible"):
        build_policy("ar-transformer", ModelConfig(d_model=30, n_heads=4), OBS_DIM, ACT_DIM,
                     _tokenizer())
    policy = _policy()
    with pytest.raises(UnknownNameError):
        policy.decode_mode = "greedy"
    with pytest.raises(InvalidValueError, match="shape"):
        policy.act(np.zeros((2, OBS_DIM + 1), np.float32))


def test_observation_history_buffer_matches_explicit_histories():
    policy = _policy(obs_history=3)
    obs, _ = _data(n=20)
    seq = obs[:12].reshape(4, 3, OBS_DIM)  # 4 steps of a batch of 3 rows
    policy.reset()
    buffered = [policy.act(seq[t]) for t in range(4)]
    for t in range(4):
        hist = np.stack([seq[max(t - lag, 0)] for lag in (2, 1, 0)], axis=1)
        np.testing.assert_array_equal(buffered[t], policy.act(hist))
    # Restarting row 1 makes its history the new observation repeated.
    policy.reset_rows(np.array([False, True, False]))
    out = policy.act(obs[12:15])
    np.testing.assert_array_equal(out[1], policy.act(np.repeat(obs[13][None, None], 3, 1))[0])


# -- checkpoints -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,quantizer", [("ar-transformer", "uniform"),
                                            ("ar-transformer", "vq"),
                                            ("independent-categorical", "smooth"),
                                            ("mlp-mse", None), ("mlp-gaussian", None)])
def test_save_load_gives_identical_actions(tmp_path, kind, quantizer):
    policy = _policy(kind, quantizer or "uniform")
    save_checkpoint(tmp_path / "ckpt", policy.module, policy.normalizer, policy.tokenizer,
                    {"note": "test"})
    loaded = load_policy(tmp_path / "ckpt")
    obs, _ = _data(n=50, seed=3)
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    a = policy.act(obs, deterministic=False, generator=torch.Generator().manual_seed(3))
    b = loaded.act(obs, deterministic=False, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(a, b)
    assert (loaded.tokenizer is None) == (kind.startswith("mlp"))
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"model.safetensors", "config.json", "normalizer.json"} <= files
    assert ("tokenizer.json" in files) == (not kind.startswith("mlp"))
    assert not [f for f in files if f.endswith(".tmp")]


def test_damaged_or_missing_checkpoint_files_raise_corrupt_file_error(tmp_path):
    policy = _policy()
    ck = tmp_path / "ckpt"
    save_checkpoint(ck, policy.module, policy.normalizer, policy.tokenizer)
    with pytest.raises(CorruptFileError, match="not a policy checkpoint"):
        load_policy(tmp_path / "nowhere")
    weights = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CorruptFileError, match="damaged"):
        load_policy(ck)
    (ck / "model.safetensors").write_bytes(weights)
    (ck / "tokenizer.json").unlink()
    with pytest.raises(CorruptFileError, match="tokenizer"):
        load_policy(ck)
    policy.tokenizer.save(ck / "tokenizer.json")
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["d_model"] = 32
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptFileError, match="does not fit"):
        load_policy(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_policy(ck)


def test_config_describing_many_more_layers_is_refused_before_they_are_all_made(tmp_path):
    policy = _policy()
    ck = tmp_path / "ckpt"
    save_checkpoint(ck, policy.module, policy.normalizer, policy.tokenizer)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["n_layers"] = 2000  # made one by one, this takes seconds; 10^6 took minutes
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptFileError, match="more than .* parameter tensors"):
        load_policy(ck)
    # the counting hook went with the refusal: building and loading a large module still work
    layers = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(500)])
    assert len(layers.state_dict()) == 1000
    cfg["model"]["n_layers"] = policy.module.cfg.n_layers
    (ck / "config.json").write_text(json.dumps(cfg))
    obs, _ = _data(n=5, seed=1)
    np.testing.assert_array_equal(load_policy(ck).act(obs), policy.act(obs))


def test_a_config_built_once_is_not_built_again_and_an_edit_is_still_refused(tmp_path,
                                                                             monkeypatch):
    import qbc.policy.loading as loading

    policy = _policy()
    ck = tmp_path / "ckpt"
    save_checkpoint(ck, policy.module, policy.normalizer, policy.tokenizer)
    builds = []
    meta_shapes = loading._meta_shapes
    monkeypatch.setattr(loading, "_meta_shapes", lambda *a: builds.append(1) or meta_shapes(*a))
    monkeypatch.setattr(loading, "_BUILT_SHAPES", {})
    obs, _ = _data(n=5, seed=1)
    for _ in range(3):
        np.testing.assert_array_equal(load_policy(ck).act(obs), policy.act(obs))
    assert len(builds) == 1
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["d_model"] = 32  # another model: built once, refused at every load
    (ck / "config.json").write_text(json.dumps(cfg))
    for _ in range(2):
        with pytest.raises(CorruptFileError, match="does not fit"):
            load_policy(ck)
    assert len(builds) == 2
    for train in (True, [1], "x"):  # a damaged 'train' entry: the build's own refusal, typed
        (ck / "config.json").write_text(json.dumps({**cfg, "train": train}))
        with pytest.raises(CorruptFileError, match="config.json"):
            load_policy(ck)


@pytest.mark.parametrize("setting, value, words", [
    ("n_heads", -1, "setting 'n_heads' is negative"),
    ("n_heads", 3, "n_heads 3 must be >= 1 and divide d_model"),
    ("dropout", 1.5, "dropout 1.5 is not in [0, 1)"),
    ("obs_history", -2, "setting 'obs_history' is negative")])
def test_stored_settings_the_weights_do_not_pin_are_checked_on_load(tmp_path, setting, value,
                                                                     words):
    """Found by the fuzzer on another seed: n_heads -1 fits the same weights, loaded, and
    failed at the first action with a torch RuntimeError."""
    policy = _policy()
    ck = tmp_path / "ckpt"
    save_checkpoint(ck, policy.module, policy.normalizer, policy.tokenizer)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"][setting] = value
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CorruptFileError, match=re.escape(words)):
        load_policy(ck)
