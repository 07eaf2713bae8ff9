"""Integer execution of the compressed model: integer weights AND activations on PyTorch's x86
quantized engine (FX graph mode, the flow of :mod:`.int8`), and its activation memory.

The packed file's layers hold B-bit codes (B <= 8) times a per-channel scale. After FX folds
BatchNorm into the convolutions (a per-channel factor f_c), a layer's weight is still
``code * (scale_c * f_c)`` with the same integer codes, so :func:`integer_model` replaces the int8
weight the x86 observer would pick by the EXACT one: per channel scale max|w_c| / qmax(B) and
zero point 0, whose int8 codes are the packed codes (sign-flipped where f_c < 0). Only the
activations (per-tensor uint8, calibrated on validation samples, no fine-tune) and the int32 bias
add rounding; the accuracy of the integer model is therefore reported beside the packed model's.
Pruned weights are int8 zeros: the x86 kernels are dense, so the speed-up over fp32 comes from
int8 arithmetic, not from sparsity. The weights are prepacked for one quantized engine (``engine``,
default :data:`.int8.ENGINE`, FBGEMM: the faster at batch 1; see :mod:`.int8`), set around every
prepacking step and restored afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from ..measure._util import module_hooks
from .int8 import (ENGINE, StaticInt8, StaticQuantError, _convert, _prepare, _quiet, calibration_batches, check_engine,
                   quantized_engine, quantized_ops)
from .quantize import qmax


def _float_weight(mod: nn.Module) -> torch.Tensor | None:
    w = getattr(mod, "weight", None)
    if isinstance(w, torch.Tensor):
        return w.detach().clone()
    if isinstance(mod, nn.Sequential) and len(mod) and isinstance(getattr(mod[0], "weight", None), torch.Tensor):
        return mod[0].weight.detach().clone()  # fused ConvReLU / LinearReLU
    return None


def integer_model(model: nn.Module, bits: dict[str, int], val_dataset, example_input: torch.Tensor, *,
                  samples: int = 256, engine: str = ENGINE) -> StaticInt8:
    """Static int8 of the compressed ``model`` (left unchanged) with each layer in ``bits`` given
    its exact integer codes (module docstring), prepacked for ``engine``; ``model=None`` with the
    reason when it cannot (an engine this torch build lacks is a :class:`StaticQuantError`)."""
    check_engine(engine)
    batches, n = calibration_batches(val_dataset, samples)
    try:
        prepared = _prepare(model, example_input)
        with torch.no_grad(), _quiet():
            for x in batches:
                prepared(x.cpu())
        folded = {name: w for name, mod in prepared.named_modules() if name in bits
                  for w in [_float_weight(mod)] if w is not None}
        q = _convert(prepared, engine)
        exact = 0
        with quantized_engine(engine):  # set_weight_bias prepacks again
            for name, mod in q.named_modules():
                if name not in folded or not hasattr(mod, "set_weight_bias"):
                    continue
                w = folded[name].float()
                m = qmax(bits[name])
                scale = (w.reshape(w.shape[0], -1).abs().amax(1) / m).clamp_min(1e-12).double()
                qw = torch.quantize_per_channel(w, scale, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
                mod.set_weight_bias(qw, mod.bias())
                exact += 1
        with torch.no_grad():
            q(example_input.cpu())
    except StaticQuantError as e:
        return StaticInt8(None, reason=str(e), calibration_samples=n, engine=engine)
    except Exception as e:  # noqa: BLE001 - any failure of the quantized graph is a reason, not a crash
        return StaticInt8(None, reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", calibration_samples=n,
                          engine=engine)
    ops = quantized_ops(q)
    ops["exact_packed_codes_layers"] = exact
    return StaticInt8(q, calibration_samples=n, ops=ops, engine=engine)


def activation_peak_bytes(model: nn.Module, example_input: torch.Tensor) -> tuple[int, str]:
    """The largest input + output bytes of any single leaf module in one forward pass (tensors as
    stored: 4 bytes per fp32 value, 1 per quint8): the activation working set one layer needs.
    Returns (bytes, layer name). A model-level estimate from tensor sizes, not an allocator reading."""
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    peak = [0, ""]

    def nbytes(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (tuple, list)):
            return sum(nbytes(o) for o in obj)
        return 0

    def post(name):
        def hook(_mod, args, out):
            b = nbytes(args) + nbytes(out)
            if b > peak[0]:
                peak[0], peak[1] = b, name
        return hook
    with module_hooks(leaves, post=post), torch.no_grad():
        model(example_input)
    return int(peak[0]), str(peak[1])
