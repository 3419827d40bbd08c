"""Data-parallel training under torchrun: the process group, rank roles, the DDP wrapper.

``torchrun --nproc-per-node N`` starts N copies of the trainer (``qbc train``; the command line is
in the README, "Distributed training"); each finds its RANK, WORLD_SIZE and LOCAL_RANK in its
environment. :func:`session` joins them in one process group (gloo on CPU, NCCL on CUDA) and yields
a :class:`DistContext`; run without torchrun it yields the single-process context, so the trainer
keeps one code path:

>>> with session(device) as ctx:
...     module = ctx.wrap(policy, device)            # DDP under torchrun, ``policy`` otherwise
...     batch = ctx.shard(global_batch)              # this rank's rows of the global batch
...     loss = ctx.mean(train_step(module, ...))     # the global batch's loss on every rank

Every rank draws the same global batch and trains on its own contiguous slice of it, so the
averaged DDP gradient is the single-process gradient of that batch up to float rounding.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from qbc.errors import InvalidValueError, QbcError

T = TypeVar("T")


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from the variables torchrun sets, or None without them."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        raise InvalidValueError(
            "RANK / WORLD_SIZE / LOCAL_RANK must be integers; launch with torchrun, or unset "
            "them for a single-process run") from None
    if not 0 <= rank < world:
        raise InvalidValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    return rank, world, local


def main_process() -> bool:
    """Whether this process prints and writes: True outside torchrun and on its rank 0 (the
    commands' printing; the library asks its :class:`DistContext`)."""
    env = torchrun_env()
    return env is None or env[0] == 0


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, each process takes the GPU of its LOCAL_RANK (one GPU per process)."""
    env = torchrun_env()
    if env is None or device.type != "cuda":
        return device
    local = env[2]
    if local >= torch.cuda.device_count():
        raise InvalidValueError(
            f"LOCAL_RANK {local} has no GPU of its own ({torch.cuda.device_count()} visible); "
            "start at most one process per GPU (torchrun --nproc-per-node), or use --device cpu")
    return torch.device("cuda", local)


class _LossForward(nn.Module):
    """``forward(batch) = policy.loss(batch)``: DDP synchronises the gradients of what runs
    through ``forward`` only, so the training objective has to be the forward pass."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.policy.loss(batch)


class LossDDP(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel over a policy, called like one: ``loss(batch)``.

    The parameters are the policy's own tensors; save ``.policy`` (the unwrapped module)."""

    def __init__(self, policy: nn.Module, device: torch.device):
        ids = [device.index] if device.type == "cuda" else None
        super().__init__(_LossForward(policy), device_ids=ids)

    @property
    def policy(self) -> nn.Module:
        return self.module.policy

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes.

    ``active`` is False for a plain single-process run; then every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    active: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, shows progress and runs rollouts."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def wrap(self, policy: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: :class:`LossDDP` over ``policy`` when active, else ``policy``.
        Construction broadcasts rank 0's weights to every rank."""
        return LossDDP(policy, device) if self.active else policy

    def shard_bounds(self, n: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of a global batch of ``n`` rows (``n`` divisible by
        ``world_size``: equal shards make the mean of the ranks' losses the global mean)."""
        if n % self.world_size:
            raise InvalidValueError(
                f"--batch-size {n} is not a multiple of the {self.world_size} processes; choose "
                f"a multiple of {self.world_size} (it is the global batch, split across them)")
        size = n // self.world_size
        return self.rank * size, (self.rank + 1) * size

    def shard(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's contiguous slice (along dim 0) of every tensor of a global batch."""
        if not self.active:
            return batch
        lo, hi = self.shard_bounds(len(next(iter(batch.values()))))
        return {k: v[lo:hi] for k, v in batch.items()}

    def mean(self, x: float, device: torch.device | None = None) -> float:
        """The mean of ``x`` over the ranks (every rank gets it)."""
        if not self.active:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)  # SUM: gloo has no AVG
        return float(t.item()) / self.world_size

    def share(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a picklable object made by this same program)."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result to every rank. An error on rank 0 is
        raised there and, as a :class:`QbcError` with the same message, on the other ranks, so
        no rank is left waiting for a rank that has stopped."""
        if not self.active:
            return fn()
        result: tuple[bool, Any] = (True, None)
        error: BaseException | None = None
        if self.is_main:
            try:
                result = (True, fn())
            except Exception as exc:  # every rank has to hear about it before rank 0 re-raises
                result, error = (False, str(exc)), exc
        ok, value = self.share(result)
        if error is not None:
            raise error
        if not ok:
            raise QbcError(f"(rank 0) {value}")
        return value

    def decorrelate_rng(self, seed: int, step: int) -> None:
        """Reseed torch's global RNG (dropout) on ranks > 0, so the ranks' shards do not get the
        same dropout masks; rank 0 keeps the single-process stream."""
        if self.active and self.rank > 0:
            torch.manual_seed((seed * 1_000_003 + self.rank * 7919 + step) % (2**63))


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[DistContext]:
    """The process group of a torchrun launch, for the duration of the block.

    Without torchrun: the single-process context. Inside an existing process group (nested
    sessions, or a caller that initialised one): that group, left for its owner to destroy.
    Otherwise the group is created (gloo for CPU, NCCL for CUDA devices) and destroyed on exit.
    """
    env = torchrun_env()
    dist = torch.distributed
    if env is None and not (dist.is_available() and dist.is_initialized()):
        yield DistContext()
        return
    if not dist.is_available():
        raise InvalidValueError("launched with torchrun but this torch has no torch.distributed")
    if dist.is_initialized():
        local = env[2] if env is not None else 0
        yield DistContext(dist.get_rank(), dist.get_world_size(), local, active=True)
        return
    rank, world, local = env
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "gloo" and not dist.is_gloo_available():
        raise InvalidValueError("this torch build has no gloo backend; train on CUDA (nccl)")
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=rank, world_size=world,
                            device_id=device if backend == "nccl" else None)
    try:
        yield DistContext(rank, world, local, active=True)
    finally:
        dist.destroy_process_group()
