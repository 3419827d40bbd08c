"""Training curves for the ecosystem's viewers, beside ``metrics.jsonl`` (which stays the record).

* TensorBoard event files in ``<run>/tensorboard/`` (``qbc train --tensorboard``, on by default
  when the optional ``tensorboardX`` package is installed: ``pip install 'qbc[tensorboard]'``).
  tensorboardX writes the same event format as ``torch.utils.tensorboard`` without needing the
  ``tensorboard`` package (and its web server) installed; view with ``tensorboard --logdir``.
* Weights & Biases in offline mode in ``<run>/wandb/`` (``qbc train --wandb``; ``pip install
  'qbc[wandb]'``); upload later with ``wandb sync``.

    log = RunLog(out, config, tensorboard=True, wandb=False)
    log.scalars({"train/loss": 0.3, "train/lr": 1e-3}, step=10)
    log.close()
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from qbc.errors import InvalidValueError
from qbc.infra.environ import scoped_environ

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    """Whether tensorboardX (the event-file writer qbc uses) is installed."""
    return importlib.util.find_spec("tensorboardX") is not None


def check_run_log(wandb: bool) -> None:
    """Refuse ``--wandb`` before any output is written when wandb is not installed."""
    if wandb and importlib.util.find_spec("wandb") is None:
        raise InvalidValueError("--wandb needs the wandb package: pip install 'qbc[wandb]' "
                                "(or drop --wandb; TensorBoard files are written without it)")


class RunLog:
    """Scalars to TensorBoard and/or W&B (offline); a no-op when neither is on or installed.

    ``tensorboard``: write event files when tensorboardX is installed (silently skipped when it
    is not); ``wandb``: log to an offline W&B run (refused by :func:`check_run_log` when wandb
    is missing). ``step`` is the optimisation step."""

    def __init__(self, out: str | Path, config: dict[str, Any] | None = None,
                 tensorboard: bool = True, wandb: bool = False):
        check_run_log(wandb)
        self.out, self.config = Path(out), dict(config or {})
        self.use_tb = bool(tensorboard) and tensorboard_available()
        self.use_wandb = bool(wandb)
        self.tb = self.wandb_run = None
        self._env_scope: Any = None
        self.closed = False

    @property
    def writing(self) -> list[str]:
        """The back-ends in use."""
        return [n for n, on in (("tensorboard", self.use_tb), ("wandb", self.use_wandb)) if on]

    def _open(self) -> None:
        """Start the writers at the first scalar: after the run directory was prepared (a
        refused run writes nothing; --overwrite clears old curves first)."""
        # tensorboardX's crc32c and wandb set environment variables when imported / started:
        # restored by close(), so the process is left as it was found.
        self._env_scope = scoped_environ()
        self._env_scope.__enter__()
        if self.use_tb:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(logdir=str(self.out / TENSORBOARD_DIR), flush_secs=30)
        if self.use_wandb:
            self.wandb_run = _wandb_run(self.out, self.config)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        """Log every finite number in ``values`` (others, e.g. None or strings, are skipped)."""
        clean = {k: float(v) for k, v in values.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)
                 and math.isfinite(float(v))}
        if not clean or not self.writing or self.closed:
            return
        if self._env_scope is None:
            self._open()
        if self.tb is not None:
            for name, value in clean.items():
                self.tb.add_scalar(name, value, global_step=int(step))
        if self.wandb_run is not None:
            self.wandb_run.log(clean, step=int(step))

    def close(self) -> None:
        self.closed = True
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.finish()
            wandb.teardown()  # stops the W&B service process this run started
            self.wandb_run = None
        if self._env_scope is not None:
            self._env_scope.__exit__(None, None, None)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _wandb_run(out: Path, config: dict[str, Any]) -> Any:
    """An offline W&B run in ``out/wandb`` (arguments only: no environment variables set)."""
    import wandb

    (out / "wandb").mkdir(parents=True, exist_ok=True)
    return wandb.init(project="qbc", name=out.name, dir=str(out), mode="offline",
                      config=config, reinit="create_new",
                      settings=wandb.Settings(silent=True, console="off"))


def record_scalars(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A metrics record as ``{prefix/key: value}``, without its step and wall time."""
    return {f"{prefix}/{k}": v for k, v in record.items() if k not in ("step", "elapsed_s")}
