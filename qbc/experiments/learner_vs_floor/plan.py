"""The learner-vs-floor comparison's plan: the names of its runs and datasets, the flags of the
``qbc`` commands that make them, and how those commands run (their output in a log file) and are
marked finished (:mod:`qbc.experiments.learner_vs_floor.comparison`)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from qbc.errors import InvalidValueError
from qbc.experiments.learner_vs_floor.config import ENVS, FloorConfig
from qbc.infra.child_processes import run as run_command
from qbc.policy.registry import ModelConfig, model_flag, model_reads
from qbc.training.settings import TOKEN_FLAGS


# -- running the commands ------------------------------------------------------------------------
def qbc_command(args: list[str], log: Path, env: dict[str, str]) -> None:
    """Run ``qbc ARGS`` with its output in ``log``; raise with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ qbc {shlex.join(args)}\n")
        fh.flush()
        returncode = run_command([sys.executable, "-m", "qbc.cli", *args], stdout=fh,
                                 stderr=subprocess.STDOUT, env=env)
    if returncode == 2:  # the command refused its input (one line): a setting of the user's
        refusal = [line for line in log.read_text(errors="replace").splitlines()
                   if line.startswith(f"qbc {args[0]}") and ": error: " in line]
        raise InvalidValueError(f"{refusal[-1] if refusal else f'qbc {args[0]} refused'} "
                                f"(its log: {log})")
    if returncode != 0:
        tail = log.read_text().splitlines()[-5:]
        raise RuntimeError(f"qbc {args[0]} failed (rc {returncode}), see {log}:\n"
                           + "\n".join(tail))


class Plan:
    """Names of every run and dataset of one comparison, and the commands that make them."""

    def __init__(self, cfg: FloorConfig):
        self.cfg = cfg
        self.out = cfg.out.resolve()
        self.env = {**os.environ, "MINARI_DATASETS_PATH": str(self.out / "datasets")}
        if cfg.workers > 1:
            self.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    @staticmethod
    def slug(env_id: str) -> str:
        return env_id.replace("/", "_").replace("-", "_").lower()

    def dataset(self, env_id: str, seed: int, kind: str, quantizer: str = "") -> str:
        tag = f"-{quantizer}" if quantizer else ""
        return f"floor/{self.slug(env_id)}-s{seed}-{kind}{tag}-v0"

    def run_dir(self, env_id: str, seed: int, name: str) -> Path:
        return self.out / "runs" / self.slug(env_id) / f"seed{seed}" / name

    def horizon(self, env_id: str) -> int:
        return self.cfg.horizon or ENVS[env_id].horizon

    def common_collect(self, env_id: str, seed: int) -> list[str]:
        flags = ["--env", env_id, "--expert", ENVS[env_id].expert, "--episodes",
                 str(self.cfg.episodes), "--seed", str(1000 * seed), "--num-envs",
                 str(min(self.cfg.episodes, 50)), "--no-progress"]
        if self.cfg.max_episode_steps:
            flags += ["--max-episode-steps", str(self.cfg.max_episode_steps)]
        return flags

    def train_flags(self, quantizer: str | None, seed: int) -> list[str]:
        extra = self.cfg.extra_train_flags
        if quantizer is None:  # mlp-mse: qbc train refuses the token flags it would ignore
            extra = _without_token_flags(extra)
        flags = ["--seed", str(seed), "--no-progress", "--rollout-episodes", "0", *extra]
        if quantizer is not None:
            flags += ["--policy", "ar-transformer", "--quantizer", quantizer,
                      "--bins", str(self.cfg.bins)]
        if self.cfg.steps:
            flags += ["--steps", str(self.cfg.steps)]
        return flags


def _without_token_flags(flags: list[str]) -> list[str]:
    """``flags`` without the settings mlp-mse would ignore (the token settings,
    :data:`qbc.training.settings.TOKEN_FLAGS`, and the model settings it does not read) and
    their values."""
    ignored = (*TOKEN_FLAGS, *(model_flag(name) for name in ModelConfig.__dataclass_fields__
                               if name not in model_reads("mlp-mse")))
    out: list[str] = []
    skip_value = False
    for item in flags:
        if skip_value and not item.startswith("--"):
            skip_value = False
            continue
        skip_value = item.split("=")[0] in ignored and "=" not in item
        if item.split("=")[0] not in ignored:
            out.append(item)
    return out


def finished(path: Path) -> bool:
    return (path / ".floor-done").exists()


def mark_finished(path: Path) -> None:
    (path / ".floor-done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
