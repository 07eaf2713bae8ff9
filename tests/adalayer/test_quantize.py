"""Eq. (4): the magnitude mask, per-channel symmetric quantization, and the STE."""

import torch

from layerwise.adalayer import fake_quantize, magnitude_mask, quantize_weight
from layerwise.adalayer.quantize import qmax


def test_mask_removes_exactly_the_smallest():
    w = torch.tensor([[0.1, -0.5, 0.3], [-0.05, 0.9, 0.2]])
    m = magnitude_mask(w, 0.5)
    assert m.sum() == 3
    assert m.tolist() == [[False, True, True], [False, True, False]]


def test_codes_in_range_and_max_maps_to_qmax():
    torch.manual_seed(0)
    w = torch.randn(8, 3, 3, 3)
    for bits in (2, 4, 8):
        q = quantize_weight(w, torch.ones_like(w, dtype=torch.bool), bits)
        assert q.codes.abs().max() == qmax(bits)
        assert q.scale.dtype == torch.float16 and q.scale.shape == (8,)
        err = (q.dequantize() - w).abs().max(dim=-1).values.max()
        assert float(err) <= float(q.scale.float().max()) * 0.51 + 1e-3  # half a step (+ fp16 scale rounding)


def test_pruned_positions_are_zero_codes():
    w = torch.randn(4, 16)
    mask = magnitude_mask(w, 0.75)
    q = quantize_weight(w, mask, 4)
    assert torch.all(q.codes[~mask] == 0) and q.nonzero == 16


def test_ste_gradient_passes_through_kept_weights_only():
    w = torch.randn(4, 6, requires_grad=True)
    mask = magnitude_mask(w, 0.5)
    out = fake_quantize(w, mask, 3)
    assert torch.equal(out.detach(), quantize_weight(w, mask, 3).dequantize())
    g = torch.randn(4, 6)
    out.backward(g)
    assert torch.equal(w.grad, g * mask)
