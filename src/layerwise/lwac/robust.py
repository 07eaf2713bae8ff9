"""Training a base model so that bypassing a unit at run time costs little accuracy.

A network trained with every unit always present leans on each of them: bypassing any single
residual block of a plain-trained CIFAR ResNet-20 costs 15-50 points (measured on the zoo's
ResNet-20; see bench/lwac_bench.py). LWAC's hard gate therefore needs a base trained for it:

* residual zoo models: stochastic depth on the residual branch (``drop_path``, schedule
  ``"constant"`` so every block learns to be skipped) and the last BatchNorm of each branch
  initialised to zero (:func:`residual_model_kwargs`);
* multi-branch models: :func:`branch_dropout`, which replaces a whole branch's output by zeros
  for a random subset of the samples of each training batch, scaling kept outputs by 1/(1-p),
  exactly what the ACU's bypass feeds the head at run time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ..layers import find_layers

RESIDUAL_KWARGS = {"drop_path": 0.2, "drop_path_schedule": "constant", "zero_init_residual": True}


def residual_model_kwargs(p: float = 0.2) -> dict:
    return {**RESIDUAL_KWARGS, "drop_path": p}


@contextlib.contextmanager
def branch_dropout(model: nn.Module, p: float = 0.2, seed: int = 0) -> Iterator[int]:
    """While active, each ``block_kind == "branch"`` unit's output is zeroed per sample with
    probability ``p`` in training mode (kept outputs scaled by 1/(1-p)); yields how many
    branches it acts on. Hooks are always removed."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"branch dropout p must be in [0, 1), not {p}")
    gen = torch.Generator().manual_seed(seed)
    branches = [m for _, m, kind in find_layers(model, "block") if kind == "branch"]

    def hook(mod, args, out):
        if not mod.training or p == 0.0:
            return out
        keep = (torch.rand((out.shape[0],) + (1,) * (out.dim() - 1), generator=gen) >= p).to(out)
        return out * keep / (1.0 - p)

    handles = [b.register_forward_hook(hook) for b in branches]
    try:
        yield len(branches)
    finally:
        for h in handles:
            h.remove()
