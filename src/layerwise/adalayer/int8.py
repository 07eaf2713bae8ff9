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

Which kernels. The qconfig mapping fixes the numbers (observers, per-channel symmetric int8
weights, reduce-range uint8 activations); the quantized ENGINE fixes which library runs them, and
it is bound when the weights are prepacked (``convert_fx``, ``set_weight_bias``,
``load_state_dict``), not when the model runs. The ``x86`` engine sends convolutions with
symmetric per-channel weights to oneDNN on CPUs with VNNI, ``fbgemm`` always to FBGEMM; both
accumulate the same int32 products (their requantization may round an output one step apart), but
at batch 1 FBGEMM's per-call cost is lower (oneDNN wins at batch 32; docs/adalayer.md has the
measured figures). :data:`ENGINE` (default
``fbgemm``) is set only around those prepacking steps (:func:`quantized_engine`) and the previous
engine is restored, so every int8 model here is packed for one engine, whatever the global setting.

One fp32 round trip is removed: an ``nn.Flatten`` module between the global pool and the
classifier is not one of FX's shape ops that share the input's quantization, so ``convert_fx``
wraps it in dequantize -> flatten -> quantize with an extra, separately observed scale (a second
rounding). The copy that is quantized has such modules replaced by ``torch.flatten`` calls
(:func:`_flatten_as_function`), which FX runs on the quantized tensor with the pool's scale.

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

BACKEND = "x86"  # the qconfig mapping: observers and dtypes
ENGINE = "fbgemm"  # the quantized engine that prepacks (and so runs) the int8 weights; see the module docstring
ENGINES = ("fbgemm", "x86", "onednn")
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


def check_engine(engine: str) -> str:
    """``engine`` when this torch build has it among :data:`ENGINES`, else :class:`StaticQuantError`."""
    if engine not in ENGINES or engine not in torch.backends.quantized.supported_engines:
        have = [e for e in ENGINES if e in torch.backends.quantized.supported_engines]
        raise StaticQuantError(f"quantized engine {engine!r} cannot pack int8 weights here: pass one of {have}")
    return engine


@contextlib.contextmanager
def quantized_engine(engine: str = ENGINE):
    """``torch.backends.quantized.engine`` set to ``engine`` inside, restored on exit: wrap every
    step that prepacks int8 weights (convert, set_weight_bias, load_state_dict) so they are all
    packed for the same kernels."""
    check_engine(engine)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield engine
    finally:
        torch.backends.quantized.engine = previous


def _flatten_as_function(model: nn.Module) -> nn.Module:
    """``model`` as a ``torch.fx.GraphModule`` whose ``nn.Flatten`` calls are ``torch.flatten``
    calls (submodule names kept), so that FX quantizes the flatten as a shape op sharing its input's
    scale instead of a dequantize/flatten/quantize round trip; ``model`` itself when it has none."""
    if not any(isinstance(m, nn.Flatten) for m in model.modules()):
        return model
    gm = torch.fx.symbolic_trace(model)
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), nn.Flatten):
            continue
        mod = gm.get_submodule(node.target)
        with gm.graph.inserting_after(node):
            flat = gm.graph.call_function(torch.flatten, node.args, {"start_dim": mod.start_dim,
                                                                     "end_dim": mod.end_dim})
        node.replace_all_uses_with(flat)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    return gm


def _prepare(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx
    if BACKEND not in torch.backends.quantized.supported_engines:
        raise StaticQuantError(f"this torch build has no {BACKEND!r} quantized backend "
                               f"(it has {torch.backends.quantized.supported_engines})")
    m = copy.deepcopy(model).cpu().eval()
    try:
        with _quiet():
            m = _flatten_as_function(m)
            return prepare_fx(m, get_default_qconfig_mapping(BACKEND), example_inputs=(example_input.cpu(),))
    except Exception as e:  # torch.fx tracing raises many types (TraceError, TypeError, NotImplementedError...)
        raise StaticQuantError(f"FX cannot trace the model for static quantization: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}"[:400]) from e


def _convert(prepared: nn.Module, engine: str = ENGINE) -> nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx
    try:
        with _quiet(), quantized_engine(engine):
            return convert_fx(prepared).eval()
    except StaticQuantError:
        raise
    except Exception as e:
        raise StaticQuantError(f"convert_fx failed: {type(e).__name__}: {e}"[:400]) from e


def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor], example_input: torch.Tensor, *,
                    engine: str = ENGINE) -> nn.Module:
    """Static int8 copy of ``model`` (left unchanged), calibrated on the batches of ``calibration``,
    its weights prepacked for ``engine``.

    The copy runs on the CPU. :class:`StaticQuantError` if it cannot be traced, converted or run,
    or if nothing in it was quantized."""
    check_engine(engine)
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
    q = _convert(prepared, engine)
    try:
        with torch.no_grad():
            q(example_input.cpu())
    except Exception as e:
        raise StaticQuantError(f"the quantized model does not run: {type(e).__name__}: {e}"[:400]) from e
    if not quantized_ops(q)["quantized_modules"]:
        raise StaticQuantError("no convolution or linear layer was quantized (nothing the x86 static mapping "
                               "covers)")
    return q


def rebuild_static(model: nn.Module, example_input: torch.Tensor, state_dict: dict, *,
                   engine: str = ENGINE) -> nn.Module:
    """The converted model of ``model``'s architecture with the quantized ``state_dict`` loaded
    (what a user does with the saved file); strict, so a key missing either way is an error.
    ``load_state_dict`` prepacks the weights again, so ``engine`` must be the one the saved model
    was measured with (the same default)."""
    check_engine(engine)
    prepared = _prepare(model, example_input)
    with torch.no_grad(), _quiet():
        prepared(example_input.cpu())  # observers need one batch before convert
    q = _convert(prepared, engine)
    with quantized_engine(engine):
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
    dequantize = 0
    graph = getattr(model, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op == "call_function":
            t = str(getattr(node.target, "_qualified_op_name", None) or getattr(node.target, "__name__", node.target))
            if t.startswith("quantized") or "quantize_per" in t:
                funcs[t] += 1
        dequantize += (node.op == "call_method" and node.target == "dequantize") or (
            node.op == "call_function" and getattr(node.target, "__name__", "") == "dequantize")
    float_layers = [f"{n} ({type(m).__name__})" for n, m in model.named_modules()
                    if isinstance(m, _FLOAT_WEIGHTED) and not _is_quantized_module(m)]
    # dequantize: every place the graph goes back to fp32 (1 = the model's output only)
    return {"quantized_modules": dict(sorted(mods.items())), "quantized_functions": dict(sorted(funcs.items())),
            "dequantize": int(dequantize), "float_layers": float_layers}


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
    engine: str = ENGINE

    def to_json(self) -> dict:
        return {"flow": self.flow, "flow_detail": FLOW_TEXT, "backend": BACKEND, "engine": self.engine,
                "pt2e": pt2e_unavailable() or "available", "calibration_split": "val",
                "calibration_samples": self.calibration_samples, "executed": self.ops, "reason": self.reason}


def calibration_batches(dataset, samples: int, batch_size: int = 64) -> tuple[list[torch.Tensor], int]:
    """The first ``samples`` items of ``dataset`` (e.g. the validation split) as input batches."""
    n = min(int(samples), len(dataset))
    xs = [dataset[i][0] for i in range(n)]
    return [torch.stack(xs[i:i + batch_size]) for i in range(0, n, batch_size)], n


def static_int8(model: nn.Module, val_dataset, example_input: torch.Tensor, *, samples: int = 256,
                engine: str = ENGINE) -> StaticInt8:
    """Static int8 PTQ of ``model`` calibrated on up to ``samples`` validation items, prepacked for
    ``engine``; never raises :class:`StaticQuantError`: a model that cannot be quantized gives
    ``model=None`` and the reason."""
    check_engine(engine)  # a wrong argument is an error, not a reason
    batches, n = calibration_batches(val_dataset, samples)
    try:
        q = quantize_static(model, batches, example_input, engine=engine)
    except StaticQuantError as e:
        return StaticInt8(None, reason=str(e), calibration_samples=n, engine=engine)
    return StaticInt8(q, calibration_samples=n, ops=quantized_ops(q), engine=engine)


__all__ = ["BACKEND", "ENGINE", "ENGINES", "FLOW", "StaticInt8", "StaticQuantError", "calibration_batches",
           "check_engine", "load_static_state", "pt2e_unavailable", "quantize_static", "quantized_engine",
           "quantized_ops", "quantized_params", "rebuild_static", "static_int8"]
