"""DistributedDataParallel plumbing for runs under ``torchrun``.

A run is distributed when ``torch.distributed`` is already initialised or the environment says
``WORLD_SIZE > 1`` (torchrun sets it, with RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT). We then
initialise the process group ourselves (gloo on CPU, NCCL on CUDA). We destroy it when the
process exits, not when ``train`` returns: re-creating the default group in the same process reuses
the store keys of the old one and can hang, and a runner may call ``train`` more than once.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import LayerwiseError

__all__ = ["DistContext", "setup", "teardown", "resolve_device"]


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created: bool = False  # we initialised the process group (destroyed at exit)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum a small tensor over ranks (in place); a no-op in a single process."""
        if self.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics drift apart without SyncBN)."""
        if self.enabled:
            for buf in module.buffers():
                dist.broadcast(buf, src=0)


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> torch.device:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise LayerwiseError(f"unknown device {name!r}: use 'cpu' or 'cuda'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LayerwiseError(f"device {name!r} requested but CUDA is not available here: use --device cpu")
        if distributed:  # one GPU per process: torchrun's LOCAL_RANK picks it
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise LayerwiseError(f"device {name!r} is not supported: use 'cpu' or 'cuda'")
    return device


def setup(device_name: str) -> tuple[DistContext, torch.device]:
    """Join (or create) the process group if this is a distributed run; pick this rank's device."""
    if dist.is_available() and dist.is_initialized():
        ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_available():
            raise LayerwiseError("WORLD_SIZE > 1 but this torch build has no torch.distributed: run one process")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        device = resolve_device(device_name, local_rank, distributed=True)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
        atexit.register(_destroy)
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, True), device
    else:
        ctx = DistContext()
    return ctx, resolve_device(device_name, ctx.local_rank, distributed=ctx.enabled)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def teardown(ctx: DistContext) -> None:
    """End of a ``train`` call: wait for every rank (so none exits while others still save)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
