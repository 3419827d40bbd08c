"""The four measurements of ``qbc bench``: env stepping, policy decoding, training, end to end.

Each returns a JSON-safe dict of summaries (see :func:`qbc.bench.timing.summarize`): rates are
per second, latencies in milliseconds. All use synthetic inputs drawn from ``seed``.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from qbc.agents import make_expert
from qbc.bench.device import synchronized
from qbc.bench.flops import comparable_matmul, describe, train_flops_per_sample
from qbc.bench.timing import figure, interleaved_rates, paired_ratio
from qbc.chunking import make_chunk_tokenizer
from qbc.envs.make import check_env_id
from qbc.errors import InvalidValueError
from qbc.experiments.quickstart import QuickstartConfig, run_quickstart
from qbc.infra.environ import scoped_threads
from qbc.policy.chunked import ChunkARConfig, ChunkARTransformer, ChunkPolicy, build_chunk_policy
from qbc.policy.registry import ModelConfig, build_policy
from qbc.policy.wrapper import Normalizer, Policy
from qbc.rollout.coupled import coupled_rollout
from qbc.tokenizer import ActionTokenizer
from qbc.training import TrainConfig, lr_factor, make_optimizer, train_step


# -- 1. environment stepping ---------------------------------------------------------------------
def bench_env_stepping(env_id: str, sizes: tuple[int, ...], repeats: int, block_s: float,
                       seed: int) -> list[dict[str, Any]]:
    """Env steps/s of the native vector env and of ``SyncVectorEnv`` at each number of copies.

    Both step the same fixed batch of uniform random actions (unstable envs diverge and
    autoreset; that is part of the measurement). One env step = one copy advanced one step."""
    spec = check_env_id(env_id)
    if spec.vector_entry_point is None:
        raise InvalidValueError(f"{env_id} has no native vector version to compare; "
                                "pick a qbc/ env")
    rows = []
    for n in sizes:
        envs = {mode: gym.make_vec(env_id, num_envs=n, vectorization_mode=mode)
                for mode in ("vector_entry_point", "sync")}
        try:
            space = envs["sync"].action_space
            actions = np.random.default_rng(seed).uniform(space.low, space.high).astype(
                np.float32)
            for env in envs.values():
                env.reset(seed=seed)
            steppers = {m: (lambda e=e, a=actions: e.step(a)) for m, e in envs.items()}
            rates = interleaved_rates(steppers, {m: n for m in envs}, repeats, block_s)
        finally:
            for env in envs.values():
                env.close()
        rows.append({"num_envs": n, "native_steps_per_s": figure(rates["vector_entry_point"]),
                     "sync_steps_per_s": figure(rates["sync"]),
                     "ratio": paired_ratio(rates["vector_entry_point"], rates["sync"])})
    return rows


CPU = torch.device("cpu")


# -- the model under test --------------------------------------------------------------------------
def make_policy(model: ModelConfig, obs_dim: int, act_dim: int, bins: int, seed: int,
                low: float = -1.0, high: float = 1.0, device: str | torch.device = "cpu"
                ) -> Policy:
    """An untrained AR-transformer Policy (weights from ``seed``, on ``device``) with a uniform
    tokenizer over [low, high]^act_dim and an identity normaliser."""
    rng = np.random.default_rng(seed)
    tok = ActionTokenizer.fit(rng.uniform(low, high, size=(4096, act_dim)).astype(np.float32),
                              quantizer="uniform", n_bins=bins)
    with torch.random.fork_rng(devices=[]):  # seeded weights; torch's global RNG left as found
        torch.manual_seed(seed)
        module = build_policy("ar-transformer", model, obs_dim, act_dim, tok)
    norm = Normalizer(np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32),
                      np.zeros(act_dim, np.float32), np.ones(act_dim, np.float32))
    return Policy(module, norm, tok, device=device)


# -- 2. policy decoding ----------------------------------------------------------------------------
def bench_decoding(model: ModelConfig, obs_dim: int, act_dim: int, bins: int, batch: int,
                   repeats: int, block_s: float, seed: int,
                   device: torch.device = CPU) -> dict[str, Any]:
    """Actions/s of argmax decoding at ``batch`` with and without the KV cache, and the latency
    (ms) of one action at batch 1, through ``Policy.act`` (numpy in and out) and through the
    module alone; on ``device`` (each timed call waits for the GPU)."""
    policy = make_policy(model, obs_dim, act_dim, bins, seed, device=device)
    module = policy.module
    g = torch.Generator().manual_seed(seed)
    K = model.obs_history
    obs = torch.randn(batch, K, obs_dim, generator=g).to(device)
    rates = interleaved_rates(
        {"cache": synchronized(lambda: module.decode(obs, use_cache=True), device),
         "no_cache": synchronized(lambda: module.decode(obs, use_cache=False), device)},
        {"cache": batch, "no_cache": batch}, repeats, block_s)
    one = np.random.default_rng(seed).standard_normal((1, obs_dim)).astype(np.float32)
    one_t = obs[:1]
    lat = interleaved_rates(
        {"policy_act": synchronized(lambda: policy.act(one), device),
         "module_decode": synchronized(lambda: module.decode(one_t, use_cache=True), device)},
        {"policy_act": 1, "module_decode": 1}, repeats, block_s)
    return {"batch": batch, "act_dim": act_dim, "bins": bins, "d_model": model.d_model,
            "n_layers": model.n_layers,
            "actions_per_s_cache": figure(rates["cache"]),
            "actions_per_s_no_cache": figure(rates["no_cache"]),
            "cache_speedup": paired_ratio(rates["cache"], rates["no_cache"]),
            "latency_ms_batch1_policy_act": figure(lat["policy_act"], 1e3, invert=True),
            "latency_ms_batch1_module_decode": figure(lat["module_decode"], 1e3, invert=True),
            "chunked": bench_chunk_decoding(model, obs_dim, act_dim, bins, batch, repeats,
                                            block_s, seed, device=device),
            "constrained": bench_constrained_decoding(model, obs_dim, act_dim, min(batch, 256),
                                                      repeats, block_s, seed, device=device)}


def bench_chunk_decoding(model: ModelConfig, obs_dim: int, act_dim: int, bins: int, batch: int,
                         repeats: int, block_s: float, seed: int, chunk_len: int = 16,
                         chunk_tokens: int = 4, device: torch.device = CPU
                         ) -> dict[str, Any]:
    """Actions/s of a chunked AR transformer (``chunk_len`` actions from ``chunk_tokens``
    tokens, the layout of ``rvq`` with 4 levels of ``bins`` codes) against the per-step AR
    transformer (``act_dim`` tokens per action), same model size, argmax with the KV cache,
    timed alternately at ``batch`` observations per call."""
    per_step = make_policy(model, obs_dim, act_dim, bins, seed, device=device).module
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        chunked = ChunkARTransformer(ChunkARConfig(
            obs_dim=obs_dim, n_tokens=chunk_tokens, vocab_size=bins, d_model=model.d_model,
            n_layers=model.n_layers, n_heads=model.n_heads, mlp_ratio=model.mlp_ratio,
            dropout=model.dropout, chunk_len=chunk_len, action_dim=act_dim)).to(device).eval()
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, 1, obs_dim, generator=g).to(device)
    rates = interleaved_rates(
        {"chunked": synchronized(lambda: chunked.decode(obs), device),
         "per_step": synchronized(lambda: per_step.decode(obs), device)},
        {"chunked": batch * chunk_len, "per_step": batch}, repeats, block_s)
    return {"chunk_len": chunk_len, "tokens_per_chunk": chunk_tokens,
            "actions_per_s_chunked": figure(rates["chunked"]),
            "actions_per_s_per_step": figure(rates["per_step"]),
            "ratio": paired_ratio(rates["chunked"], rates["per_step"])}


def make_fast_chunk_policy(model: ModelConfig, obs_dim: int, act_dim: int, chunk_len: int,
                           seed: int, vocab_size: int = 256, n_chunks: int = 2000,
                           device: str | torch.device = "cpu", bpe: str = "char") -> Any:
    """An untrained ``chunk-ar-transformer`` ChunkPolicy (weights from ``seed``) over a ``fast``
    tokenizer (its ``bpe`` level) fitted to ``n_chunks`` smooth synthetic chunks (random walks
    of k steps, D dimensions), with room for the longest fitted sequence and an identity
    normaliser."""
    rng = np.random.default_rng(seed)
    chunks = np.cumsum(rng.normal(0, 0.1, size=(n_chunks, chunk_len, act_dim)), axis=1)
    chunks += rng.uniform(-0.5, 0.5, size=(n_chunks, 1, act_dim))
    tok = make_chunk_tokenizer("fast", vocab_size=vocab_size, bpe=bpe).fit(chunks)
    max_len = max(len(s) for s in tok.encode(chunks))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_chunk_policy("chunk-ar-transformer", model, obs_dim, act_dim, chunk_len,
                                    tok, max_len=max_len)
    norm = Normalizer(np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32),
                      np.zeros(act_dim, np.float32), np.ones(act_dim, np.float32))
    return ChunkPolicy(module, norm, tok, device=device)


def bench_constrained_decoding(model: ModelConfig, obs_dim: int, act_dim: int, batch: int,
                               repeats: int, block_s: float, seed: int, chunk_len: int = 16,
                               device: torch.device = CPU) -> dict[str, Any]:
    """FAST chunks/s of an untrained chunk AR policy generating with and without the length
    constraint (:class:`qbc.policy.chunked.LengthConstraint`), timed alternately at ``batch``
    observations per call: (1) the whole ``predict_chunks`` (generation, end-token stop, BPE
    decoding; an untrained model rarely emits the end token unconstrained, so it runs every
    position while constrained rows stop at k x D symbols), (2) generation of all positions
    with no early stop (the constraint's cost per token alone). Also the decode failures of each
    variant on one batch."""
    policy = make_fast_chunk_policy(model, obs_dim, act_dim, chunk_len, seed, device=device)
    module, constraint = policy.module, policy.constraint()
    obs_np = np.random.default_rng(seed).standard_normal((batch, obs_dim)).astype(np.float32)
    obs = torch.as_tensor(obs_np)[:, None, :].to(device)

    def predict(constrained: bool):
        policy.constrained = constrained
        return policy.predict_chunks(obs_np)

    failures = {name: int(predict(flag)[1].sum())
                for name, flag in (("constrained", True), ("unconstrained", False))}
    rates = interleaved_rates(
        {"constrained": lambda: predict(True), "unconstrained": lambda: predict(False),
         "constrained_all": synchronized(
             lambda: module.decode(obs, stop_token=-1, constraint=constraint), device),
         "unconstrained_all": synchronized(lambda: module.decode(obs, stop_token=-1), device)},
        dict.fromkeys(("constrained", "unconstrained", "constrained_all",
                       "unconstrained_all"), batch), repeats, block_s)
    policy.constrained = True
    return {"chunk_len": chunk_len, "action_dim": act_dim, "batch": batch,
            "vocab_size": int(policy.chunk_tokenizer.vocab_size),
            "positions": int(module.cfg.n_tokens),
            "decode_failures": failures,
            "chunks_per_s_constrained": figure(rates["constrained"]),
            "chunks_per_s_unconstrained": figure(rates["unconstrained"]),
            "ratio": paired_ratio(rates["unconstrained"], rates["constrained"]),
            "ratio_all_positions": paired_ratio(rates["unconstrained_all"],
                                                rates["constrained_all"])}


# -- 3. training -----------------------------------------------------------------------------------
def bench_training(model: ModelConfig, obs_dim: int, act_dim: int, bins: int, batch: int,
                   repeats: int, block_s: float, seed: int,
                   device: torch.device = CPU) -> dict[str, Any]:
    """Samples/s of ``qbc.training.train_step`` (AdamW, schedule, gradient clipping: the real step)
    on the default model, its FLOP/s from :mod:`qbc.bench.flops`, and the FLOP/s of a plain fp32
    matmul of the model's largest shape (and of 1024^3, for reference), timed in alternation, on
    ``device`` (each timed call waits for the GPU; the all-cores row is CPU only)."""
    policy = make_policy(model, obs_dim, act_dim, bins, seed, device=device)
    module = policy.module
    cfg = TrainConfig(dataset="bench", steps=2000, batch_size=batch, model=model, seed=seed)
    opt = make_optimizer(module, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    g = torch.Generator().manual_seed(seed)
    n_tok, K = module.cfg.n_tokens, model.obs_history
    batches = [{"obs": torch.randn(batch, K, obs_dim, generator=g).to(device),
                "tokens": torch.randint(bins, (batch, n_tok), generator=g).to(device)}
               for _ in range(8)]
    it = iter(range(10**12))

    def step():
        train_step(module, opt, sched, batches[next(it) % len(batches)], cfg.grad_clip)

    M, Kd, N = comparable_matmul(module.cfg, batch)
    a, b = torch.randn(M, Kd, generator=g).to(device), torch.randn(Kd, N, generator=g).to(device)
    big_a = torch.randn(1024, 1024, generator=g).to(device)
    big_b = torch.randn(1024, 1024, generator=g).to(device)
    flops = train_flops_per_sample(module.cfg)
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1

    def step_on_all_cores():
        with scoped_threads(cores):
            step()

    fns = {"train": step, "matmul": lambda: torch.mm(a, b), "matmul_1024": lambda: big_a @ big_b}
    fns = {name: synchronized(fn, device) for name, fn in fns.items()}
    work = {"train": batch, "matmul": 2.0 * M * Kd * N, "matmul_1024": 2.0 * 1024**3}
    # is the thread setting right? the same step with one thread per core (CPU only)
    if cores != threads and device.type == "cpu":
        fns["train_all_cores"], work["train_all_cores"] = step_on_all_cores, batch
    rates = interleaved_rates(fns, work, repeats, block_s)
    model_flops = {clock: [r * flops for r in v] for clock, v in rates["train"].items()}
    extra = {}
    if "train_all_cores" in rates:
        extra = {"all_cores_threads": cores,
                 "samples_per_s_all_cores": figure(rates["train_all_cores"]),
                 "all_cores_vs_threads": paired_ratio(rates["train_all_cores"], rates["train"])}
    return {**extra, "threads": threads, "batch": batch, "act_dim": act_dim,
            "flops": describe(module.cfg),
            "samples_per_s": figure(rates["train"]),
            "model_flop_per_s": figure(model_flops),
            "matmul_shape": [M, Kd, N], "matmul_flop_per_s": figure(rates["matmul"]),
            "matmul_1024_flop_per_s": figure(rates["matmul_1024"]),
            "utilisation": paired_ratio(model_flops, rates["matmul"])}


# -- 4. end to end ---------------------------------------------------------------------------------
def bench_rollout(env_id: str, model: ModelConfig, bins: int, episodes: int, horizon: int,
                  repeats: int, seed: int) -> dict[str, Any]:
    """Actions/s of ``coupled_rollout`` with an LQR expert and an (untrained) default
    AR-transformer learner on ``env_id``: (2 policies x episodes x horizon) / wall time."""
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    bound = float(env.action_space.high.max())
    env.close()
    learner = make_policy(model, obs_dim, act_dim, bins, seed, -bound, bound)
    actors = {"expert": make_expert("lqr", env_id), "learner": learner}
    seeds = range(seed, seed + episodes)
    coupled_rollout(env_id, actors, seeds, min(horizon, 5))  # warm-up
    work = len(actors) * episodes * horizon
    rates = _timed_runs(lambda: coupled_rollout(env_id, actors, seeds, horizon), repeats, work)
    return {"env_id": env_id, "episodes": episodes, "horizon": horizon, "policies": len(actors),
            "act_dim": act_dim, "actions_per_s": figure(rates)}


def _timed_runs(fn, repeats: int, work: float) -> dict[str, list[float]]:
    """Rates work / seconds of ``repeats`` calls of ``fn``, by wall-clock and CPU time."""
    rates: dict[str, list[float]] = {"wall": [], "cpu": []}
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        rates["wall"].append(work / (time.perf_counter() - t0))
        rates["cpu"].append(work / max(time.process_time() - c0, 1e-9))
    return rates


def bench_quickstart(repeats: int, seed: int) -> dict[str, Any]:
    """Wall time (s) of ``qbc quickstart --tiny`` run in this process (its imports are already
    loaded; its report goes to a temporary folder and its summary is not printed)."""
    runs = iter(range(repeats))
    with tempfile.TemporaryDirectory(prefix="qbc-bench-") as tmp:
        def once():
            cfg = QuickstartConfig(out=Path(tmp) / f"run{next(runs)}", tiny=True, seed=seed,
                                   progress=False)
            with contextlib.redirect_stdout(io.StringIO()):
                run_quickstart(cfg)

        rates = _timed_runs(once, repeats, 1.0)
    return {"seconds": figure(rates, 1.0, invert=True)}
