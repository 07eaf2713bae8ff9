"""Stochastic depth on residual branches (Huang et al. 2016, "Deep Networks with Stochastic Depth").

In training each SAMPLE's residual branch is dropped with probability ``p`` and kept ones are
scaled by ``1 / (1 - p)``, so the expected output equals the eval-time output; at eval it is the
identity. Training with it makes a network robust to bypassing a block at runtime (LWAC). MRLA
and ELA models also use it on their attention branch (``layerwise.models.mrla``).

Schedule over the N blocks that have a shortcut, in forward order (block i = 1..N):
``"linear"`` (default, Huang et al. eq. p_l = l/L * p_L): p_i = p * i / N, so the last block gets
``p`` and early blocks are rarely dropped; ``"constant"``: every block gets ``p`` (trains every
block to be bypassable, which suits LWAC's bypass of early blocks).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import ModelConfigError

SCHEDULES = ("linear", "constant")


def check_drop_path(p: float) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ModelConfigError(f"drop_path must be in [0, 1), not {p}: use e.g. drop_path=0.2")
    return p


class DropPath(nn.Module):
    """Drop the whole input of a sample with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = check_drop_path(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def apply_drop_path(model: nn.Module, p: float, schedule: str = "linear") -> None:
    """Set the drop-path probability of every residual block of ``model`` that has a shortcut."""
    from .blocks import ResidualBlock  # blocks imports this module

    p = check_drop_path(p)
    if schedule not in SCHEDULES:
        raise ModelConfigError(
            f"drop_path_schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock) and m.shortcut is not None]
    for i, block in enumerate(blocks, start=1):
        block.drop_path = DropPath(p * i / len(blocks) if schedule == "linear" else p)
