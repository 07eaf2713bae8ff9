"""Parameter count."""

from __future__ import annotations

import torch


def count_params(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements, each distinct parameter counted once.

    A module or weight shared by several parents (tied weights) is counted once, because
    ``Module.parameters()`` removes duplicates. Buffers (BatchNorm statistics) are not
    parameters. Dynamically quantized modules hold packed weights that are not parameters, so
    they count 0 here: use :func:`layerwise.measure.artifact_size` for what a model occupies.
    """
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return int(total)
