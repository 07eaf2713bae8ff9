"""Export the model rebuilt from the packed file to ONNX and check it against onnxruntime.

The ONNX file holds the dequantised weights in fp32 (a portable artifact for runtimes, not a
compressed one); the check is that onnxruntime computes what PyTorch computes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import LayerwiseError


@dataclass(frozen=True)
class OnnxCheck:
    path: str
    size_bytes: int
    max_abs_diff: float
    max_rel_diff: float
    tolerance: float
    batch: int

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_json(self) -> dict:
        return {"path": self.path, "size_bytes": self.size_bytes, "max_abs_diff": self.max_abs_diff,
                "max_rel_diff": self.max_rel_diff, "tolerance": self.tolerance, "batch": self.batch, "ok": self.ok}


def _imports():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise LayerwiseError("ONNX export needs onnx and onnxruntime: pip install -e '.[export]'") from None
    return onnxruntime


def export_and_check(model: nn.Module, x: torch.Tensor, path: str | os.PathLike, *, atol: float = 1e-4) -> OnnxCheck:
    """Export ``model`` (eval) with a dynamic batch axis, run ``x`` through onnxruntime, compare."""
    ort = _imports()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    tmp = path.with_name(f".{path.name}.tmp")
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                          opset_version=17)
    os.replace(tmp, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.cpu().numpy()})[0]
    with torch.no_grad():
        want = model(x).cpu().numpy()
    diff = np.abs(got - want)
    rel = diff / np.maximum(np.abs(want), 1e-6)
    return OnnxCheck(str(path), os.path.getsize(path), float(diff.max()), float(rel.max()), atol, int(x.shape[0]))


# ---- int8 QDQ export ------------------------------------------------------------------------------
#
# The fp32 export above is the dense size. ``export_onnx_int8`` writes the compressed model as a QDQ
# graph: every Conv / Gemm weight is an int8 initializer read through DequantizeLinear (per output
# channel, zero point 0), so the file holds one byte per weight. For an AdaLayerNet module the int8
# values ARE its codes (B_l <= 8 bits, eq. 4) and the scales its fp16 scales: the weights onnxruntime
# computes with equal the fake-quant module's bit for bit. BatchNormalization that directly follows a
# Conv is folded into it per output channel, w' = w * k with k = gamma / sqrt(var + eps), which keeps the
# codes: only the scale becomes s * |k| (and a code's sign flips where k < 0), and b' = (b - mean) * k + beta.
# With ``activations="int8"`` the input and output of every quantized Conv / Gemm also pass through a
# QuantizeLinear/DequantizeLinear pair (uint8, per tensor, range = min/max over the calibration
# batches, 0 included), the pattern onnxruntime fuses into integer kernels (QLinearConv, QGemm...);
# which kernels it ran is read from its optimised graph and reported.

ACTIVATION_MODES = ("int8", "float")


@dataclass(frozen=True)
class OnnxInt8:
    """What :func:`export_onnx_int8` wrote and measured."""

    path: str
    size_bytes: int
    activations: str                   # "int8": QDQ on Conv/Gemm inputs and outputs; "float": weights only
    int8_layers: tuple[str, ...]       # layers whose weight is stored as integer codes (int8, or int4: weight_types)
    float_layers: tuple[str, ...]      # Conv/Gemm weights left fp32 (codes wider than 8 bits)
    codes_from: str                    # "adalayer" (the module's own codes) or "int8 per-channel here"
    folded_batchnorms: int
    calibration_samples: int
    max_abs_diff: float                # |onnxruntime - PyTorch module| on ``check_input``
    tolerance: float
    executed_ops: dict                 # op types in onnxruntime's optimised graph
    weight_types: dict = field(default_factory=dict)   # layer -> "int8" or "int4" (int4=True)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_json(self) -> dict:
        return {"path": self.path, "size_bytes": self.size_bytes, "activations": self.activations,
                "int8_layers": list(self.int8_layers), "float_layers": list(self.float_layers),
                "codes_from": self.codes_from, "folded_batchnorms": self.folded_batchnorms,
                "calibration_samples": self.calibration_samples, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "ok": self.ok, "executed_ops": dict(self.executed_ops),
                "weight_types": dict(self.weight_types)}


def _export_graph(model: nn.Module, x: torch.Tensor):
    """The eval-mode fp32 ONNX graph (opset 17) with weights as initializers named like the
    parameters (no constant folding, BatchNorm kept as its own node)."""
    import io

    import onnx
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model.eval(), (x,), buf, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                          opset_version=17, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE)
    return onnx.load_from_string(buf.getvalue())


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _resolve(graph, name: str, inits: dict):
    """The initializer behind ``name`` (through Identity nodes), or None."""
    producers = {o: n for n in graph.node for o in n.output}
    seen = 0
    while name not in inits and name in producers and producers[name].op_type == "Identity" and seen < 64:
        name, seen = producers[name].input[0], seen + 1
    return inits.get(name)


def _module_name(weight_name: str) -> str | None:
    return weight_name[:-len(".weight")] if weight_name.endswith(".weight") else None


def export_onnx_int8(module: nn.Module, example_input: torch.Tensor, path: str | os.PathLike, *,
                     quantized: dict | None = None, calib_loader=None, input_key: str | None = None,
                     activations: str | None = None, check_input: torch.Tensor | None = None,
                     max_calibration_batches: int | None = 16, tolerance: float | None = None,
                     int4: bool = False) -> OnnxInt8:
    """Write ``module`` as an int8 QDQ ONNX file that onnxruntime runs; returns what was written and
    how far onnxruntime's outputs are from the module's.

    ``quantized``: the AdaLayerNet codes (``report.quantized`` of :func:`layerwise.adalayer.apply`,
    or ``CompressionResult.quantized``); their layers are stored as exactly those int8 codes and
    fp32 scales. Without it (or for a layer it lacks) a Conv/Linear weight is quantized here to int8
    per output channel (eq. 4 with P = 0, B = 8). ``activations``: ``"int8"`` (default when
    ``calib_loader`` is given; ranges from up to ``max_calibration_batches`` of its batches, read
    with ``input_key`` for dict batches) or ``"float"`` (weights only). ``check_input`` (default
    ``example_input``) is run through both; ``tolerance`` (default: 1e-4 * (1 + max|output|) for
    weights only, float32 rounding of the folded BatchNorm; 0.1 * (1 + max|output|) with int8
    activations, whose rounding is the quantization's) is what :attr:`OnnxInt8.ok` compares to.

    ``int4=True``: layers whose AdaLayerNet codes have at most 4 bits are stored as INT4 initializers
    (two codes per byte; ONNX opset 21, which onnxruntime's DequantizeLinear runs); the graph is
    converted to opset 21 for it. onnxruntime has no integer convolution for int4 weights: it
    dequantizes them and convolves in float (``executed_ops`` shows which kernels ran).
    """
    ort = _imports()
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..data.batches import BatchKeys, iter_batches
    from .quantize import quantize_weight

    mode = activations or ("int8" if calib_loader is not None else "float")
    if mode not in ACTIVATION_MODES:
        raise LayerwiseError(f"activations={mode!r}: use 'int8' or 'float'")
    if mode == "int8" and calib_loader is None:
        raise LayerwiseError("activations='int8' needs calibration batches for the activation ranges: pass "
                             "calib_loader= (a DataLoader), or activations='float'")
    quantized = dict(quantized or {})
    module = module.eval()
    x1 = example_input.detach()
    model = _export_graph(module, x1)
    if int4:
        from onnx import version_converter
        model = version_converter.convert_version(model, 21)
        del model.graph.value_info[:]  # the converter's inferred shapes: optional, and larger than the int4 saving
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(g)

    # 1. fold BatchNormalization into the Conv before it (per output channel; codes unchanged)
    bn_scale: dict[str, np.ndarray] = {}   # conv weight name -> k
    folded = 0
    for node in list(g.node):
        if node.op_type != "BatchNormalization" or len(node.output) != 1:
            continue
        prev = next((n for n in g.node if node.input[0] in n.output), None)
        if prev is None or prev.op_type != "Conv" or len(consumers.get(node.input[0], [])) != 1:
            continue
        w_init = _resolve(g, prev.input[1], inits)
        params = [_resolve(g, n, inits) for n in node.input[1:5]]
        if w_init is None or _module_name(prev.input[1]) is None or any(p is None for p in params):
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(p).astype(np.float64) for p in params)
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        k = gamma / np.sqrt(var + eps)
        out_c = k.shape[0]
        bias = np.zeros(out_c) if len(prev.input) < 3 else numpy_helper.to_array(_resolve(g, prev.input[2], inits)).astype(np.float64)
        new_b = ((bias - mean) * k + beta).astype(np.float32)
        b_name = f"{prev.input[1]}::folded_bias"
        g.initializer.append(numpy_helper.from_array(new_b, b_name))
        if len(prev.input) < 3:
            prev.input.append(b_name)
        else:
            prev.input[2] = b_name
        bn_scale[prev.input[1]] = k
        prev.output[0] = node.output[0]
        g.node.remove(node)
        folded += 1
    inits = {t.name: t for t in g.initializer}

    # 2. int8 weights through DequantizeLinear (axis 0: output channels, Conv [O, I/g, k..] and Gemm [O, I])
    int8_layers, float_layers, weight_nodes = [], [], []
    weight_type: dict[str, str] = {}
    done: set[str] = set()
    for node in list(g.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 2 or node.input[1] in done:
            continue
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            continue  # a weight stored [in, out]: per-output-channel axis differs; left fp32
        wname = node.input[1]
        init = _resolve(g, wname, inits)
        lname = _module_name(wname)
        if init is None or lname is None:
            continue
        w = torch.from_numpy(numpy_helper.to_array(init).copy())
        qw = quantized.get(lname)
        if qw is not None:
            want = qw.dequantize().cpu()
            if tuple(want.shape) != tuple(w.shape) or not torch.equal(want, w):
                raise LayerwiseError(f"layer {lname!r} of the module does not hold the weights of its AdaLayerNet "
                                     "codes: export the module apply() returned (or the packed file's), with its "
                                     "report.quantized")
            if qw.bits > 8:
                float_layers.append(lname)
                if wname in bn_scale:  # the folded BatchNorm's scale still has to reach the fp32 weight
                    k = bn_scale[wname].reshape(-1, *([1] * (w.dim() - 1)))
                    scaled = f"{wname}::folded"
                    g.initializer.append(numpy_helper.from_array((w.double().numpy() * k).astype(np.float32), scaled))
                    node.input[1] = scaled
                done.add(wname)
                continue
        else:
            qw = quantize_weight(w, torch.ones_like(w, dtype=torch.bool), 8)
        codes = qw.codes.cpu().numpy().astype(np.int64)
        scale = qw.scale.cpu().to(torch.float32).numpy().astype(np.float64)
        if wname in bn_scale:
            k = bn_scale[wname]
            codes = codes * np.sign(np.where(k == 0, 1.0, k)).reshape(-1, *([1] * (codes.ndim - 1))).astype(np.int64)
            scale = scale * np.abs(k)
        scale = np.maximum(scale, np.finfo(np.float32).tiny).astype(np.float32)
        low = int4 and lname in quantized and qw.bits <= 4
        q_name = f"{lname}.weight_int4" if low else f"{lname}.weight_int8"
        s_name, z_name = f"{lname}.weight_scale", f"{lname}.weight_zero_point"
        if low:  # codes in -7..7; INT4 raw data: two per byte, the first in the low nibble
            g.initializer.extend([_int4_tensor(codes, q_name), _int4_tensor(np.zeros(scale.shape, np.int64), z_name)])
        else:
            g.initializer.extend([numpy_helper.from_array(codes.astype(np.int8), q_name),
                                  numpy_helper.from_array(np.zeros(scale.shape, np.int8), z_name)])
        g.initializer.append(numpy_helper.from_array(scale, s_name))
        weight_type[lname] = "int4" if low else "int8"
        deq = f"{wname}::dequantized"
        g.node.insert(0, helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [deq], axis=0,
                                          name=f"{lname}/weight_dequantize"))
        for n in g.node:
            for i, name in enumerate(n.input):
                if name == wname and n.op_type in ("Conv", "Gemm"):
                    n.input[i] = deq
        done.add(wname)
        int8_layers.append(lname)
        weight_nodes.append(node)
    _prune_unused(g)

    # 3. activation QDQ (uint8, per tensor) on the quantized layers' inputs and outputs
    keys = BatchKeys(input_key)
    n_cal = 0
    if mode == "int8":
        graph_outputs = {o.name for o in g.output}
        readers = _consumers(g)
        tensors = []
        for node in weight_nodes:
            out = node.output[0]
            act = readers.get(out, [])
            if len(act) == 1 and act[0].op_type in ("Relu", "Clip"):
                out = act[0].output[0]  # quantize after the activation: its range is what the next layer reads
            for t in (node.input[0], out):
                if t not in tensors and t not in graph_outputs:
                    tensors.append(t)
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for t in tensors:
            probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        lo = {t: 0.0 for t in tensors}
        hi = {t: 0.0 for t in tensors}
        for xb, _ in iter_batches(calib_loader, keys, max_batches=max_calibration_batches):
            outs = sess.run(tensors, {"input": xb.detach().cpu().float().numpy()})
            for t, v in zip(tensors, outs):
                lo[t], hi[t] = min(lo[t], float(v.min())), max(hi[t], float(v.max()))
            n_cal += int(xb.shape[0])
        for t in tensors:
            scale = max(hi[t] - lo[t], 1e-8) / 255.0
            zp = int(np.clip(round(-lo[t] / scale), 0, 255))
            s_name, z_name, q, dq = f"{t}::act_scale", f"{t}::act_zero_point", f"{t}::quantized", f"{t}::dequantized"
            g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), s_name),
                                  numpy_helper.from_array(np.array(zp, np.uint8), z_name)])
            for n in g.node:
                for i, name in enumerate(n.input):
                    if name == t:
                        n.input[i] = dq
            g.node.extend([helper.make_node("QuantizeLinear", [t, s_name, z_name], [q], name=f"{t}/quantize"),
                           helper.make_node("DequantizeLinear", [q, s_name, z_name], [dq], name=f"{t}/dequantize")])
        _toposort(g)
    _short_names(g)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)

    # 4. run it: onnxruntime vs the module, and the kernels onnxruntime chose
    opt_path = path.with_name(f".{path.name}.optimized")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(opt_path)
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    try:
        from collections import Counter
        ops = dict(sorted(Counter(n.op_type for n in onnx.load(str(opt_path)).graph.node).items()))
    finally:
        opt_path.unlink(missing_ok=True)
    xc = (check_input if check_input is not None else x1).detach()
    got = sess.run(None, {"input": xc.cpu().float().numpy()})[0]
    with torch.no_grad():
        want = module(xc).detach().cpu().numpy()
    diff = float(np.abs(got - want).max())
    if tolerance is None:
        tolerance = (1e-4 if mode == "float" else 0.1) * (1.0 + float(np.abs(want).max()))
    return OnnxInt8(str(path), os.path.getsize(path), mode, tuple(int8_layers), tuple(float_layers),
                    "adalayer" if quantized else "int8 per-channel here", folded, n_cal, diff, float(tolerance), ops,
                    weight_type)


def _int4_tensor(values: np.ndarray, name: str):
    """An ONNX INT4 initializer of ``values`` (each in -8..7), packed two per byte, low nibble first."""
    from onnx import TensorProto, helper
    flat = values.reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise LayerwiseError(f"{name}: codes outside int4's -8..7")
    nib = (flat & 0xF).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    packed = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8).tobytes()
    return helper.make_tensor(name, TensorProto.INT4, list(values.shape), packed, raw=True)


def _short_names(graph) -> None:
    """Intermediate tensors renamed t0, t1, ... and node names dropped: in a small model the exporter's
    long scoped names (``/features/features.2/conv/conv.5/Constant_1_output_0``) outweigh the int8 weights.
    Graph inputs, outputs and initializers (named after the layers) keep their names."""
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | {t.name for t in graph.initializer} | {""}
    new: dict[str, str] = {}
    for node in graph.node:
        node.name = ""
        for i, name in enumerate(node.output):
            if name not in keep:
                new.setdefault(name, f"t{len(new)}")
                node.output[i] = new[name]
        for i, name in enumerate(node.input):
            if name in new:
                node.input[i] = new[name]
    for vi in list(graph.value_info):
        if vi.name in new:
            vi.name = new[vi.name]


def _prune_unused(graph) -> None:
    """Drop Identity nodes nobody reads (the float weights they forwarded), then unread initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Identity" and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    for t in list(graph.initializer):
        if t.name not in used:
            graph.initializer.remove(t)


def _toposort(graph) -> None:
    """Order the nodes so every input is produced before it is read (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = False
        for node in list(pending):
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
                pending.remove(node)
                progressed = True
        if not progressed:
            raise LayerwiseError("the ONNX graph has a cycle or an input nobody produces; cannot order it")
    del graph.node[:]
    graph.node.extend(ordered)


def onnx_accuracy(path: str | os.PathLike, loader, *, input_key: str | None = None, target_key: str | None = None,
                  max_batches: int | None = None) -> tuple[float, int]:
    """(top-1 accuracy, samples) of an ONNX file run by onnxruntime over a labelled loader, streamed."""
    ort = _imports()
    from ..data.batches import BatchKeys, iter_batches
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct, n = 0, 0
    for x, y in iter_batches(loader, BatchKeys(input_key, target_key), max_batches=max_batches, need_targets=True):
        logits = sess.run(None, {"input": x.detach().cpu().float().numpy()})[0]
        correct += int((logits.argmax(1) == y.reshape(-1).cpu().numpy()).sum())
        n += int(x.shape[0])
    return correct / n, n
