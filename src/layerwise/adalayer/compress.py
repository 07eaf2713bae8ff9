"""Applying eq. (4) to a model: masks, fake-quant for the fine-tune, the eq. (5) regulariser, and
the bake that turns the fine-tuned model into THE fake-quant model the packed file reproduces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from .packed import passthrough_keys, stored_passthrough
from .quantize import FakeQuantize, QuantizedWeight, magnitude_mask, quantize_weight


def make_masks(targets: list[tuple[str, nn.Module]], prune_ratio: dict[str, float]) -> dict[str, torch.Tensor]:
    """Per-layer magnitude masks at P_l (eq. 4's (1 - P_l) ⊙ W)."""
    return {name: magnitude_mask(mod.weight, prune_ratio.get(name, 0.0)) for name, mod in targets}


def quantize_layers(targets: list[tuple[str, nn.Module]], masks: dict[str, torch.Tensor],
                    bits: dict[str, int]) -> dict[str, QuantizedWeight]:
    """Eq. (4) for every target layer from its current weights."""
    return {name: quantize_weight(_raw_weight(mod), masks[name], bits[name]) for name, mod in targets}


def _raw_weight(mod: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(mod, "weight"):
        return mod.parametrizations.weight.original
    return mod.weight


def attach_fake_quant(targets: list[tuple[str, nn.Module]], masks: dict[str, torch.Tensor],
                      bits: dict[str, int]) -> None:
    """Make every target compute with Q_B(mask ⊙ W) (STE) while its float W is trained."""
    for name, mod in targets:
        parametrize.register_parametrization(mod, "weight", FakeQuantize(masks[name], bits[name]))


def sparsity_regularizer(targets: list[tuple[str, nn.Module]], importance: dict[str, float],
                         eta: float) -> Callable[[nn.Module, object, torch.Tensor], torch.Tensor]:
    """Eq. (5)'s second term, eta * sum_l (1 - I_l) * ||mask_l ⊙ W_l||_1, as ``train``'s extra_loss."""
    def extra_loss(_model, _outputs, _targets) -> torch.Tensor:
        total = 0.0
        for name, mod in targets:
            w = _raw_weight(mod)
            if parametrize.is_parametrized(mod, "weight"):
                w = w * mod.parametrizations.weight[0].mask
            total = total + (1.0 - importance[name]) * w.abs().sum()
        return eta * total
    return extra_loss


@torch.no_grad()
def bake(model: nn.Module, targets: list[tuple[str, nn.Module]], masks: dict[str, torch.Tensor],
         bits: dict[str, int], passthrough_dtype: str = "float16") -> dict[str, QuantizedWeight]:
    """Fix the compressed weights: every target's weight becomes dequantize(codes, scale), every other
    float tensor is rounded to the passthrough dtype, fake-quant is removed. The model is then
    exactly what the packed file stores. Returns the quantized weights to pack."""
    quantized = quantize_layers(targets, masks, bits)
    for name, mod in targets:
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
        mod.weight.data = quantized[name].dequantize().to(mod.weight.dtype)
    state = model.state_dict()
    for key in passthrough_keys(state, quantized):
        state[key].copy_(stored_passthrough(state[key], passthrough_dtype))
    return quantized
