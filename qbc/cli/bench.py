"""``qbc bench``: measured speed against the natural baselines, in one process, as one table.

Sections: (1) native vector env vs Gymnasium's SyncVectorEnv, (2) AR-transformer decoding with
and without the KV cache and its batch-1 latency, chunked decoding, and FAST generation with and
without constrained decoding (its cost, and the decode failures of each), (3) training
samples/s and FLOP/s against a plain matmul of comparable size, (4) coupled rollout actions/s
and the tiny quickstart's wall time. Every figure is the median of repeated blocks after a
warm-up, with the spread.
``--device cuda`` measures sections 2 and 3 on the GPU instead (the others are CPU work) and
reports model FLOP utilisation against the GPU's peak (:mod:`qbc.bench.device`).
torch's thread count (``--threads``) and, for sections 2 and 4, oneDNN off (``--disable-onednn``,
the opt-in of :mod:`qbc.policy.inference`) hold for the run only and are put back afterwards.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qbc.bench import sections
from qbc.bench.device import peak_info
from qbc.bench.timing import machine_info
from qbc.cli import Command
from qbc.infra.environ import scoped_threads
from qbc.infra.files import atomic_write_json, json_safe
from qbc.infra.progress import progress_bar
from qbc.infra.run_folder import output_file
from qbc.infra.validate import AT_LEAST_ONE, POSITIVE, Rule, check_all, check_config, check_device
from qbc.policy.inference import onednn_disabled
from qbc.policy.registry import ModelConfig, check_model_config

#: Settings that --quick shrinks (full-run value, quick value); fields left at None take them.
_MODES = {"repeats": (5, 3), "block_s": (0.3, 0.1), "rollout_episodes": (256, 64),
          "rollout_horizon": (200, 50), "quickstart_repeats": (3, 1)}


@dataclass
class BenchConfig:
    """Measure qbc's speed against its baselines and print one table with ratios."""

    quick: bool = False
    """fewer and shorter repeats and a smaller rollout (about a minute on 2 cores)."""
    json: Path | None = None
    """also write the results (with this resolved config and the machine) to this JSON file."""
    overwrite: bool = False
    """replace an existing --json file."""
    threads: int = 1
    """torch CPU threads (0 = torch's default). One is the robust choice for the default model on
    a small shared machine: with a core to spare two threads trained 1.44x faster in the run of
    docs/performance.md, but when other processes ran they waited on each other and trained at
    0.02-0.4x the one-thread rate (see the training section)."""
    repeats: int | None = None
    """timed blocks per figure (default 5; 3 with --quick)."""
    block_s: float | None = None
    """seconds per timed block (default 0.3; 0.1 with --quick)."""
    env: str = "qbc/LinearUnstable-v0"
    """env of the stepping and rollout measurements (a qbc/ env with a native vector version)."""
    env_sizes: tuple[int, ...] = (1, 64, 1024)
    """numbers of env copies to step."""
    act_dim: int = 4
    """action dimensions D (tokens per action) of the decoding and training measurements."""
    obs_dim: int = 8
    """observation length of the decoding and training measurements."""
    bins: int = 64
    """vocabulary size per token (qbc train's default)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model settings (qbc train's defaults)."""
    train_batch: int = 256
    """samples per training step (qbc train's default)."""
    decode_batch: int = 1024
    """observations per decoding call."""
    rollout_episodes: int | None = None
    """episodes of the coupled rollout (default 256; 64 with --quick)."""
    rollout_horizon: int | None = None
    """steps per rollout episode (default 200; 50 with --quick)."""
    quickstart: bool = True
    """also time `qbc quickstart --tiny` (the slowest part)."""
    quickstart_repeats: int | None = None
    """runs of the tiny quickstart (default 3; 1 with --quick)."""
    seed: int = 0
    """seed of the synthetic data, actions and weights."""
    disable_onednn: bool = True
    """decode (sections 2 and 4) with oneDNN switched off, the opt-in of
    ``Policy(disable_onednn=True)``; --no-disable-onednn measures torch's default."""
    device: str = "cpu"
    """cpu, or cuda[:N] / auto: run the decoding and training sections on that GPU (env stepping,
    rollout and quickstart are skipped: they are CPU work). Refused when no GPU is available.
    Give it a model large enough to matter, e.g. --model.d-model 512 --model.n-layers 8
    --model.n-heads 8 --train-batch 1024."""
    peak_tflops: float | None = None
    """the GPU's peak TFLOP/s for model FLOP utilisation (default: the spec-sheet figure of a
    known GPU, fp32 or TF32 as torch runs fp32 matmuls; see qbc.bench.device)."""


#: Ranges of the numeric flags (the --model.* ones: check_model_config).
BENCH_RULES = {"threads": Rule(lo=0, integer=True), "repeats": AT_LEAST_ONE,
               "block_s": POSITIVE, "act_dim": AT_LEAST_ONE, "obs_dim": AT_LEAST_ONE,
               "bins": Rule(lo=2, integer=True), "train_batch": AT_LEAST_ONE,
               "decode_batch": AT_LEAST_ONE, "rollout_episodes": AT_LEAST_ONE,
               "rollout_horizon": AT_LEAST_ONE, "quickstart_repeats": AT_LEAST_ONE,
               "peak_tflops": Rule(lo=0, lo_open=True, optional=True)}


def resolve(cfg: BenchConfig) -> BenchConfig:
    """Fill the settings left at None from the full or quick defaults, and check them."""
    mode = 1 if cfg.quick else 0
    cfg = replace(cfg, **{k: v[mode] for k, v in _MODES.items() if getattr(cfg, k) is None})
    check_config(cfg, BENCH_RULES)  # also: floats finite, ints in 64 bits, --seed in range
    check_model_config(cfg.model)
    check_all([(min(cfg.env_sizes, default=0) >= 1,
                f"--env-sizes must be positive integers, got {list(cfg.env_sizes)}")])
    device = check_device(cfg.device)  # e.g. "--device cuda: CUDA is not available here"
    check_all([(device.type in ("cpu", "cuda"),
                f"--device {cfg.device}: qbc bench times cpu or cuda[:N] only")])
    return cfg


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every measurement; print the table; write --json if given. Returns the results."""
    cfg = resolve(cfg)
    # --json as every one-file output: a folder or an existing file (without --overwrite) is
    # refused before the measurements (a folder failed after them), and the file is locked
    # against a second bench writing it
    with (output_file(cfg.json, cfg.overwrite, "bench", "--json") if cfg.json is not None
          else nullcontext()) as out, scoped_threads(cfg.threads):
        result = _measure(cfg, machine_info())
        if out is not None:
            atomic_write_json(out, json_safe(result))
    print(format_table(result))
    return result


def _measure(cfg: BenchConfig, machine: dict[str, Any]) -> dict[str, Any]:
    device = check_device(cfg.device)
    on_gpu = device.type != "cpu"
    result: dict[str, Any] = {"config": json_safe(cfg), "machine": machine,
                              "device": peak_info(device, cfg.peak_tflops)}

    def decoding():
        with onednn_disabled(cfg.disable_onednn):
            return sections.bench_decoding(cfg.model, cfg.obs_dim, cfg.act_dim, cfg.bins,
                                           cfg.decode_batch, cfg.repeats, cfg.block_s, cfg.seed,
                                           device=device)

    def training():
        out = sections.bench_training(cfg.model, cfg.obs_dim, cfg.act_dim, cfg.bins,
                                      cfg.train_batch, cfg.repeats, cfg.block_s, cfg.seed,
                                      device=device)
        peak = result["device"]["peak_flop_per_s"]
        if peak:
            out["mfu"] = figure_scaled(out["model_flop_per_s"], 1 / peak)
        return out

    def rollout():
        with onednn_disabled(cfg.disable_onednn):
            return sections.bench_rollout(cfg.env, cfg.model, cfg.bins, cfg.rollout_episodes,
                                          cfg.rollout_horizon, cfg.repeats, cfg.seed)

    steps = [("env", lambda: sections.bench_env_stepping(
                 cfg.env, cfg.env_sizes, cfg.repeats, cfg.block_s, cfg.seed)),
             ("decoding", decoding), ("training", training), ("rollout", rollout)]
    if on_gpu:
        steps = [(name, fn) for name, fn in steps if name in ("decoding", "training")]
    elif cfg.quickstart:
        steps.append(("quickstart", lambda: sections.bench_quickstart(cfg.quickstart_repeats,
                                                                      cfg.seed)))
    bar = progress_bar(steps, desc="qbc bench", unit="part", leave=False)
    for name, fn in bar:
        bar.set_postfix_str(name)
        result[name] = fn()
    bar.close()
    result["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["targets"] = check_targets(result)
    return result


def check_targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue with the measured median and whether it is met."""
    out = {}
    big = [row for row in r.get("env", []) if row["num_envs"] == 1024]
    if big:
        v = big[0]["ratio"]["wall"]["median"]
        out["env_ratio_1024"] = {"value": v, "target": ">= 50x", "met": v >= 50}
    v = r["decoding"]["cache_speedup"]["wall"]["median"]
    out["cache_speedup"] = {"value": v, "target": ">= 2x", "met": v >= 2}
    v = r["decoding"]["latency_ms_batch1_policy_act"]["wall"]["median"]
    out["latency_ms"] = {"value": v, "target": "< 1 ms", "met": v < 1}
    v = r["decoding"]["chunked"]["ratio"]["wall"]["median"]
    out["chunk_decoding_ratio"] = {"value": v, "target": ">= 4x", "met": v >= 4}
    c = r["decoding"].get("constrained")
    if c is not None:  # FAST generation under the length constraint vs free generation
        v = c["ratio"]["wall"]["median"]
        out["constrained_decoding_cost"] = {"value": v, "target": "<= 1.5x", "met": v <= 1.5}
        out["constrained_decode_failures"] = {"value": c["decode_failures"]["constrained"],
                                              "target": "0",
                                              "met": c["decode_failures"]["constrained"] == 0}
    if r.get("device", {}).get("device", "cpu") == "cpu":  # the CPU target: vs a same-size matmul
        v = r["training"]["utilisation"]["wall"]["median"]
        out["utilisation"] = {"value": v, "target": ">= 40%", "met": v >= 0.4}
    return out


def figure_scaled(f: dict[str, Any], scale: float) -> dict[str, Any]:
    """A figure (``{"wall": summary, "cpu": summary}``) with every number times ``scale``."""
    return {clock: {k: (v * scale if isinstance(v, float) else v) for k, v in s.items()}
            for clock, s in f.items()}


# -- the table -------------------------------------------------------------------------------------
def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _cell(f: dict[str, Any], fmt=_si, clock: str = "wall") -> str:
    """median ±half-range (as % of the median) of one clock of a figure."""
    s = f[clock]
    spread = (s["max"] - s["min"]) / 2 / s["median"] * 100 if s["median"] else 0.0
    return f"{fmt(s['median'])} ±{spread:.0f}%"


def _mark(t: dict[str, Any] | None) -> str:
    return "" if t is None else ("  [target met]" if t["met"] else "  [target NOT met]")


def format_table(r: dict[str, Any]) -> str:
    """The one table of a ``qbc bench`` result ``r``: the machine, then one block per section."""
    t = r.get("targets", {})
    dev = r.get("device") or {"device": "cpu"}
    lines = _machine_lines(r, dev) + _env_lines(r, t) + _decoding_lines(r, t)
    lines += _training_lines(r, t, dev) + _end_to_end_lines(r)
    return "\n".join(lines)


def _machine_lines(r: dict[str, Any], dev: dict[str, Any]) -> list[str]:
    m, c = r["machine"], r["config"]
    load = " / ".join(f"{x:.2f}" for x in m["load_average"] or [])
    after = " / ".join(f"{x:.2f}" for x in r.get("load_average_after") or [])
    lines = [
        "figures by wall-clock time; 'by CPU time' = this process's CPU seconds (what an idle "
        "machine would give)",
        f"qbc bench{' --quick' if c['quick'] else ''}: {m['cpu']}, {m['cores']} cores, "
        f"torch {m['torch']} ({m['torch_threads']} threads, {m['torch_cpu_capability']}), "
        f"numpy {m['numpy']}, python {m['python']}",
        f"load average (1/5/15 min) before: {load}; after: {after}",
        f"each figure: median of {c['repeats']} timed blocks (~{c['block_s']} s) after a warm-up, "
        "±half the range of the blocks"]
    if dev["device"] != "cpu":
        lines.append(f"device {dev['device']} ({dev['name']}): sections 2 and 3 on the GPU, "
                     f"fp32 matmuls {'with' if dev['tf32'] else 'without'} TF32; sections 1 and "
                     "4 skipped (CPU work)")
    return lines


def _env_lines(r: dict[str, Any], t: dict[str, Any]) -> list[str]:
    c = r["config"]
    lines: list[str] = []
    if "env" in r:
        lines += ["", f"1. env stepping, {c['env']}, env steps/s",
                  f"   {'copies':>8} {'native':>16} {'SyncVectorEnv':>16} {'ratio':>14}"]
    for row in r.get("env", []):
        mark = _mark(t.get("env_ratio_1024")) if row["num_envs"] == 1024 else ""
        lines.append(f"   {row['num_envs']:>8} {_cell(row['native_steps_per_s']):>16} "
                     f"{_cell(row['sync_steps_per_s']):>16} "
                     f"{_cell(row['ratio'], lambda x: f'{x:.1f}x'):>14}{mark}")
    return lines


def _decoding_lines(r: dict[str, Any], t: dict[str, Any]) -> list[str]:
    d = r["decoding"]
    lines = [
        "",
        f"2. decoding, AR transformer D={d['act_dim']}, vocab {d['bins']}, d_model "
        f"{d['d_model']}, {d['n_layers']} layers, argmax",
        f"   batch {d['batch']}: {_cell(d['actions_per_s_cache'])} actions/s with KV cache, "
        f"{_cell(d['actions_per_s_no_cache'])} without; speed-up "
        f"{_cell(d['cache_speedup'], lambda x: f'{x:.2f}x')}{_mark(t.get('cache_speedup'))}",
        f"   batch 1 latency: Policy.act {_cell(d['latency_ms_batch1_policy_act'], _ms)}"
        f"{_mark(t.get('latency_ms'))}; module.decode "
        f"{_cell(d['latency_ms_batch1_module_decode'], _ms)}",
        f"   (by CPU time: Policy.act {_cell(d['latency_ms_batch1_policy_act'], _ms, 'cpu')}, "
        f"module.decode {_cell(d['latency_ms_batch1_module_decode'], _ms, 'cpu')})",
        f"   chunked, k = {d['chunked']['chunk_len']} actions from "
        f"{d['chunked']['tokens_per_chunk']} tokens (rvq layout), same model, batch {d['batch']}: "
        f"{_cell(d['chunked']['actions_per_s_chunked'])} actions/s vs per-step "
        f"{_cell(d['chunked']['actions_per_s_per_step'])}; ratio "
        f"{_cell(d['chunked']['ratio'], lambda x: f'{x:.1f}x')}"
        f"{_mark(t.get('chunk_decoding_ratio'))}"]
    cd = d.get("constrained")
    if cd is not None:
        fails = cd["decode_failures"]
        lines += [
            f"   FAST constrained decoding, k = {cd['chunk_len']}, D = {cd['action_dim']}, "
            f"untrained, batch {cd['batch']}: {_cell(cd['chunks_per_s_constrained'])} chunks/s vs "
            f"{_cell(cd['chunks_per_s_unconstrained'])} unconstrained; cost "
            f"{_cell(cd['ratio'], lambda x: f'{x:.2f}x')}"
            f"{_mark(t.get('constrained_decoding_cost'))} (all {cd['positions']} positions, no "
            f"early stop: {_cell(cd['ratio_all_positions'], lambda x: f'{x:.2f}x')}); decode "
            f"failures {fails['constrained']} vs {fails['unconstrained']} of {cd['batch']}"
            f"{_mark(t.get('constrained_decode_failures'))}"]
    return lines


def _training_lines(r: dict[str, Any], t: dict[str, Any], dev: dict[str, Any]) -> list[str]:
    tr = r["training"]
    M, K, N = tr["matmul_shape"]
    lines = [
        "",
        f"3. training (train_step: AdamW + clipping), batch {tr['batch']}, "
        f"{tr['flops']['train_per_sample'] / 1e6:.2f} MFLOP/sample (3 x forward)",
        f"   {_cell(tr['samples_per_s'])} samples/s = {_cell(tr['model_flop_per_s'])}FLOP/s; "
        f"fp32 matmul ({M}x{K})@({K}x{N}): {_cell(tr['matmul_flop_per_s'])}FLOP/s "
        f"(1024^3: {_cell(tr['matmul_1024_flop_per_s'])}FLOP/s)",
        f"   utilisation {_cell(tr['utilisation'], lambda x: f'{x:.0%}')}"
        f"{_mark(t.get('utilisation'))} (by CPU time: "
        f"{_cell(tr['utilisation'], lambda x: f'{x:.0%}', 'cpu')}, "
        f"{_cell(tr['samples_per_s'], clock='cpu')} samples/s)"]
    if "mfu" in tr:
        lines.append(f"   model FLOP utilisation {_cell(tr['mfu'], lambda x: f'{x:.1%}')} of "
                     f"{dev['peak_flop_per_s'] / 1e12:.4g} TFLOP/s ({dev['peak_source']})")
    elif dev["device"] != "cpu":
        lines.append(f"   model FLOP utilisation: peak of {dev['name']} unknown; pass "
                     "--peak-tflops")
    if "samples_per_s_all_cores" in tr:
        lines.append(
            f"   same step with {tr['all_cores_threads']} threads: "
            f"{_cell(tr['samples_per_s_all_cores'])} samples/s = "
            f"{_cell(tr['all_cores_vs_threads'], lambda x: f'{x:.2f}x')} the "
            f"{tr['threads']}-thread rate")
    return lines


def _end_to_end_lines(r: dict[str, Any]) -> list[str]:
    if "rollout" not in r:
        return []
    ro = r["rollout"]
    lines = [
        "",
        f"4. end to end: coupled rollout {ro['env_id']}, expert (LQR) + learner, "
        f"{ro['episodes']} episodes x {ro['horizon']} steps: {_cell(ro['actions_per_s'])} "
        "actions/s"]
    if "quickstart" in r:
        lines.append(f"   qbc quickstart --tiny: {_cell(r['quickstart']['seconds'], _s)} wall")
    return lines


def _ms(x: float) -> str:
    return f"{x:.3g} ms"


def _s(x: float) -> str:
    return f"{x:.1f} s"


COMMAND = Command(BenchConfig, run_bench,
                  "measured speed vs the natural baselines (env, decoding, training, e2e)",
                  renamed_flags={"--env-id": "--env"})
