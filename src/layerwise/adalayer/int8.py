"""The ``torch-int8`` baseline: what a PyTorch user would pick instead of AdaLayerNet.

Global L1 magnitude pruning (``torch.nn.utils.prune.global_unstructured``) of the same conv/linear
weights at AdaLayerNet's overall sparsity, a fine-tune with the masks fixed, then PyTorch's
dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``) of Linear and LSTM layers.
Dynamic quantization does not touch Conv layers: they stay fp32, and the zeros left by pruning
are stored densely by ``torch.save``. Its artifact is the saved state_dict.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune


def global_prune(model: nn.Module, targets: list[tuple[str, nn.Module]], sparsity: float) -> None:
    """Global L1 unstructured pruning at ``sparsity`` (masks kept as forward pre-hooks until removed)."""
    named = dict(model.named_modules())
    params = [(named[name], "weight") for name, _ in targets]
    if sparsity > 0:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(sparsity))


def finalize(model: nn.Module) -> None:
    for mod in model.modules():
        if prune.is_pruned(mod) and hasattr(mod, "weight_orig"):
            prune.remove(mod, "weight")


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of Linear and LSTM layers (a copy; conv layers stay fp32)."""
    return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear, nn.LSTM},
                                                  dtype=torch.qint8)
