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


class Eq5Regularizer:
    """Eq. (5)'s second term as ``train``'s extra_loss, with its weight set so that it SHAPES the
    fine-tune instead of swamping it, and its share of the loss recorded.

    The paper gives no value for eta. A fixed eta makes the term's size depend on the model's
    weight count (on resnet20, eta = 1e-5 gives about 0.15 against a fine-tune cross-entropy of
    0.001-0.005). So with ``share > 0`` eta is calibrated ONCE, on the first fine-tune batch, to
    eta = share / (1 - share) * CE_0 / R_0 (R = sum_l (1 - I_l) ||mask_l ⊙ W_l||_1), i.e. the term is
    ``share`` of the loss at the start; it then stays fixed. With ``share == 0`` the given ``eta`` is
    used as it is. ``stats()`` reports eta and the term's measured share of the loss
    (reg / (CE + reg)) over the fine-tune: first, mean, last batch.
    """

    def __init__(self, targets: list[tuple[str, nn.Module]], importance: dict[str, float], *, eta: float,
                 share: float = 0.0):
        self.raw = sparsity_regularizer(targets, importance, 1.0)
        self.eta = None if share > 0 else float(eta)
        self.share = float(share)
        self.shares: list[float] = []

    def __call__(self, model, outputs, targets) -> torch.Tensor:
        from ..train.evaluation import logits_of
        reg = self.raw(model, outputs, targets)
        ce = float(torch.nn.functional.cross_entropy(logits_of(outputs).detach(), targets))
        if self.eta is None:
            self.eta = self.share / (1.0 - self.share) * ce / max(float(reg.detach()), 1e-12)
        term = self.eta * reg
        t = float(term.detach())
        self.shares.append(t / (ce + t) if ce + t > 0 else 0.0)
        return term

    def stats(self) -> dict:
        s = self.shares
        return {"eta": self.eta, "target_share": self.share or None, "batches": len(s),
                "share_first": s[0] if s else None, "share_mean": sum(s) / len(s) if s else None,
                "share_last": s[-1] if s else None,
                "source": "reg / (cross-entropy + reg) per fine-tune batch (eq. 5)"}


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
