"""Compiled scalar UnIT kernels that really skip MACs (numba), and the same loops without skipping.

They follow the loop orders of MCU runtimes, one scalar MAC at a time, so that the wall time of a
skipping kernel can be compared with the same kernel without skipping:

* Linear, input-stationary (eq. 2, Fig. 1): for each sample ``b`` and input ``i``: a zero input
  skips its whole row with one test; otherwise ``t = ratio(T_g, |x|)`` is computed once per
  threshold group and the inner loop over the outputs ``j`` of that group multiplies only when
  ``|W[j, i]| > t`` (a zero weight fails the test since ``t >= 0``).
* Conv2d, weight-outer as in SONIC (eq. 3, Fig. 2): for each sample, output channel ``o``, input
  channel ``c`` and kernel element ``(kh, kw)``: a zero weight skips its whole output plane;
  otherwise ``t = ratio(T_g(o), |w|)`` is computed once and the whole output plane is swept,
  accumulating only where ``|x| > t``. Zero-padding positions are never visited (they are counted
  as zero inputs, as in :mod:`layerwise.unit.reference`); other padding modes are applied with
  ``F.pad`` first. Conv1d runs as Conv2d with ``H = 1``.

Decisions and counts are exactly those of :func:`layerwise.unit.reference.unit_linear` /
``unit_conv`` (same float32 ratio, strict ``>``, same attribution: zero weight, zero input,
threshold). Outputs accumulate in float32 in the loop order above, so they match the reference to
float32 rounding (``allclose``), not bit for bit. ``skip=False`` runs the dense scalar loops in the
same order (every MAC, zeros included); its counts report ``total`` and ``samples`` only.

Each wrapper returns ``KernelResult(output, counts, division_steps)``: ``counts`` a
:class:`~layerwise.unit.counts.MacCounts` (with ``compares`` and ``divisions`` as defined there),
``division_steps`` the shift-loop iterations (bitshift) or tree comparisons (binary_tree) summed
over all divisions (0 for exact and bitmask), which the MCU cost model needs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import Tensor

from ..errors import LayerwiseError
from .counts import MacCounts
from .division import kernel_args, ratio_scalar
from .reference import _tuple, check_conv_input, conv_pads, threshold_per_output


class KernelResult(NamedTuple):
    """What a compiled kernel returns: output tensor, exact counts, division loop steps."""

    output: Tensor
    counts: MacCounts
    division_steps: int


@njit(cache=True)
def linear_skip(x, wt, bias, has_bias, t_groups, code, frac_bits, word_bits, start,
                pivot, left, right, skip):
    """Input-stationary Linear. ``x [B, I]``, ``wt [I, O]`` (the weight transposed), float32.

    Returns ``(y [B, O], stats)`` with ``stats = [total, zero_weight, zero_input, threshold,
    compares, divisions, division_steps]``.
    """
    nb, ni = x.shape
    no = wt.shape[1]
    ng = t_groups.shape[0]
    og = no // ng
    y = np.empty((nb, no), dtype=np.float32)
    acc = np.empty(no, dtype=np.float32)
    tg = np.empty(ng, dtype=np.float32)
    sf = np.zeros(4, dtype=np.float32)
    si = sf.view(np.int32)
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
            acc[j] = bias[j] if has_bias else np.float32(0.0)
        for i in range(ni):
            xv = x[b, i]
            if not skip:
                for j in range(no):
                    acc[j] += xv * wt[i, j]
                continue
            zero_weight += zw_row[i]
            if xv == 0:                     # the whole row: one test
                zero_input += no - zw_row[i]
                compares += 1
                continue
            a = abs(xv)
            for g in range(ng):             # eq. (2): t = T_g / |x| once per (input, group)
                tg[g], s = ratio_scalar(t_groups[g], a, code, frac_bits, word_bits, start,
                                        pivot, left, right, sf, si)
                steps += s
            divisions += ng
            compares += no
            for g in range(ng):
                t = tg[g]
                for j in range(g * og, (g + 1) * og):
                    w = wt[i, j]
                    if abs(w) > t:          # keep iff |W| > T/|x|; ties and zeros skip
                        acc[j] += xv * w
                        executed += 1
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
    return y, stats


@njit(cache=True)
def _valid_range(k, stride, pad, dil, size, out):
    """Output indices ``o`` with ``0 <= o*stride - pad + k*dil < size``, clamped to ``[0, out)``."""
    lo_num = pad - k * dil
    o0 = 0
    if lo_num > 0:
        o0 = (lo_num + stride - 1) // stride
    hi_num = size + pad - k * dil - 1
    if hi_num < 0:
        return 0, 0
    o1 = hi_num // stride + 1
    if o1 > out:
        o1 = out
    if o0 > o1:
        o0 = o1
    return o0, o1


@njit(cache=True)
def conv2d_skip(x, w, bias, has_bias, t_out, groups, sh, sw, ph, pw, dh, dw, oh_n, ow_n,
                code, frac_bits, word_bits, start, pivot, left, right, skip):
    """SONIC-order Conv2d. ``x [B, C, H, W]``, ``w [O, C/groups, KH, KW]``, ``t_out [O]``.

    Returns ``(y [B, O, OH, OW], stats)`` with the same ``stats`` layout as :func:`linear_skip`.
    """
    nb, _, hh, ww = x.shape
    no, cg, kh_n, kw_n = w.shape
    og = no // groups
    npos = oh_n * ow_n
    y = np.empty((nb, no, oh_n, ow_n), dtype=np.float32)
    sf = np.zeros(4, dtype=np.float32)
    si = sf.view(np.int32)
    zero_weight = 0
    zero_input = 0
    executed = 0
    compares = 0
    divisions = 0
    steps = 0
    for b in range(nb):
        for o in range(no):
            grp = o // og
            bv = bias[o] if has_bias else np.float32(0.0)
            for p in range(oh_n):
                for q in range(ow_n):
                    y[b, o, p, q] = bv
            t_o = t_out[o]
            for c in range(cg):
                ci = grp * cg + c
                for kh in range(kh_n):
                    p0, p1 = _valid_range(kh, sh, ph, dh, hh, oh_n)
                    for kw in range(kw_n):
                        q0, q1 = _valid_range(kw, sw, pw, dw, ww, ow_n)
                        wv = w[o, c, kh, kw]
                        if not skip:
                            for p in range(p0, p1):
                                ih = p * sh - ph + kh * dh
                                for q in range(q0, q1):
                                    y[b, o, p, q] += x[b, ci, ih, q * sw - pw + kw * dw] * wv
                            continue
                        if wv == 0:             # the whole plane: one test
                            zero_weight += npos
                            compares += 1
                            continue
                        # eq. (3): t = T_g(o) / |w| once per weight, reused over the plane
                        t, s = ratio_scalar(t_o, abs(wv), code, frac_bits, word_bits, start,
                                            pivot, left, right, sf, si)
                        steps += s
                        divisions += 1
                        compares += npos
                        zero_input += npos - (p1 - p0) * (q1 - q0)   # zero padding
                        for p in range(p0, p1):
                            ih = p * sh - ph + kh * dh
                            for q in range(q0, q1):
                                xv = x[b, ci, ih, q * sw - pw + kw * dw]
                                if abs(xv) > t:     # keep iff |X| > T/|W|
                                    y[b, o, p, q] += xv * wv
                                    executed += 1
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
    return y, stats


# ---------------------------------------------------------------------------- wrappers

def _f32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


def _bias(bias: Tensor | None, out: int) -> tuple[np.ndarray, bool]:
    if bias is None:
        return np.zeros(out, dtype=np.float32), False
    return _f32(bias), True


def _counts(stats: np.ndarray, samples: int) -> tuple[MacCounts, int]:
    s = [int(v) for v in stats]
    return MacCounts(total=s[0], zero_weight=s[1], zero_input=s[2], threshold=s[3],
                     compares=s[4], divisions=s[5], samples=samples), s[6]


def unit_linear_kernel(x: Tensor, weight: Tensor, bias: Tensor | None,
                       threshold: Tensor | float, *, division: str = "exact",
                       skip: bool = True, **division_opts) -> KernelResult:
    """UnIT Linear through the compiled input-stationary kernel: ``x [..., in]``."""
    out_f, in_f = weight.shape
    if x.shape[-1] != in_f:
        raise LayerwiseError(
            f"input has {x.shape[-1]} features, the layer expects {in_f}; fix the input shape")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_f)
    t_out, g = threshold_per_output(threshold, out_f)
    t_groups = _f32(t_out.reshape(g, out_f // g)[:, 0])
    b, has_b = _bias(bias, out_f)
    y, stats = linear_skip(_f32(x2), _f32(weight.t()), b, has_b, t_groups,
                           *kernel_args(division, **division_opts), bool(skip))
    counts, steps = _counts(stats, x2.shape[0])
    return KernelResult(torch.from_numpy(y).reshape(*lead, out_f), counts, steps)


def unit_conv_kernel(x: Tensor, weight: Tensor, bias: Tensor | None, threshold: Tensor | float,
                     *, stride=1, padding=0, dilation=1, groups: int = 1,
                     padding_mode: str = "zeros", division: str = "exact", skip: bool = True,
                     **division_opts) -> KernelResult:
    """UnIT Conv1d / Conv2d through the compiled SONIC-order kernel (arguments as ``F.conv*d``)."""
    nd = check_conv_input(x, weight)
    kernel = tuple(weight.shape[2:])
    stride_t, dil_t = _tuple(stride, nd), _tuple(dilation, nd)
    pads = conv_pads(padding, kernel, dil_t)           # F.pad order: last dim first
    symmetric = all(pads[k] == pads[k + 1] for k in range(0, len(pads), 2))
    if any(pads) and (padding_mode != "zeros" or not symmetric):
        mode = "constant" if padding_mode == "zeros" else padding_mode
        x = F.pad(x, pads, mode=mode)                  # pad first, then convolve unpadded
        pads = [0] * len(pads)
    pad_t = tuple(pads[2 * k] for k in reversed(range(nd)))
    if nd == 1:
        x = x.unsqueeze(2)
        weight = weight.unsqueeze(2)
        stride_t, dil_t, pad_t, kernel = (1,) + stride_t, (1,) + dil_t, (0,) + pad_t, (1,) + kernel
    b, c_in, hh, ww = x.shape
    out_c = weight.shape[0]
    if groups < 1 or c_in % groups or out_c % groups or c_in != weight.shape[1] * groups:
        raise LayerwiseError(
            f"input has {c_in} channels, the layer expects {weight.shape[1] * groups} "
            f"in {groups} groups; fix the input shape or groups")
    oh = (hh + 2 * pad_t[0] - dil_t[0] * (kernel[0] - 1) - 1) // stride_t[0] + 1
    ow = (ww + 2 * pad_t[1] - dil_t[1] * (kernel[1] - 1) - 1) // stride_t[1] + 1
    if oh <= 0 or ow <= 0:
        raise LayerwiseError(
            f"input of spatial size {tuple(x.shape[2:])} is smaller than the kernel; "
            "pass a larger input")
    t_out, _ = threshold_per_output(threshold, out_c)
    bias_n, has_b = _bias(bias, out_c)
    y, stats = conv2d_skip(_f32(x), _f32(weight), bias_n, has_b, _f32(t_out), int(groups),
                           stride_t[0], stride_t[1], pad_t[0], pad_t[1], dil_t[0], dil_t[1],
                           oh, ow, *kernel_args(division, **division_opts), bool(skip))
    counts, steps = _counts(stats, b)
    out = torch.from_numpy(y)
    if nd == 1:
        out = out[:, :, 0, :]
    return KernelResult(out, counts, steps)
