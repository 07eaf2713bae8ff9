"""Wall time of the compiled UnIT kernels on a model's real layers: skipping vs not, per division.

For a calibrated converted model and one real input, every UnIT layer's captured input is run
through the compiled scalar kernels of :mod:`.kernels`:

* ``dense-kernel``: the same loops with ``skip=False`` (every MAC, same loop order);
* ``skip-<division>``: the skipping kernels with each division method (exact, bitshift,
  binary_tree, bitmask) at the layer's calibrated thresholds.

One "call" of a variant runs all layers in sequence (the model's MAC work, not its pooling or
activations). Variants are interleaved round-robin (the start rotated each round) after a
compile + warm-up pass. The kernels are single-threaded, so the primary figure is the calling
thread's CPU time, ``time.thread_time_ns`` (time other processes on a shared machine take is not
counted); the wall time, ``time.perf_counter_ns``, is read around the same call and reported
beside it. Both as median and IQR over ``reps`` rounds. The kernel arguments are prepared once, so only the loops are timed. This is a
measurement on THIS machine (a superscalar x86 with branch prediction and SIMD, neither of which
the scalar loops exploit fully); it does not stand for an MCU, whose cost is modelled in
:mod:`.mcu`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .agreement import capture_inputs
from .convert import unit_layers
from .division import kernel_args
from .kernels import conv2d_skip, linear_skip
from .layers import UnITLinear
from .reference import _tuple, conv_pads, threshold_per_output

DIVISIONS = ("exact", "bitshift", "binary_tree", "bitmask")


@dataclass
class KernelTiming:
    """Median / IQR (microseconds) per variant and the ratios that matter.

    ``median_us`` / ``iqr_us``: thread CPU time (``time.thread_time_ns``), the primary figure;
    ``wall_median_us`` / ``wall_iqr_us``: wall time (``time.perf_counter_ns``) of the same calls.
    """

    median_us: dict[str, float]
    iqr_us: dict[str, float]
    reps: int
    layers: list[str]
    wall_median_us: dict[str, float] = field(default_factory=dict)
    wall_iqr_us: dict[str, float] = field(default_factory=dict)

    @property
    def skip_vs_dense(self) -> float:
        """``skip-exact`` / ``dense-kernel`` median thread time: < 1 means skipping pays here."""
        return self.median_us["skip-exact"] / self.median_us["dense-kernel"]

    @property
    def wall_skip_vs_dense(self) -> float:
        """The same ratio of wall-time medians."""
        return self.wall_median_us["skip-exact"] / self.wall_median_us["dense-kernel"]

    def division_vs_exact(self) -> dict[str, float]:
        """Each approximation's median over ``skip-exact``'s, in the same skipping kernel."""
        ex = self.median_us["skip-exact"]
        return {d: self.median_us[f"skip-{d}"] / ex for d in DIVISIONS[1:]}

    def to_json(self) -> dict:
        return {"median_us": self.median_us, "iqr_us": self.iqr_us, "clock": "time.thread_time_ns",
                "wall_median_us": self.wall_median_us, "wall_iqr_us": self.wall_iqr_us,
                "wall_clock": "time.perf_counter_ns", "reps": self.reps,
                "layers": self.layers, "skip_vs_dense": self.skip_vs_dense,
                "wall_skip_vs_dense": self.wall_skip_vs_dense,
                "division_vs_exact": self.division_vs_exact(),
                "source": ("thread CPU time (time.thread_time_ns; wall time time.perf_counter_ns "
                           "beside it), numba kernels, interleaved round-robin, 1 thread")}


def median_iqr_us(ns: list[int]) -> tuple[float, float]:
    """Median and interquartile range, in microseconds, of durations in nanoseconds."""
    a = np.asarray(ns, dtype=np.float64) / 1e3
    q1, q2, q3 = np.percentile(a, [25, 50, 75])
    return float(q2), float(q3 - q1)


def _f32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _layer_call(m: nn.Module, x: Tensor, division: str, skip: bool):
    """A zero-argument callable running the compiled kernel of layer ``m`` on ``x``."""
    w = m.weight.detach()
    out = w.shape[0]
    bias = _f32(m.bias) if m.bias is not None else np.zeros(out, np.float32)
    has_b = m.bias is not None
    args = kernel_args(division)
    t_out, g = threshold_per_output(m.unit_threshold, out)
    if isinstance(m, UnITLinear):
        xn = _f32(x.reshape(-1, w.shape[1]))
        wt = _f32(w.t())
        tg = _f32(t_out.reshape(g, out // g)[:, 0])
        return lambda: linear_skip(xn, wt, bias, has_b, tg, *args, skip)
    nd = w.dim() - 2
    kernel = tuple(w.shape[2:])
    stride, dil = _tuple(m.stride, nd), _tuple(m.dilation, nd)
    pads = conv_pads(m.padding, kernel, dil)
    if any(pads):   # pad first (exactly what the wrapper does for non-zero modes)
        x = F.pad(x, pads, mode="constant" if m.padding_mode == "zeros" else m.padding_mode)
    if nd == 1:
        x, w = x.unsqueeze(2), w.unsqueeze(2)
        stride, dil, kernel = (1,) + stride, (1,) + dil, (1,) + kernel
    oh = (x.shape[2] - dil[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (x.shape[3] - dil[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    xn, wn, tn = _f32(x), _f32(w), _f32(t_out)
    geo = (int(m.groups), stride[0], stride[1], 0, 0, dil[0], dil[1], oh, ow)
    return lambda: conv2d_skip(xn, wn, bias, has_b, tn, *geo, *args, skip)


def time_model_kernels(model: nn.Module, x: Tensor, *, reps: int = 50, warmup: int = 3,
                       divisions=DIVISIONS) -> KernelTiming:
    """Time the compiled kernels of every UnIT layer of ``model`` on input ``x`` (docstring)."""
    inputs = capture_inputs(model, x)
    layers = [(n, m) for n, m in unit_layers(model) if n in inputs]
    variants = {"dense-kernel": [_layer_call(m, inputs[n], "exact", False) for n, m in layers]}
    for d in divisions:
        variants[f"skip-{d}"] = [_layer_call(m, inputs[n], d, True) for n, m in layers]
    names = list(variants)
    for _ in range(warmup):
        for k in names:
            for f in variants[k]:
                f()
    cpu = {k: [] for k in names}
    wall = {k: [] for k in names}
    for r in range(reps):
        s = r % len(names)
        for k in names[s:] + names[:s]:
            calls = variants[k]
            w0 = time.perf_counter_ns()
            c0 = time.thread_time_ns()
            for f in calls:
                f()
            c1 = time.thread_time_ns()
            w1 = time.perf_counter_ns()
            cpu[k].append(c1 - c0)
            wall[k].append(w1 - w0)
    med, iqr, wmed, wiqr = {}, {}, {}, {}
    for k in names:
        med[k], iqr[k] = median_iqr_us(cpu[k])
        wmed[k], wiqr[k] = median_iqr_us(wall[k])
    return KernelTiming(median_us=med, iqr_us=iqr, reps=reps, layers=[n for n, _ in layers],
                        wall_median_us=wmed, wall_iqr_us=wiqr)
