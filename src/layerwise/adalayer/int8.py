"""The ``int8-static`` rival: what a PyTorch user runs instead of AdaLayerNet.

Static post-training int8 quantization of the trained fp32 model, no pruning and no fine-tune:
convolutions and linears with per-channel int8 weights and per-tensor uint8 activations whose
ranges are calibrated on a few hundred VALIDATION samples, run on PyTorch's ``x86`` quantized
engine (fbgemm/oneDNN int8 kernels, e.g. ``quantized::conv2d``).

Which flow. The PT2E flow (``torch.ao.quantization.quantize_pt2e`` with ``X86InductorQuantizer``)
is tried first; torch 2.13 no longer ships it (it moved to the separate ``torchao`` package, and
its output only runs as int8 once compiled by Inductor), so the FX graph mode flow is used:
``prepare_fx`` / ``convert_fx`` with ``get_default_qconfig_mapping("x86")`` (BatchNorm folded
into the convolutions, ReLU fused, residual adds as ``quantized::add_relu``). Layers the x86
mapping does not cover statically (LSTM/GRU, transposed convs) stay fp32 and are listed.

The artifact is ``torch.save(state_dict)`` of the converted model (int8 weights, per-channel
scales and zero points, activation scales), the same kind of file as the dense variant's:
:func:`rebuild_static` loads it into the converted graph of the same architecture, and the
command measures the model rebuilt from that file.

A model FX cannot trace (data-dependent control flow, unsupported ops) raises
:class:`StaticQuantError`; the command then records the variant with accuracy ``null`` and the
reason.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LayerwiseError

BACKEND = "x86"
FLOW = "fx"
FLOW_TEXT = ("FX graph mode static PTQ: torch.ao.quantization.quantize_fx.prepare_fx/convert_fx with "
             "get_default_qconfig_mapping('x86'), per-channel int8 weights, per-tensor uint8 activations")
# float modules that still hold weights after conversion (left fp32 by the static x86 mapping)
_FLOAT_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.LSTM, nn.GRU, nn.RNN, nn.ConvTranspose1d,
                   nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding)


class StaticQuantError(LayerwiseError):
    """The model cannot be quantized statically (the reason is the message)."""


def pt2e_unavailable() -> str | None:
    """Why the PT2E flow cannot be used in this torch build, or None when it can be imported."""
    try:
        importlib.import_module("torch.ao.quantization.quantize_pt2e")
        importlib.import_module("torch.ao.quantization.quantizer.x86_inductor_quantizer")
    except ImportError as e:
        return (f"torch {torch.__version__} has no PT2E quantization in torch.ao ({e}); it moved to the "
                "torchao package, which is not a dependency, and its X86InductorQuantizer graph runs int8 "
                "kernels only after torch.compile (Inductor)")
    return None


@contextlib.contextmanager
def _quiet():
    """torch 2.13 warns on every FX quantization call that the API is deprecated; say it once in docs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _engine() -> None:
    if BACKEND not in torch.backends.quantized.supported_engines:
        raise StaticQuantError(f"this torch build has no {BACKEND!r} quantized engine "
                               f"(it has {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = BACKEND


def _prepare(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx
    _engine()
    m = copy.deepcopy(model).cpu().eval()
    try:
        with _quiet():
            return prepare_fx(m, get_default_qconfig_mapping(BACKEND), example_inputs=(example_input.cpu(),))
    except Exception as e:  # torch.fx tracing raises many types (TraceError, TypeError, NotImplementedError...)
        raise StaticQuantError(f"FX cannot trace the model for static quantization: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}"[:400]) from e


def _convert(prepared: nn.Module) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx
    try:
        with _quiet():
            return convert_fx(prepared).eval()
    except Exception as e:
        raise StaticQuantError(f"convert_fx failed: {type(e).__name__}: {e}"[:400]) from e


def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor], example_input: torch.Tensor) -> nn.Module:
    """Static int8 copy of ``model`` (left unchanged), calibrated on the batches of ``calibration``.

    The copy runs on the CPU. :class:`StaticQuantError` if it cannot be traced, converted or run,
    or if nothing in it was quantized."""
    prepared = _prepare(model, example_input)
    n = 0
    try:
        with torch.no_grad(), _quiet():
            for x in calibration:
                prepared(x.cpu())
                n += int(x.shape[0])
    except Exception as e:
        raise StaticQuantError(f"the observed model failed on calibration data: {type(e).__name__}: {e}"[:400]) from e
    if n == 0:
        raise StaticQuantError("no calibration samples (the validation split is empty)")
    q = _convert(prepared)
    try:
        with torch.no_grad():
            q(example_input.cpu())
    except Exception as e:
        raise StaticQuantError(f"the quantized model does not run: {type(e).__name__}: {e}"[:400]) from e
    if not quantized_ops(q)["quantized_modules"]:
        raise StaticQuantError("no convolution or linear layer was quantized (nothing the x86 static mapping "
                               "covers)")
    return q


def rebuild_static(model: nn.Module, example_input: torch.Tensor, state_dict: dict) -> nn.Module:
    """The converted model of ``model``'s architecture with the quantized ``state_dict`` loaded
    (what a user does with the saved file); strict, so a key missing either way is an error."""
    prepared = _prepare(model, example_input)
    with torch.no_grad(), _quiet():
        prepared(example_input.cpu())  # observers need one batch before convert
    q = _convert(prepared)
    q.load_state_dict(state_dict, strict=True)
    return q.eval()


def load_static_state(path) -> dict:
    """The state_dict saved for int8-static (quantized tensors load with ``weights_only=True``)."""
    with _quiet():  # torch 2.13 rebuilds quantized tensors through the deprecated TypedStorage
        return torch.load(path, map_location="cpu", weights_only=True)


def _is_quantized_module(mod: nn.Module) -> bool:
    return type(mod).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized"))


def quantized_ops(model: nn.Module) -> dict:
    """What the converted graph executes: quantized modules by type, quantized functional ops
    (``quantized::add_relu``, ...) by name, and layers with weights still in fp32."""
    mods = Counter(type(m).__name__ for _, m in model.named_modules() if _is_quantized_module(m)
                   and hasattr(m, "weight"))
    funcs: Counter = Counter()
    graph = getattr(model, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op == "call_function":
            t = str(getattr(node.target, "_qualified_op_name", None) or getattr(node.target, "__name__", node.target))
            if t.startswith("quantized") or "quantize_per" in t:
                funcs[t] += 1
    float_layers = [f"{n} ({type(m).__name__})" for n, m in model.named_modules()
                    if isinstance(m, _FLOAT_WEIGHTED) and not _is_quantized_module(m)]
    return {"quantized_modules": dict(sorted(mods.items())), "quantized_functions": dict(sorted(funcs.items())),
            "float_layers": float_layers}


def quantized_params(model: nn.Module) -> int:
    """Nonzero stored numbers of a converted model: int8 weights and biases of the quantized
    layers (``parameters()`` sees none of them) plus the parameters left in fp32."""
    total = 0
    for mod in model.modules():
        if _is_quantized_module(mod) and callable(getattr(mod, "weight", None)):
            w = mod.weight()
            total += int(torch.count_nonzero(w.int_repr() if w.is_quantized else w))
            b = mod.bias() if callable(getattr(mod, "bias", None)) else None
            if b is not None:
                total += int(torch.count_nonzero(b))
        for p in mod.parameters(recurse=False):
            total += int(torch.count_nonzero(p))
    return total


@dataclass
class StaticInt8:
    """The outcome of :func:`static_int8`: the quantized model, or why there is none."""

    model: nn.Module | None
    reason: str | None = None
    calibration_samples: int = 0
    ops: dict = field(default_factory=dict)
    flow: str = FLOW

    def to_json(self) -> dict:
        return {"flow": self.flow, "flow_detail": FLOW_TEXT, "backend": BACKEND,
                "pt2e": pt2e_unavailable() or "available", "calibration_split": "val",
                "calibration_samples": self.calibration_samples, "executed": self.ops, "reason": self.reason}


def calibration_batches(dataset, samples: int, batch_size: int = 64) -> tuple[list[torch.Tensor], int]:
    """The first ``samples`` items of ``dataset`` (e.g. the validation split) as input batches."""
    n = min(int(samples), len(dataset))
    xs = [dataset[i][0] for i in range(n)]
    return [torch.stack(xs[i:i + batch_size]) for i in range(0, n, batch_size)], n


def static_int8(model: nn.Module, val_dataset, example_input: torch.Tensor, *, samples: int = 256) -> StaticInt8:
    """Static int8 PTQ of ``model`` calibrated on up to ``samples`` validation items; never raises
    :class:`StaticQuantError`: a model that cannot be quantized gives ``model=None`` and the reason."""
    batches, n = calibration_batches(val_dataset, samples)
    try:
        q = quantize_static(model, batches, example_input)
    except StaticQuantError as e:
        return StaticInt8(None, reason=str(e), calibration_samples=n)
    return StaticInt8(q, calibration_samples=n, ops=quantized_ops(q))


__all__ = ["BACKEND", "FLOW", "StaticInt8", "StaticQuantError", "calibration_batches", "load_static_state",
           "pt2e_unavailable",
           "quantize_static", "quantized_ops", "quantized_params", "rebuild_static", "static_int8"]
