"""Reference semantics of UnIT layers: vectorised, exact, chunked (paper section 2.1).

Threshold ``T >= 0`` is a 0-d tensor (one per layer) or a 1-d tensor of length ``G`` (threshold
groups of OUTPUT units: output feature / channel ``j`` belongs to group ``j // (out // G)``).

* Linear (eq. 2, control term = the input): the MAC ``x[b, i] * W[j, i]`` runs iff ``x != 0``,
  ``w != 0`` and ``|w| > ratio(T_g(j), |x|)``.
* Conv (eq. 3, control term = the weight): the MAC of weight ``w = W[o, c, k...]`` with input value
  ``x`` runs iff ``w != 0``, ``x != 0`` and ``|x| > ratio(T_g(o), |w|)``, the ratio computed once
  per weight.
* Ties are skipped (strict ``>`` keeps), as eq. (1)'s ``<= T`` is pruned. Zeros never run and are
  counted as zero skips, never as threshold skips (see :mod:`layerwise.unit.counts`).
* ``ratio(T, c)`` is ``T / c`` in float32 for ``division="exact"``; otherwise
  :func:`layerwise.unit.division.threshold_ratio` (section 2.2's approximations).
* ``y = bias + sum over executed MACs of x * w``. The authors' release never adds the bias; we do.
* Zero padding contributes zero inputs (counted as zero-input skips: the dense MAC count
  includes padded positions, ``B * out_positions * out_channels * (C_in / groups) * prod(kernel)``);
  reflect / replicate / circular padding is applied first with ``F.pad`` and its values are
  tested like any input.

Memory: the keep-mask is built in chunks over batch, output units (and conv positions) so that
one chunk holds at most ``chunk_elems`` mask entries (one bool each) plus a float temporary of the
same number of elements; the im2col matrix of the whole input (``F.unfold``) is held once. A
single row (Linear: ``in_features``; Conv: ``C_in/groups * prod(kernel)``) is the smallest chunk,
so that many entries are used even if ``chunk_elems`` is smaller.

``T == 0`` everywhere with exact division reproduces the dense layer; that case takes a fast path
through ``F.linear`` / ``F.conv*`` with the same (exact) counts unless ``fast_path=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import LayerwiseError
from .counts import MacCounts

DEFAULT_CHUNK_ELEMS = 2**24


def threshold_per_output(threshold: Tensor | float, out: int) -> tuple[Tensor, int]:
    """Expand a layer threshold (0-d or ``[G]``) to one float32 value per output unit.

    Returns ``(T_out [out], G)``. Raises :class:`LayerwiseError` for a negative / non-finite
    threshold or a group count that does not divide ``out``.
    """
    t = torch.as_tensor(threshold, dtype=torch.float32)
    if t.dim() > 1:
        raise LayerwiseError(
            f"threshold has shape {tuple(t.shape)}; pass a 0-d tensor or a 1-d tensor of one "
            "value per threshold group")
    if t.numel() == 0:
        raise LayerwiseError("threshold is empty; pass at least one value (a 0-d tensor)")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise LayerwiseError(
            f"threshold must be finite and >= 0, got {t.tolist()}; calibrate the layer or set 0")
    if t.dim() == 0:
        return t.expand(out), 1
    g = t.numel()
    if out % g:
        raise LayerwiseError(
            f"{g} threshold groups do not divide the layer's {out} outputs; "
            f"pick a group count that divides {out}")
    return t.repeat_interleave(out // g), g


def ratio(threshold: Tensor, control: Tensor, division: str = "exact",
          division_opts: dict | None = None) -> Tensor:
    """``T / c`` (float32) for ``c > 0`` elementwise, exactly or by an approximation.

    ``threshold`` and ``control`` broadcast together; the result has their common shape and is
    clamped at 0 so that a zero operand can never pass the strict ``>`` test.
    """
    c = control.to(torch.float32)
    t = threshold.to(torch.float32)
    if division == "exact":
        r = t / c
    else:
        from .division import threshold_ratio  # written separately; imported only when needed

        t, c = (a.contiguous() for a in torch.broadcast_tensors(t, c))
        r = threshold_ratio(t, c, division, **(division_opts or {}))
        r = r.to(torch.float32)
    return r.clamp_min(0.0)


def _is_fast(t_out: Tensor, division: str, fast_path: bool) -> bool:
    return fast_path and division == "exact" and not bool(t_out.any())


# --------------------------------------------------------------------------------------- Linear

def unit_linear(x: Tensor, weight: Tensor, bias: Tensor | None, threshold: Tensor | float, *,
                division: str = "exact", division_opts: dict | None = None,
                chunk_elems: int = DEFAULT_CHUNK_ELEMS,
                fast_path: bool = True) -> tuple[Tensor, MacCounts]:
    """UnIT Linear (eq. 2): ``x [..., in]``, ``weight [out, in]`` -> ``(y [..., out], counts)``."""
    out_f, in_f = weight.shape
    if x.shape[-1] != in_f:
        raise LayerwiseError(
            f"input has {x.shape[-1]} features, the layer expects {in_f}; fix the input shape")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, in_f)
    n = x2.shape[0]
    t_out, g = threshold_per_output(threshold, out_f)
    t_out = t_out.to(weight.device)

    x_nz = x2 != 0                                   # [n, in]
    w_nz = weight != 0                               # [out, in]
    nnz_w_per_input = w_nz.sum(0, dtype=torch.int64)  # [in]: nonzero weights fed by input i
    zero_x_per_input = (~x_nz).sum(0, dtype=torch.int64)
    nnz_x = int(x_nz.sum())
    zero_w = int((~w_nz).sum())
    total = n * in_f * out_f
    zero_weight = n * zero_w
    zero_input = int((zero_x_per_input * nnz_w_per_input).sum())
    counts = MacCounts(total=total, zero_weight=zero_weight, zero_input=zero_input,
                       compares=nnz_x * out_f + (n * in_f - nnz_x), divisions=nnz_x * g,
                       samples=n)

    if _is_fast(t_out, division, fast_path):
        y = F.linear(x2, weight, bias)
        return y.reshape(*lead, out_f), counts

    # Ratio per (row, input, group): computed once per nonzero input and group (eq. 2's X-bar).
    t_groups = t_out.reshape(g, out_f // g)[:, 0]                 # [G]
    absx = x2.abs()
    safe = torch.where(x_nz, absx, torch.ones((), dtype=absx.dtype, device=absx.device))
    r = ratio(t_groups[None, None, :], safe[:, :, None], division, division_opts)  # [n, in, G]
    r = torch.where(x_nz[:, :, None], r, torch.full((), float("inf"), device=r.device))
    group_of = torch.arange(out_f, device=weight.device) // (out_f // g)  # [out]

    w_t = weight.t()                                   # [in, out]
    abs_w_t = w_t.abs()
    per_row = in_f
    o_c = out_f if in_f * out_f <= chunk_elems else max(1, chunk_elems // per_row)
    n_c = max(1, chunk_elems // (per_row * o_c))
    ys = []
    executed = 0
    for n0 in range(0, n, n_c):
        xs = x2[n0:n0 + n_c]
        rs = r[n0:n0 + n_c]
        parts = []
        for o0 in range(0, out_f, o_c):
            o1 = min(out_f, o0 + o_c)
            rr = rs[:, :, group_of[o0:o1]]                         # [nc, in, oc]
            keep = abs_w_t[None, :, o0:o1] > rr                    # eq. (2): |W| > T/|x|
            executed += int(keep.sum())
            masked = torch.where(keep, w_t[None, :, o0:o1], 0.0)
            parts.append(torch.bmm(xs[:, None, :], masked)[:, 0, :])
        ys.append(torch.cat(parts, dim=1))
    y = torch.cat(ys, dim=0) if ys else x2.new_zeros((0, out_f))
    if bias is not None:
        y = y + bias
    counts.threshold = total - zero_weight - zero_input - executed
    return y.reshape(*lead, out_f), counts


# ----------------------------------------------------------------------------------------- Conv

def _tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(a) for a in v)
    if len(v) != n:
        raise LayerwiseError(f"expected {n} values, got {v}")
    return v


def conv_pads(padding, kernel: Sequence[int], dilation: Sequence[int]) -> list[int]:
    """Padding as ``F.pad`` amounts (last dim first), for ints, tuples, 'valid' and 'same'."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * nd)
        if padding == "same":
            pads: list[int] = []
            for k, d in zip(reversed(kernel), reversed(dilation)):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return pads
        raise LayerwiseError(f"unknown padding {padding!r}; use an int, a tuple, 'valid' or 'same'")
    p = _tuple(padding, nd)
    pads = []
    for a in reversed(p):
        pads += [a, a]
    return pads


def conv_columns(x: Tensor, weight: Tensor, *, stride, padding, dilation, groups: int,
                 padding_mode: str = "zeros") -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """im2col of a Conv1d/Conv2d input.

    Returns ``(cols [B, groups, R, P], w2 [out, R], out_spatial)`` with ``R = C_in/groups *
    prod(kernel)`` and ``P`` output positions; ``cols[b, grp(o), r, p]`` is the input value that
    weight ``w2[o, r]`` multiplies at output position ``p``. Padding is applied first (zeros or
    ``padding_mode``), so padded positions are real entries of ``cols``.
    """
    nd = check_conv_input(x, weight)
    kernel = tuple(weight.shape[2:])
    stride_t, dil_t = _tuple(stride, nd), _tuple(dilation, nd)
    pads = conv_pads(padding, kernel, dil_t)
    if any(pads):
        mode = "constant" if padding_mode == "zeros" else padding_mode
        x = F.pad(x, pads, mode=mode)
    if nd == 1:  # treat as 2-d with H = 1
        x = x.unsqueeze(2)
        kernel, stride_t, dil_t = (1, kernel[0]), (1, stride_t[0]), (1, dil_t[0])
    b, c_in = x.shape[:2]
    if c_in != weight.shape[1] * groups:
        raise LayerwiseError(
            f"input has {c_in} channels, the layer expects {weight.shape[1] * groups}; "
            "fix the input shape")
    h, w = x.shape[2:]
    oh = (h - dil_t[0] * (kernel[0] - 1) - 1) // stride_t[0] + 1
    ow = (w - dil_t[1] * (kernel[1] - 1) - 1) // stride_t[1] + 1
    if oh <= 0 or ow <= 0:
        raise LayerwiseError(
            f"input of spatial size {tuple(x.shape[2:])} is smaller than the kernel; "
            "pass a larger input")
    cols = F.unfold(x, kernel_size=kernel, dilation=dil_t, stride=stride_t)  # [B, C*K, P]
    cols = cols.reshape(b, groups, -1, oh * ow)
    w2 = weight.reshape(weight.shape[0], -1)
    out_spatial = (ow,) if nd == 1 else (oh, ow)
    return cols, w2, out_spatial


def check_conv_input(x: Tensor, weight: Tensor) -> int:
    """The number of spatial dims (1 or 2) of a UnIT conv, or a LayerwiseError naming the fix."""
    nd = weight.dim() - 2
    if nd not in (1, 2):
        raise LayerwiseError(f"UnIT conv supports 1-d and 2-d kernels, got {nd}-d")
    if x.dim() != nd + 2:
        raise LayerwiseError(
            f"conv input has shape {tuple(x.shape)}; pass a batched [B, C, ...] tensor with "
            f"{nd} spatial dims")
    return nd


def unit_conv(x: Tensor, weight: Tensor, bias: Tensor | None, threshold: Tensor | float, *,
              stride=1, padding=0, dilation=1, groups: int = 1, padding_mode: str = "zeros",
              division: str = "exact", division_opts: dict | None = None,
              chunk_elems: int = DEFAULT_CHUNK_ELEMS,
              fast_path: bool = True) -> tuple[Tensor, MacCounts]:
    """UnIT Conv1d / Conv2d (eq. 3): ``x [B, C, (H,) W]`` -> ``(y, counts)``, like ``F.conv*d``."""
    out_c = weight.shape[0]
    cols, w2, out_spatial = conv_columns(x, weight, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups,
                                         padding_mode=padding_mode)
    b, _, rdim, npos = cols.shape
    og = out_c // groups
    t_out, g = threshold_per_output(threshold, out_c)
    t_out = t_out.to(weight.device)

    w_nz = w2 != 0                                                       # [out, R]
    nnz_w = int(w_nz.sum())
    zero_w = w2.numel() - nnz_w
    nnz_w_per_r = w_nz.reshape(groups, og, rdim).sum(1, dtype=torch.int64)  # [groups, R]
    zero_x = (cols == 0).sum(-1, dtype=torch.int64)                        # [B, groups, R]
    total = b * out_c * rdim * npos
    zero_weight = b * npos * zero_w
    zero_input = int((zero_x * nnz_w_per_r[None]).sum())
    counts = MacCounts(total=total, zero_weight=zero_weight, zero_input=zero_input,
                       compares=(total - zero_weight) + b * zero_w, divisions=b * nnz_w,
                       samples=b)

    if _is_fast(t_out, division, fast_path):
        nd = weight.dim() - 2
        pads = conv_pads(padding, tuple(weight.shape[2:]), _tuple(dilation, nd))
        if any(pads):
            x = F.pad(x, pads, mode="constant" if padding_mode == "zeros" else padding_mode)
        conv = F.conv1d if nd == 1 else F.conv2d
        y = conv(x, weight, bias, stride=stride, padding=0, dilation=dilation, groups=groups)
        return y, counts

    # Per-weight ratio table T / |W| (eq. 3's W-bar), computed once per call; inf for zero weights.
    safe = torch.where(w_nz, w2.abs(), torch.ones((), dtype=w2.dtype, device=w2.device))
    r = ratio(t_out[:, None], safe, division, division_opts)            # [out, R]
    r = torch.where(w_nz, r, torch.full((), float("inf"), device=r.device))

    if rdim * npos <= chunk_elems:
        p_c = npos
        o_c = max(1, min(og, chunk_elems // (rdim * npos)))
    else:
        o_c, p_c = 1, max(1, chunk_elems // rdim)
    b_c = max(1, chunk_elems // (o_c * rdim * p_c))

    y = cols.new_empty((b, out_c, npos))
    executed = 0
    for grp in range(groups):
        for o0 in range(grp * og, (grp + 1) * og, o_c):
            o1 = min((grp + 1) * og, o0 + o_c)
            wc, rc = w2[o0:o1], r[o0:o1]                                  # [oc, R]
            for b0 in range(0, b, b_c):
                for p0 in range(0, npos, p_c):
                    xs = cols[b0:b0 + b_c, grp, :, p0:p0 + p_c]           # [bc, R, pc]
                    keep = xs.abs()[:, None] > rc[None, :, :, None]      # eq. (3): |X| > T/|W|
                    executed += int(keep.sum())
                    kept_x = torch.where(keep, xs[:, None], 0.0)          # [bc, oc, R, pc]
                    y[b0:b0 + b_c, o0:o1, p0:p0 + p_c] = torch.einsum("borp,or->bop", kept_x, wc)
    if bias is not None:
        y = y + bias[None, :, None]
    counts.threshold = total - zero_weight - zero_input - executed
    return y.reshape(b, out_c, *out_spatial), counts
