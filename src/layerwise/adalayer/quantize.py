"""Eq. (4): W_opt = Q_B((1 - P) ⊙ W): a magnitude mask at ratio P, then per-output-channel
symmetric uniform quantization to B bits; and the fake-quant used while fine-tuning.

The dequantised weight is always computed by :func:`dequantize` (``q.float() * scale.float()``
with an fp16 scale), on the fine-tuned model and in the packed-file loader alike, so the model
rebuilt from the packed file is bit-identical to the fake-quant model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerwiseError

MIN_SCALE = 2.0 ** -14  # smallest normal float16: a scale never underflows to 0 when stored as fp16


def qmax(bits: int) -> int:
    """Largest code of a symmetric signed ``bits``-bit quantizer: codes are -qmax..qmax."""
    if not 2 <= bits <= 16:
        raise LayerwiseError(f"bit width {bits} is out of range: use 2..16 bits")
    return 2 ** (bits - 1) - 1


def magnitude_mask(weight: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask keeping all but the ``round(ratio * numel)`` smallest-|w| weights (eq. 4's (1 - P)).

    Ties are broken by position (stable sort), so the count removed is exact and deterministic.
    """
    if not 0.0 <= ratio < 1.0:
        raise LayerwiseError(f"pruning ratio {ratio} is out of range: use a value in [0, 1)")
    flat = weight.detach().abs().flatten()
    k = int(round(ratio * flat.numel()))
    mask = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        mask[torch.argsort(flat, stable=True)[:k]] = False
    return mask.view_as(weight)


def _per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def channel_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """fp16 scale per output channel (axis 0): max|w_c| / qmax, at least MIN_SCALE.

    Rounded UP to the next float16 where float16 rounding went down so far that max|w_c| would
    land beyond ``(qmax + 1/2) * scale`` and be clipped by more than half a step (possible at
    12-16 bits, up to ``qmax * 2**-12`` steps). A scale beyond float16's range is an error, never
    inf.
    """
    amax = _per_channel(weight.detach().float()).abs().amax(dim=1)
    exact = (amax / qmax(bits)).clamp_min(MIN_SCALE)
    s16 = exact.to(torch.float16)
    low = amax > (qmax(bits) + 0.5) * s16.to(torch.float32)
    if bool(low.any()):
        up = torch.nextafter(s16,
                             torch.full_like(s16, float("inf")))
        s16 = torch.where(low, up, s16)
    if not bool(torch.isfinite(s16).all()):
        raise LayerwiseError(
            f"weights up to {float(amax.max()):.4g} need a quantization scale beyond float16's "
            f"range at {bits} bits; use more bits or rescale the layer (e.g. fold it into a norm)")
    return s16


def _view(scale: torch.Tensor, ndim: int) -> torch.Tensor:
    return scale.to(torch.float32).view(-1, *([1] * (ndim - 1)))


def quantize_codes(weight: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes round(w / scale) clipped to [-qmax, qmax] (int32)."""
    m = qmax(bits)
    return torch.clamp(torch.round(weight.detach().float() / _view(scale, weight.dim())), -m, m).to(torch.int32)


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes * scale`` in float32: THE dequantiser, shared by fake-quant, bake and loader."""
    return codes.to(torch.float32) * _view(scale, codes.dim())


@dataclass
class QuantizedWeight:
    """One compressed weight: codes (0 where pruned), fp16 per-channel scales, mask, bit width."""

    codes: torch.Tensor  # int32, the weight's shape
    scale: torch.Tensor  # float16, (out_channels,)
    mask: torch.Tensor  # bool, the weight's shape
    bits: int

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes, self.scale)

    @property
    def nonzero(self) -> int:
        return int(self.mask.sum())


def quantize_weight(weight: torch.Tensor, mask: torch.Tensor, bits: int) -> QuantizedWeight:
    """Eq. (4) for one layer: Q_B(mask ⊙ W) with per-output-channel symmetric scales."""
    masked = weight.detach().float() * mask
    scale = channel_scale(masked, bits)
    codes = quantize_codes(masked, scale, bits) * mask
    return QuantizedWeight(codes=codes.to(torch.int32), scale=scale, mask=mask.clone(), bits=int(bits))


class _FakeQuantSTE(torch.autograd.Function):
    """Forward: the exact dequantised Q_B(mask ⊙ W). Backward: straight-through, masked."""

    @staticmethod
    def forward(ctx, weight, mask, bits):
        ctx.save_for_backward(mask)
        return quantize_weight(weight, mask, bits).dequantize()

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None


def fake_quantize(weight: torch.Tensor, mask: torch.Tensor, bits: int) -> torch.Tensor:
    return _FakeQuantSTE.apply(weight, mask, bits)


class FakeQuantize(nn.Module):
    """A ``torch.nn.utils.parametrize`` parametrization: ``weight -> Q_B(mask ⊙ weight)`` with STE."""

    def __init__(self, mask: torch.Tensor, bits: int):
        super().__init__()
        self.register_buffer("mask", mask.clone())
        self.bits = int(bits)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.mask, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, density={float(self.mask.float().mean()):.3f}"
