"""qbc bench: structure of the results (never timings), the FLOP formula, the timing helpers."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from qbc.bench import forward_flops, train_flops_per_sample
from qbc.bench.flops import comparable_matmul
from qbc.bench.timing import calibrate, figure, interleaved_rates, paired_ratio, summarize
from qbc.cli import DeprecatedFlagWarning, main
from qbc.cli.bench import BenchConfig, format_table, resolve, run_bench
from qbc.errors import InvalidValueError, OutputExistsError
from qbc.policy.ar_transformer import ARTransformerConfig, ARTransformerPolicy
from qbc.policy.registry import ModelConfig

TINY_FLAGS = ["--quick", "--no-quickstart", "--repeats", "2", "--block-s", "0.005",
              "--env-sizes", "1", "3", "--model.d-model", "16", "--model.n-layers", "1",
              "--model.n-heads", "2", "--train-batch", "8", "--decode-batch", "8",
              "--rollout-episodes", "2", "--rollout-horizon", "3", "--act-dim", "2"]


@pytest.mark.parametrize("kw", [
    dict(obs_dim=8, n_tokens=4, vocab_size=64),
    dict(obs_dim=3, n_tokens=2, vocab_size=16, obs_history=3, d_model=32, n_layers=3,
         n_heads=2, mlp_ratio=2),
])
def test_forward_flops_match_torch_flop_counter(kw):
    """torch's counter sees every matmul except the CPU flash-attention kernel. The formula
    counts attention as 4 L^2 d per block; the small-model path (batched matmuls over all
    (position, head) rows) computes n_heads times that, the cross-head part masked away."""
    cfg = ARTransformerConfig(**kw)
    torch.manual_seed(0)
    module = ARTransformerPolicy(cfg)
    B = 3
    obs = torch.randn(B, cfg.obs_history, cfg.obs_dim)
    tokens = torch.randint(cfg.vocab_size, (B, cfg.n_tokens))
    with FlopCounterMode(display=False) as counter:
        module.logits(obs, tokens)
    ours = forward_flops(cfg)
    attention_seen = cfg.n_heads * ours["attn_scores"] if module.blocks[0].attn.small else 0
    assert counter.get_total_flops() == B * (ours["total"] - ours["attn_scores"] + attention_seen)
    assert ours["attn_scores"] == cfg.n_layers * 4 * cfg.seq_len ** 2 * cfg.d_model
    assert train_flops_per_sample(cfg) == 3 * ours["total"]
    assert comparable_matmul(cfg, 10) == (10 * cfg.seq_len, cfg.d_model,
                                          cfg.mlp_ratio * cfg.d_model)


def test_summaries_and_ratios():
    s = summarize([3.0, 1.0, 2.0])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "repeats": 3}
    r = paired_ratio({"wall": [4.0, 9.0], "cpu": [2.0, 2.0]}, {"wall": [2.0, 3.0],
                                                                "cpu": [1.0, 4.0]})
    assert r["wall"]["median"] == pytest.approx(2.5) and r["cpu"]["min"] == 0.5
    lat = figure({"wall": [100.0, 200.0], "cpu": [400.0]}, 1e3, invert=True)
    assert lat["wall"]["max"] == pytest.approx(10.0) and lat["cpu"]["median"] == 2.5


def test_interleaved_rates_counts_work():
    calls = {"a": 0, "b": 0}

    def bump(name):
        calls[name] += 1

    assert calibrate(lambda: None, 0.001) >= 1
    rates = interleaved_rates({"a": lambda: bump("a"), "b": lambda: bump("b")},
                              {"a": 1.0, "b": 10.0}, repeats=3, target_s=0.001)
    assert set(rates) == {"a", "b"}
    assert all(len(rates[n][c]) == 3 and min(rates[n][c]) > 0
               for n in rates for c in ("wall", "cpu"))
    assert calls["a"] > 3 and calls["b"] > 3  # warm-up + calibration + 3 timed blocks


def test_quick_mode_resolves_defaults_and_checks_values():
    full, quick = resolve(BenchConfig()), resolve(BenchConfig(quick=True))
    assert quick.repeats < full.repeats and quick.rollout_horizon < full.rollout_horizon
    assert resolve(BenchConfig(quick=True, repeats=7)).repeats == 7
    with pytest.raises(InvalidValueError):
        resolve(BenchConfig(repeats=0))
    with pytest.raises(InvalidValueError):
        resolve(BenchConfig(env_sizes=(0,)))


@pytest.mark.slow
def test_bench_cli_quick_writes_json_and_prints_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", *TINY_FLAGS, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for needle in ("1. env stepping", "2. decoding", "3. training", "4. end to end",
                   "load average", "cores", "torch"):
        assert needle in table
    r = json.loads(out.read_text())
    assert r["config"]["quick"] is True and r["config"]["repeats"] == 2
    assert r["machine"]["torch_threads"] == 1 and r["machine"]["cores"] >= 1
    assert [row["num_envs"] for row in r["env"]] == [1, 3]
    for row in r["env"]:
        for key in ("native_steps_per_s", "sync_steps_per_s", "ratio"):
            assert row[key]["wall"]["repeats"] == 2 and row[key]["cpu"]["median"] > 0
    d = r["decoding"]
    assert d["batch"] == 8 and d["act_dim"] == 2
    assert d["actions_per_s_cache"]["wall"]["min"] <= d["actions_per_s_cache"]["wall"]["median"]
    assert d["latency_ms_batch1_policy_act"]["wall"]["median"] > 0
    c = d["chunked"]
    assert (c["chunk_len"], c["tokens_per_chunk"]) == (16, 4)
    assert c["ratio"]["wall"]["median"] > 0 and "actions from 4 tokens" in table
    cd = d["constrained"]
    assert cd["decode_failures"] == {"constrained": 0, "unconstrained": 8}  # untrained model
    assert cd["ratio"]["wall"]["median"] > 0 and "FAST constrained decoding, k = 16" in table
    t = r["training"]
    assert t["flops"]["train_per_sample"] == 3 * t["flops"]["forward_per_sample"]["total"]
    assert t["matmul_shape"] == [8 * 2, 16, 64]
    util = t["utilisation"]["wall"]["median"]
    model = t["model_flop_per_s"]["wall"]["median"]
    assert model == pytest.approx(t["samples_per_s"]["wall"]["median"]
                                  * t["flops"]["train_per_sample"])
    assert 0 < util
    assert r["rollout"]["episodes"] == 2 and r["rollout"]["actions_per_s"]["wall"]["median"] > 0
    assert "quickstart" not in r
    assert r["config"]["env"] == "qbc/LinearUnstable-v0" and r["config"]["disable_onednn"]
    assert set(r["targets"]) == {"cache_speedup", "latency_ms", "utilisation",
                                 "chunk_decoding_ratio", "constrained_decoding_cost",
                                 "constrained_decode_failures"}  # no 1024 copies
    assert r["targets"]["constrained_decode_failures"]["met"]
    assert format_table(r).splitlines()[1] == table.splitlines()[1]
    # a second run refuses to overwrite the JSON without --overwrite (the old --env-id works)
    with pytest.warns(DeprecatedFlagWarning, match="--env-id"):
        assert main(["bench", *TINY_FLAGS, "--env-id", "qbc/LinearUnstable-v0",
                     "--json", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_run_bench_refuses_existing_json(tmp_path):
    out = tmp_path / "x.json"
    out.write_text("{}")
    with pytest.raises(OutputExistsError):
        run_bench(BenchConfig(json=out, model=ModelConfig(d_model=8, n_heads=2)))


@pytest.mark.parametrize("obs_history", [1, 3])
def test_small_attention_path_equals_fused_sdpa(obs_history):
    """The speed path of small models (batched matmuls over (position, head) rows with a mask)
    computes the same function as scaled_dot_product_attention: logits, gradients, and cached
    and uncached decoding."""
    import copy

    cfg = ARTransformerConfig(obs_dim=3, n_tokens=4, vocab_size=16, obs_history=obs_history,
                              d_model=32, n_layers=2, n_heads=4)
    torch.manual_seed(0)
    fast = ARTransformerPolicy(cfg)
    ref = copy.deepcopy(fast)
    assert all(b.attn.small for b in fast.blocks)
    for b in ref.blocks:
        b.attn.small = False
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(32, obs_history, 3, generator=g)
    tokens = torch.randint(16, (32, 4), generator=g)
    batch = {"obs": obs, "tokens": tokens}
    loss_fast, loss_ref = fast.loss(batch), ref.loss(batch)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-6, atol=1e-6)
    loss_fast.backward()
    loss_ref.backward()
    for (name, a), b in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    with torch.no_grad():
        for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
            a.mul_(20.0)  # large weights: tokens depend on the observation and the prefix
            b.mul_(20.0)
    fast.eval()
    ref.eval()
    for use_cache in (True, False):
        t_fast, p_fast = fast.decode(obs, use_cache=use_cache)
        t_ref, p_ref = ref.decode(obs, use_cache=use_cache)
        torch.testing.assert_close(p_fast, p_ref, rtol=1e-4, atol=1e-5)
        assert torch.equal(t_fast, t_ref)
        assert not t_fast.is_inference() and not p_fast.is_inference()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_bench_on_cuda_without_a_gpu_says_none_is_available(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", *TINY_FLAGS, "--device", "cuda", "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA is not available" in err[0]
    assert not out.exists()


def test_gpu_peaks_pick_the_most_specific_name_and_the_matmul_precision():
    from qbc.bench.device import gpu_peak_flops, synchronized

    assert gpu_peak_flops("NVIDIA H200", tf32=False) == 67e12
    assert gpu_peak_flops("NVIDIA H200", tf32=True) == 494.7e12
    assert gpu_peak_flops("NVIDIA H100 PCIe", tf32=False) == 51e12
    assert gpu_peak_flops("NVIDIA H100 80GB HBM3", tf32=False) == 67e12
    assert gpu_peak_flops("Some Future GPU", tf32=False) is None
    fn = lambda: 3  # noqa: E731
    assert synchronized(fn, __import__("torch").device("cpu")) is fn


@pytest.mark.slow
def test_gpu_table_shows_mfu_and_skips_the_cpu_sections(tmp_path):
    """The table of a GPU run (a CPU run's result relabelled: no GPU here) prints the device,
    the MFU against the stated peak, and no env-stepping or rollout section."""
    from qbc.cli.bench import figure_scaled

    out = tmp_path / "bench.json"
    assert main(["bench", *TINY_FLAGS, "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"]["device"] == "cpu" and "mfu" not in r["training"]
    del r["env"], r["rollout"]
    r["device"] = {"device": "cuda:0", "name": "NVIDIA H200", "tf32": False,
                   "peak_flop_per_s": 67e12, "peak_source": "spec sheet, fp32 dense"}
    r["training"]["mfu"] = figure_scaled(r["training"]["model_flop_per_s"], 1 / 67e12)
    table = format_table(r)
    assert "device cuda:0 (NVIDIA H200)" in table and "of 67 TFLOP/s" in table
    assert "1. env stepping" not in table and "4. end to end" not in table
    mfu = r["training"]["mfu"]["wall"]["median"]
    assert mfu == pytest.approx(r["training"]["model_flop_per_s"]["wall"]["median"] / 67e12)
