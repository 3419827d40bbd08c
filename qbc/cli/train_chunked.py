"""``qbc train-chunked``: train a chunk policy (:func:`qbc.training.chunked.run_train_chunked`)
and print its summary. Its flags are the fields of
:class:`qbc.training.chunked.ChunkTrainConfig`. Under torchrun
(``torchrun --nproc-per-node N -m qbc.cli train-chunked ...``) every rank trains and rank 0
alone prints."""

from __future__ import annotations

from typing import Any

from qbc.cli import Command
from qbc.cli.train import CONFIG_FILE, rollout_line
from qbc.training.chunked import ChunkTrainConfig, run_train_chunked
from qbc.training.distributed import main_process


def run(cfg: ChunkTrainConfig) -> dict[str, Any]:
    """:func:`~qbc.training.chunked.run_train_chunked`, its summary printed by rank 0."""
    summary = run_train_chunked(cfg)
    if main_process():
        print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """A few lines: what was trained, losses, the tokenizer, the closing rollout."""
    val = "-" if s["best_val_loss"] is None else f"{s['best_val_loss']:.4g}"
    err = s.get("best_val_action_rmse")
    b = s.get("budget") or {}
    stop = (f" of {b['steps']} (stopped early: no lower validation action error in "
            f"{b['patience']} evaluations)" if b.get("stopped_early") else "")
    lines = [f"trained {s['policy']} (k = {s['chunk_k']}) on {s['dataset']}: {s['steps']} steps"
             f"{stop} over {s['train_rows']} chunks, {s['train_samples_per_s']:.0f} chunks/s",
             f"  final train loss {s['final_train_loss']:.4g}; best/ at step {s['best_step']}: "
             "validation action error "
             + ("-" if err is None else f"{err:.4g} (RMS, action units)") + f", val loss {val}"]
    if s.get("tokenizer"):
        t = s["tokenizer"]
        length = t["n_tokens"] if t["n_tokens"] is not None else f"<= {t['positions'] - 1}"
        lines.append(f"  chunk tokenizer {t['name']}: {length} tokens per chunk, vocabulary "
                     f"{t['vocab']}")
    lines.append(f"  checkpoint: {s['checkpoint']}")
    r = s.get("rollout")
    if r:
        ex = r.execution
        lines.append(rollout_line(r))
        lines.append(f"  executed {ex.execute}: {ex.chunks} chunks predicted, "
                     f"{ex.decode_failures} decode failures (repaired)")
        floor = r.actors.get("chunk_floor")
        if floor is not None and floor.regret is not None:
            ratio = (f"; learner / floor {r.regret / floor.regret:.3g}x" if floor.regret
                     else "")
            lines.append(f"  chunk floor (the expert's plans through the tokenizer, "
                         f"{ex.execute}): regret {floor.regret:.4g}, "
                         f"{floor.failed_fraction:.0%} failed{ratio}")
    return "\n".join(lines)


CHUNK_TRAIN_COMMAND = Command(
    ChunkTrainConfig, run, "train a chunk policy (next k actions: chunk tokens or L1 regression)",
    config_file=CONFIG_FILE)
