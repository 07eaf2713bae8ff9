"""int16 fixed-point UnIT layers, as the MCU runtimes run them (SONIC, the paper's section 3.6).

Numbers are ``Q(15-f).f``: int16 words with ``f`` fractional bits (``QFormat(frac_bits=5)`` is
SONIC's Q10.5, value range [-1024, 1023.97] in steps of 1/32). Conversions round to nearest
(ties to even) and never saturate silently: a value outside int16 raises
:class:`~layerwise.errors.LayerwiseError` naming the tensor, its value range and the largest
``frac_bits`` that would hold it.

Arithmetic (SONIC): ``F_MUL(a, b) = (a*b + (1 << (f-1))) >> f`` (an arithmetic shift, i.e.
rounding half up), products accumulated in int32 starting from the bias (in Q.f); an accumulator
that leaves int32, or a result that does not fit back into int16, raises the same kind of error.

Threshold: ``T`` is held with ``2f`` fractional bits, the scale of a raw product ``x_q * w_q``:
``T_w = T_q << f`` with ``T_q = round(T * 2**f)`` by default (the threshold in the same Q format,
so a threshold below ``2**-(f+1)`` rounds to 0: every nonzero MAC then runs), or
``round(T * 2**tf) << (2f - tf)`` with ``threshold_frac_bits=tf`` (``f <= tf <= 2f``) for finer
thresholds. The ratio per control term ``c_q`` is

* ``"exact"``: ``t_q = T_w // |c_q|`` (integer floor division). Since ``|z_q|`` is an integer,
  ``|z_q| > T_w // |c_q|  <=>  |z_q| * |c_q| > T_w``: the decision is exactly eq. (1) on the
  integers, with no rounding anywhere;
* ``"bitshift"`` / ``"binary_tree"``: ``t_q = T_w >> n`` with ``n = bitlen(|c_q|)`` (shift loop,
  ``start`` option) or the pivot tree's ``n`` (``tree`` option, default balanced over 0..16);
  the same ``n`` and the same decisions as :func:`layerwise.unit.division.threshold_ratio` on the
  dequantised values with the same ``frac_bits``.
* ``"bitmask"`` needs IEEE-754 words and is refused here.

Decisions versus the float reference on the dequantised tensors (``x = x_q / 2**f``, ...,
``T = T_w / 2**(2f)``): bitshift and binary_tree agree exactly. Exact division agrees exactly
whenever ``|x_q| * |w_q| < 2**24`` for every MAC: the float reference compares ``|z|`` with the
float32-rounded ``fl(T/|c|)``, and a flip needs ``|z| == fl(T/|c|) != T/|c|``, impossible for
a dyadic ``|z| = z_q / 2**f`` unless ``|z_q| * |c_q| >= 2**24`` (the gap between
``z_q / 2**f`` and the rational ``T/|c|`` is at least ``1 / (2**f |c_q|)``, float32 rounding at
most ``2**-24 |z|``). Tests check both the agreement and the integer identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import Tensor

from ..errors import LayerwiseError
from .counts import MacCounts
from .division import METHOD_CODE, PivotTree, balanced_tree, bitlen_shift, tree_lookup
from .kernels import _valid_range
from .reference import _tuple, conv_pads, threshold_per_output

INT16_MIN, INT16_MAX = -(2 ** 15), 2 ** 15 - 1
INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


@dataclass(frozen=True)
class QFormat:
    """Signed 16-bit fixed point with ``frac_bits`` fractional bits (default SONIC's Q10.5)."""

    frac_bits: int = 5

    def __post_init__(self):
        if not 0 <= self.frac_bits <= 14:
            raise LayerwiseError(f"frac_bits={self.frac_bits} is out of range; use 0..14 for int16")

    @property
    def scale(self) -> int:
        return 1 << self.frac_bits

    @property
    def min_value(self) -> float:
        return INT16_MIN / self.scale

    @property
    def max_value(self) -> float:
        return INT16_MAX / self.scale

    def __str__(self) -> str:
        return f"Q{15 - self.frac_bits}.{self.frac_bits}"

    def _overflow(self, name: str, lo: float, hi: float, what: str = "overflow") -> LayerwiseError:
        m = max(abs(lo), abs(hi))
        fits = [f for f in range(self.frac_bits - 1, -1, -1)
                if -32768.5 <= lo * 2 ** f and hi * 2 ** f < 32767.5]
        hint = (f"use fewer fractional bits (QFormat(frac_bits={fits[0]}) holds |x| up to "
                f"{INT16_MAX / 2 ** fits[0]:g})" if fits
                else f"rescale the values: |x| up to {m:.4g} does not fit int16 at any frac_bits")
        return LayerwiseError(
            f"{name}: values in [{lo:.6g}, {hi:.6g}] {what} {self} (int16 holds "
            f"[{self.min_value:g}, {self.max_value:g}]); {hint}")

    def quantize(self, values: Tensor, name: str = "tensor") -> Tensor:
        """``round(values * 2**f)`` as int16; raises if any value falls outside int16."""
        v = torch.as_tensor(values).detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(v).all()):
            raise LayerwiseError(f"{name}: contains NaN or inf; it cannot be quantised to {self}")
        q = torch.round(v * self.scale)
        if q.numel() and (bool((q < INT16_MIN).any()) or bool((q > INT16_MAX).any())):
            raise self._overflow(name, float(v.min()), float(v.max()))
        return q.to(torch.int16)

    def dequantize(self, q: Tensor) -> Tensor:
        """``q / 2**f`` as float32 (exact)."""
        return q.to(torch.float32) / self.scale

    def mul(self, a, b):
        """SONIC's ``F_MUL``: ``(a*b + (1 << (f-1))) >> f`` on integers (numpy or python)."""
        rnd = (1 << (self.frac_bits - 1)) if self.frac_bits > 0 else 0
        return (np.asarray(a, np.int64) * np.asarray(b, np.int64) + rnd) >> self.frac_bits


class FixedResult(NamedTuple):
    """Output as int16 in the layer's Q format, exact counts, division loop steps."""

    output: Tensor
    counts: MacCounts
    division_steps: int


# ------------------------------------------------------------------------------ kernels

@njit(cache=True)
def _int_ratio(t_w, c_abs, code, start, pivot, left, right):
    """Integer threshold for control term ``|c_q|``: ``(t_q, steps)``."""
    if code == 0:
        return t_w // c_abs, 0
    if code == 1:
        cq = c_abs
        if start > 0:
            cq >>= start
        s = bitlen_shift(cq)
        return t_w >> (start + s), s
    n, s = tree_lookup(c_abs, pivot, left, right)
    return t_w >> n, s


@njit(cache=True)
def _fmul(a, b, f, rnd):
    return (a * b + rnd) >> f


@njit(cache=True)
def fixed_linear_kernel(x, wt, bias, t_groups, f, code, start, pivot, left, right, skip):
    """Input-stationary int16 Linear. ``x [B, I]``, ``wt [I, O]`` int16; ``bias [O]`` int64 (Q.f);
    ``t_groups [G]`` int64 (2f fractional bits). Returns ``(acc [B, O] int64, stats, status)``;
    ``status = [0]`` or ``[1, b, j, value]`` at the first int32 overflow."""
    nb, ni = x.shape
    no = wt.shape[1]
    ng = t_groups.shape[0]
    og = no // ng
    rnd = (1 << (f - 1)) if f > 0 else 0
    y = np.empty((nb, no), dtype=np.int64)
    acc = np.empty(no, dtype=np.int64)
    tq = np.empty(ng, dtype=np.int64)
    status = np.zeros(4, dtype=np.int64)
    zw_row = np.zeros(ni, dtype=np.int64)
    for i in range(ni):
        for j in range(no):
            if wt[i, j] == 0:
                zw_row[i] += 1
    zero_weight = 0
    zero_input = 0
    executed = 0
    compares = 0
    divisions = 0
    steps = 0
    for b in range(nb):
        for j in range(no):
            acc[j] = bias[j]
        for i in range(ni):
            xv = np.int64(x[b, i])
            if skip:
                zero_weight += zw_row[i]
                if xv == 0:
                    zero_input += no - zw_row[i]
                    compares += 1
                    continue
                a = abs(xv)
                for g in range(ng):
                    tq[g], s = _int_ratio(t_groups[g], a, code, start, pivot, left, right)
                    steps += s
                divisions += ng
                compares += no
            for g in range(ng):
                t = tq[g]
                for j in range(g * og, (g + 1) * og):
                    w = np.int64(wt[i, j])
                    if (not skip) or abs(w) > t:
                        acc[j] += _fmul(xv, w, f, rnd)
                        if skip:
                            executed += 1
                        if acc[j] > 2147483647 or acc[j] < -2147483648:
                            status[0] = 1
                            status[1] = b
                            status[2] = j
                            status[3] = acc[j]
                            return y, np.zeros(7, dtype=np.int64), status
        for j in range(no):
            y[b, j] = acc[j]
    total = nb * ni * no
    stats = np.zeros(7, dtype=np.int64)
    stats[0] = total
    if skip:
        stats[1] = zero_weight
        stats[2] = zero_input
        stats[3] = total - zero_weight - zero_input - executed
        stats[4] = compares
        stats[5] = divisions
        stats[6] = steps
    return y, stats, status


@njit(cache=True)
def fixed_conv2d_kernel(x, w, bias, t_out, groups, sh, sw, ph, pw, dh, dw, oh_n, ow_n,
                        f, code, start, pivot, left, right, skip):
    """SONIC-order int16 Conv2d (weight outer, output plane inner). Same returns as
    :func:`fixed_linear_kernel` with ``acc [B, O, OH, OW]`` (``status[2]`` is the channel)."""
    nb, _, hh, ww = x.shape
    no, cg, kh_n, kw_n = w.shape
    og = no // groups
    npos = oh_n * ow_n
    rnd = (1 << (f - 1)) if f > 0 else 0
    y = np.empty((nb, no, oh_n, ow_n), dtype=np.int64)
    status = np.zeros(4, dtype=np.int64)
    zero_weight = 0
    zero_input = 0
    executed = 0
    compares = 0
    divisions = 0
    steps = 0
    for b in range(nb):
        for o in range(no):
            grp = o // og
            for p in range(oh_n):
                for q in range(ow_n):
                    y[b, o, p, q] = bias[o]
            for c in range(cg):
                ci = grp * cg + c
                for kh in range(kh_n):
                    p0, p1 = _valid_range(kh, sh, ph, dh, hh, oh_n)
                    for kw in range(kw_n):
                        q0, q1 = _valid_range(kw, sw, pw, dw, ww, ow_n)
                        wv = np.int64(w[o, c, kh, kw])
                        t = np.int64(-1)
                        if skip:
                            if wv == 0:
                                zero_weight += npos
                                compares += 1
                                continue
                            t, s = _int_ratio(t_out[o], abs(wv), code, start, pivot, left, right)
                            steps += s
                            divisions += 1
                            compares += npos
                            zero_input += npos - (p1 - p0) * (q1 - q0)
                        for p in range(p0, p1):
                            ih = p * sh - ph + kh * dh
                            for q in range(q0, q1):
                                xv = np.int64(x[b, ci, ih, q * sw - pw + kw * dw])
                                if abs(xv) > t:
                                    v = y[b, o, p, q] + _fmul(xv, wv, f, rnd)
                                    y[b, o, p, q] = v
                                    if skip:
                                        executed += 1
                                    if v > 2147483647 or v < -2147483648:
                                        status[0] = 1
                                        status[1] = b
                                        status[2] = o
                                        status[3] = v
                                        return y, np.zeros(7, dtype=np.int64), status
                                elif xv == 0:
                                    zero_input += 1
    total = nb * no * cg * kh_n * kw_n * npos
    stats = np.zeros(7, dtype=np.int64)
    stats[0] = total
    if skip:
        stats[1] = zero_weight
        stats[2] = zero_input
        stats[3] = total - zero_weight - zero_input - executed
        stats[4] = compares
        stats[5] = divisions
        stats[6] = steps
    return y, stats, status


# ----------------------------------------------------------------------------- wrappers

def _as_q(t: Tensor, qformat: QFormat, name: str) -> Tensor:
    """Float tensors are quantised (checked); int16 tensors are taken as already in ``qformat``."""
    if t.dtype == torch.int16:
        return t.detach().cpu()
    return qformat.quantize(t, name)


def quantize_threshold(threshold, out: int, qformat: QFormat,
                       threshold_frac_bits: int | None = None,
                       name: str = "layer") -> tuple[np.ndarray, int]:
    """Per-output thresholds with ``2f`` fractional bits (``T_w``), int64, and the group count."""
    f = qformat.frac_bits
    tf = f if threshold_frac_bits is None else int(threshold_frac_bits)
    if not f <= tf <= 2 * f:
        raise LayerwiseError(
            f"threshold_frac_bits={tf} must lie in [{f}, {2 * f}] for {qformat}")
    t_out, g = threshold_per_output(threshold, out)
    tq = torch.round(t_out.to(torch.float64) * 2 ** tf)
    t_w = tq * 2 ** (2 * f - tf)
    if bool((t_w > INT32_MAX).any()):
        raise LayerwiseError(
            f"{name} threshold: max {float(t_out.max()):.6g} overflows int32 at {2 * f} fractional "
            f"bits in {qformat}; use fewer fractional bits")
    return t_w.to(torch.int64).numpy(), g


def _division(division: str, opts: dict) -> tuple:
    if division == "bitmask":
        raise LayerwiseError(
            "division 'bitmask' needs IEEE-754 floats; on the fixed-point path use "
            "'exact', 'bitshift' or 'binary_tree'")
    if division not in METHOD_CODE:
        raise LayerwiseError(
            f"unknown division method {division!r}; use one of exact, bitshift, binary_tree")
    allowed = {"exact": set(), "bitshift": {"start"}, "binary_tree": {"tree"}}[division]
    bad = set(opts) - allowed
    if bad:
        raise LayerwiseError(
            f"division {division!r} takes no option(s) {sorted(bad)} on the fixed-point path; "
            f"it accepts {sorted(allowed) or 'none'}")
    start = int(opts.get("start", 0))
    if not 0 <= start <= 16:
        raise LayerwiseError(f"start={start} is out of range; use 0..16")
    tree = opts.get("tree")
    if division == "binary_tree":
        tree = balanced_tree(0, 16) if tree is None else tree
        if not isinstance(tree, PivotTree) or tree.lo < 0 or tree.hi > 16:
            raise LayerwiseError("tree must be a PivotTree over exponents within 0..16 for int16")
        return METHOD_CODE[division], start, tree.pivot, tree.left, tree.right
    dummy = np.zeros(1, dtype=np.int64)
    return METHOD_CODE[division], start, dummy, dummy, dummy


def _finish(acc: np.ndarray, stats: np.ndarray, status: np.ndarray, qformat: QFormat,
            name: str, samples: int, unit: str) -> tuple[Tensor, MacCounts, int]:
    if status[0]:
        v = int(status[3]) / qformat.scale
        raise LayerwiseError(
            f"{name}: the int32 accumulator overflowed at sample {int(status[1])}, {unit} "
            f"{int(status[2])} (reached {v:.6g} in value, int32 holds "
            f"[{INT32_MIN / qformat.scale:g}, {INT32_MAX / qformat.scale:g}] in {qformat}); "
            "use fewer fractional bits or rescale the layer")
    if acc.size and (acc.min() < INT16_MIN or acc.max() > INT16_MAX):
        raise qformat._overflow(f"{name} output", float(acc.min()) / qformat.scale,
                                float(acc.max()) / qformat.scale)
    s = [int(v) for v in stats]
    counts = MacCounts(total=s[0], zero_weight=s[1], zero_input=s[2], threshold=s[3],
                       compares=s[4], divisions=s[5], samples=samples)
    return torch.from_numpy(acc.astype(np.int16)), counts, s[6]


def fixed_linear(x: Tensor, weight: Tensor, bias: Tensor | None, threshold, *,
                 qformat: QFormat = QFormat(), division: str = "exact", skip: bool = True,
                 threshold_frac_bits: int | None = None, name: str = "linear",
                 **division_opts) -> FixedResult:
    """UnIT Linear in int16 fixed point: ``x [..., in]`` (float, or int16 already in ``qformat``).

    Returns the output as int16 in ``qformat`` (``qformat.dequantize`` gives values).
    """
    out_f, in_f = weight.shape
    if x.shape[-1] != in_f:
        raise LayerwiseError(
            f"input has {x.shape[-1]} features, the layer expects {in_f}; fix the input shape")
    lead = x.shape[:-1]
    xq = _as_q(x, qformat, f"{name} input").reshape(-1, in_f)
    wq = _as_q(weight, qformat, f"{name} weight")
    bq = (np.zeros(out_f, np.int64) if bias is None
          else _as_q(bias, qformat, f"{name} bias").numpy().astype(np.int64))
    t_w, g = quantize_threshold(threshold, out_f, qformat, threshold_frac_bits, name)
    t_groups = np.ascontiguousarray(t_w.reshape(g, out_f // g)[:, 0])
    acc, stats, status = fixed_linear_kernel(
        np.ascontiguousarray(xq.numpy()), np.ascontiguousarray(wq.t().contiguous().numpy()), bq,
        t_groups, qformat.frac_bits, *_division(division, division_opts), bool(skip))
    y, counts, steps = _finish(acc, stats, status, qformat, name, xq.shape[0], "output")
    return FixedResult(y.reshape(*lead, out_f), counts, steps)


def fixed_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, threshold, *, stride=1,
                 padding=0, dilation=1, groups: int = 1, padding_mode: str = "zeros",
                 qformat: QFormat = QFormat(), division: str = "exact", skip: bool = True,
                 threshold_frac_bits: int | None = None, name: str = "conv",
                 **division_opts) -> FixedResult:
    """UnIT Conv1d / Conv2d in int16 fixed point (SONIC loop order); arguments as ``F.conv*d``."""
    nd = weight.dim() - 2
    if nd not in (1, 2) or x.dim() != nd + 2:
        raise LayerwiseError(
            f"conv input {tuple(x.shape)} / weight {tuple(weight.shape)}: pass a batched "
            "[B, C, ...] input with the kernel's 1 or 2 spatial dims")
    xq = _as_q(x, qformat, f"{name} input")
    wq = _as_q(weight, qformat, f"{name} weight")
    kernel = tuple(weight.shape[2:])
    stride_t, dil_t = _tuple(stride, nd), _tuple(dilation, nd)
    pads = conv_pads(padding, kernel, dil_t)
    symmetric = all(pads[k] == pads[k + 1] for k in range(0, len(pads), 2))
    if any(pads) and (padding_mode != "zeros" or not symmetric):
        mode = "constant" if padding_mode == "zeros" else padding_mode
        xq = F.pad(xq.to(torch.float64), pads, mode=mode).to(torch.int16)  # exact for int16
        pads = [0] * len(pads)
    pad_t = tuple(pads[2 * k] for k in reversed(range(nd)))
    if nd == 1:
        xq, wq = xq.unsqueeze(2), wq.unsqueeze(2)
        stride_t, dil_t, pad_t, kernel = (1,) + stride_t, (1,) + dil_t, (0,) + pad_t, (1,) + kernel
    b, c_in, hh, ww = xq.shape
    out_c = wq.shape[0]
    if groups < 1 or c_in % groups or out_c % groups or c_in != wq.shape[1] * groups:
        raise LayerwiseError(
            f"input has {c_in} channels, the layer expects {wq.shape[1] * groups} in {groups} "
            "groups; fix the input shape or groups")
    oh = (hh + 2 * pad_t[0] - dil_t[0] * (kernel[0] - 1) - 1) // stride_t[0] + 1
    ow = (ww + 2 * pad_t[1] - dil_t[1] * (kernel[1] - 1) - 1) // stride_t[1] + 1
    if oh <= 0 or ow <= 0:
        raise LayerwiseError(
            f"input of spatial size {tuple(xq.shape[2:])} is smaller than the kernel; "
            "pass a larger input")
    bq = (np.zeros(out_c, np.int64) if bias is None
          else _as_q(bias, qformat, f"{name} bias").numpy().astype(np.int64))
    t_w, _ = quantize_threshold(threshold, out_c, qformat, threshold_frac_bits, name)
    acc, stats, status = fixed_conv2d_kernel(
        np.ascontiguousarray(xq.numpy()), np.ascontiguousarray(wq.contiguous().numpy()), bq,
        np.ascontiguousarray(t_w), int(groups), stride_t[0], stride_t[1], pad_t[0], pad_t[1],
        dil_t[0], dil_t[1], oh, ow, qformat.frac_bits, *_division(division, division_opts),
        bool(skip))
    y, counts, steps = _finish(acc, stats, status, qformat, name, b, "channel")
    if nd == 1:
        y = y[:, :, 0, :]
    return FixedResult(y, counts, steps)


def exact_integer_keep(z_q, c_q, t_w) -> np.ndarray:
    """eq. (1) on the integers without any division: keep iff ``|z_q| * |c_q| > T_w``."""
    z = np.abs(np.asarray(z_q, np.int64))
    c = np.abs(np.asarray(c_q, np.int64))
    return (z != 0) & (c != 0) & (z * c > np.asarray(t_w, np.int64))

