"""Export the model rebuilt from the packed file to ONNX and check it against onnxruntime.

The ONNX file holds the dequantised weights in fp32 (a portable artifact for runtimes, not a
compressed one); the check is that onnxruntime computes what PyTorch computes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
