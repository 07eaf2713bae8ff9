"""Do UnIT's three executions agree on real inputs? Reference vs compiled kernels vs fixed point.

For each converted layer of a calibrated model, the layer's real input (captured on a few samples
as the UnIT model runs) goes through

1. the PyTorch reference (:mod:`.reference`), exact division;
2. the compiled scalar kernels (:mod:`.kernels`), exact division: counts must be EQUAL, outputs
   equal to float32 rounding (different summation order);
3. the int16 fixed-point kernels (:mod:`.fixed_point`), exact integer division, compared with the
   reference run on the DEQUANTISED input, weight, bias and threshold (so both decide on the same
   numbers): counts must be equal (exact whenever every ``|x_q * w_q| < 2**24``, see
   :mod:`.fixed_point`); outputs differ by SONIC's per-product rounding, at most half an LSB per
   executed MAC plus the output rounding.

The Q format is the largest ``frac_bits`` (<= ``max_frac_bits``) at which input, weight, bias and
output fit int16; the threshold keeps ``2f`` fractional bits.
Also checked: with ``T = 0`` the reference (slow path, no shortcut) reproduces the dense layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayerwiseError
from .convert import unit_layers
from .fixed_point import QFormat, fixed_conv2d, fixed_linear, quantize_threshold
from .kernels import unit_conv_kernel, unit_linear_kernel
from .layers import UnITLinear
from .reference import unit_conv, unit_linear


@dataclass
class LayerAgreement:
    """Agreement of the three executions on one layer."""

    layer: str
    samples: int
    qformat: str
    counts_reference: dict
    kernel_counts_equal: bool
    kernel_max_abs_diff: float
    fixed_counts_equal: bool
    fixed_max_abs_diff: float
    fixed_bound: float             # the rounding bound the fixed output must meet
    dense_at_t0_max_abs_diff: float

    @property
    def ok(self) -> bool:
        return (self.kernel_counts_equal and self.fixed_counts_equal
                and self.fixed_max_abs_diff <= self.fixed_bound)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["ok"] = self.ok
        return d


def capture_inputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Input of every UnIT layer on ``x`` (hooks always removed)."""
    seen: dict[str, Tensor] = {}
    handles = []
    try:
        for name, m in unit_layers(model):
            handles.append(m.register_forward_pre_hook(
                lambda mod, args, _n=name: seen.__setitem__(_n, args[0].detach().clone())))
        was = model.training
        model.eval()
        with torch.no_grad():
            model(x)
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    return seen


def _conv_kw(m) -> dict:
    return dict(stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                padding_mode=m.padding_mode)


def _pick_format(m, x: Tensor, max_frac_bits: int) -> QFormat:
    for f in range(max_frac_bits, -1, -1):
        q = QFormat(f)
        try:
            xq, wq = q.quantize(x), q.quantize(m.weight)
            if m.bias is not None:
                q.quantize(m.bias)
            # the dense output must fit int16 as well
            xd, wd = q.dequantize(xq), q.dequantize(wq)
            y = (F.linear(xd, wd, m.bias) if isinstance(m, UnITLinear)
                 else (F.conv1d if wd.dim() == 3 else F.conv2d)(
                     F.pad(xd, _pads(m)) if _pads(m) else xd, wd, m.bias, stride=m.stride,
                     dilation=m.dilation, groups=m.groups))
            q.quantize(y * 1.25)   # headroom: partial sums can exceed the final value
            return q
        except LayerwiseError:
            continue
    raise LayerwiseError("no int16 Q format holds this layer's values; rescale the model")


def _pads(m) -> list[int]:
    from .reference import _tuple, conv_pads
    nd = m.weight.dim() - 2
    pads = conv_pads(m.padding, tuple(m.weight.shape[2:]), _tuple(m.dilation, nd))
    return pads if any(pads) else []


def layer_agreement(name: str, m: nn.Module, x: Tensor, *, max_frac_bits: int = 10) -> LayerAgreement:
    """Run the three executions of one UnIT layer on input ``x`` (module docstring)."""
    w, b, t = m.weight.detach(), (m.bias.detach() if m.bias is not None else None), m.unit_threshold
    lin = isinstance(m, UnITLinear)
    kw = {} if lin else _conv_kw(m)
    ref = (unit_linear if lin else unit_conv)
    y_ref, c_ref = ref(x, w, b, t, fast_path=False, **kw)
    k = (unit_linear_kernel if lin else unit_conv_kernel)(x, w, b, t, **kw)
    y_dense = (F.linear(x, w, b) if lin else None)
    if not lin:
        pads = _pads(m)
        xp = F.pad(x, pads, mode="constant" if m.padding_mode == "zeros" else m.padding_mode) if pads else x
        y_dense = (F.conv1d if w.dim() == 3 else F.conv2d)(xp, w, b, stride=m.stride,
                                                           dilation=m.dilation, groups=m.groups)
    y0, _ = ref(x, w, b, torch.zeros_like(t), fast_path=False, **kw)

    q = _pick_format(m, x, max_frac_bits)
    f = q.frac_bits
    out = w.shape[0]
    t_w, _ = quantize_threshold(t, out, q, threshold_frac_bits=2 * f, name=name)
    g = t.numel()
    t_deq = torch.as_tensor(t_w.reshape(g, out // g)[:, 0], dtype=torch.float64) / 2 ** (2 * f)
    xq, wq = q.quantize(x), q.quantize(w)
    bq = q.quantize(b) if b is not None else None
    fixed = (fixed_linear if lin else fixed_conv2d)(xq, wq, bq, t_deq.to(torch.float32), qformat=q,
                                                    threshold_frac_bits=2 * f, name=name, **kw)
    bd = q.dequantize(bq) if bq is not None else None
    y_fref, c_fref = ref(q.dequantize(xq), q.dequantize(wq), bd, t_deq.to(torch.float32),
                         fast_path=False, **kw)
    # F_MUL rounds each product to the nearest LSB: at most half an LSB per executed MAC, and an
    # output has at most fan-in executed MACs; plus float32 rounding of the reference
    fan_in = w[0].numel()
    bound = 0.5 / q.scale * fan_in + 1e-5 * float(y_fref.abs().max() if y_fref.numel() else 0.0)
    diff_fixed = float((q.dequantize(fixed.output) - y_fref).abs().max()) if y_fref.numel() else 0.0
    return LayerAgreement(
        layer=name, samples=int(c_ref.samples), qformat=str(q), counts_reference=c_ref.to_json(),
        kernel_counts_equal=(k.counts == c_ref),
        kernel_max_abs_diff=float((k.output - y_ref).abs().max()),
        fixed_counts_equal=(fixed.counts == c_fref),
        fixed_max_abs_diff=diff_fixed, fixed_bound=float(bound),
        dense_at_t0_max_abs_diff=float((y0 - y_dense).abs().max()))


def model_agreement(model: nn.Module, x: Tensor, *, max_frac_bits: int = 10) -> list[LayerAgreement]:
    """:func:`layer_agreement` for every UnIT layer of a calibrated model on inputs ``x``."""
    inputs = capture_inputs(model, x)
    return [layer_agreement(n, m, inputs[n], max_frac_bits=max_frac_bits)
            for n, m in unit_layers(model) if n in inputs]
