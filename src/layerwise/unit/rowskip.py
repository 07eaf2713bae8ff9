"""Row skipping: UnIT's rule at the granularity a CPU's SIMD units like (Linear layers).

UnIT's Linear rule (paper eq. 2) keeps the MAC ``x_p * W[j, p]`` iff ``|W[j, p]| > T / |x_p|``.
The ratio ``t_p = T / |x_p|`` is one number per input, so when ``t_p >= max_j |W[j, p]|`` every
MAC fed by ``x_p`` is skipped: the whole column ``p`` of ``W`` (row ``p`` of ``W^T``) need not be
read. A matrix-vector product at batch 1 is memory bound, so not reading a row saves its time;
the surviving rows run as one branch-free, vectorised loop (the dynamic activation sparsity of
TEAL, Deja Vu and CATS, with UnIT's threshold as the criterion).

Definitions (``G`` threshold groups of ``out // G`` outputs each, ``T_g`` per group):

* row block ``(p, g)``: input ``p``'s weights to the outputs of group ``g``,
  ``colmax[g, p] = max_{j in g} |W[j, p]|`` (precomputed once per weight tensor);
* at batch 1 the block is skipped iff ``x_p == 0`` or ``colmax[g, p] <= ratio(T_g, |x_p|)``,
  the same float32 ratio (exact or a section 2.2 approximation) and the same tie rule (``<=``
  skips) as :mod:`layerwise.unit.reference`; a skipped block therefore holds only MACs that the
  per-MAC rule skips too;
* at batch ``B > 1`` a block is skipped only if every sample skips it (the weights are read once
  for the whole batch).

Two rules for what surviving blocks compute (``rule``):

* ``"mac"``: UnIT exactly: inside a surviving block the per-MAC test still applies, as a
  branch-free select (``y += x * (|w| > t ? w : 0)``). Outputs equal
  :func:`~layerwise.unit.reference.unit_linear`'s to float32 rounding.
* ``"row"``: the coarse, CPU-friendly rule: a surviving block runs every MAC. Its accuracy at the
  same calibration is reported against the per-MAC rule's.
* ``"none"``: no skipping, every row runs through the same compiled loop: the baseline that says
  how much of the ideal ``1 / (1 - s)`` the skipping achieves, apart from how fast torch's own
  dense kernel happens to be on this CPU.

Counts, both exact for what THIS execution does:

* :class:`RowCounts` (the CPU's view): row blocks seen and skipped (zero input / threshold), MACs
  the CPU multiplied (``out // G`` per surviving block and sample; masked-out MACs of the ``"mac"``
  rule are multiplied by 0 and still count as run here);
* :class:`~layerwise.unit.counts.MacCounts` (an MCU's view, attribution of
  :mod:`layerwise.unit.counts`): for ``"mac"`` the per-MAC rule's counts (equal to the
  reference's); for ``"row"`` a MAC is executed iff its block survives and both operands are
  nonzero. ``compares``: one zero test per (sample, input) plus one block test per nonzero input
  and group, plus, for ``"mac"``, one per-MAC test in each surviving block of a nonzero input;
  ``divisions``: one ratio per nonzero input and group.

Only float32 CPU tensors take the compiled path; anything else raises (use the reference layers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..errors import LayerwiseError
from .counts import MacCounts
from .division import kernel_args, ratio_scalar
from .layers import UnITLinear
from .reference import threshold_per_output

RULES = ("mac", "row", "none")
_MODE = {"none": 0, "row": 1, "mac": 2}


@dataclass
class RowCounts:
    """What the CPU row-skipping execution did (exact ints; see the module docstring)."""

    samples: int = 0
    blocks: int = 0              # row blocks decided: inputs x groups, per call
    skipped_zero: int = 0        # blocks skipped because the input was 0 (every sample, B > 1)
    skipped_threshold: int = 0   # blocks skipped by colmax <= T / |x|
    macs_total: int = 0          # samples x in x out
    macs_run: int = 0            # MACs the CPU multiplied

    @property
    def skipped_blocks(self) -> int:
        return self.skipped_zero + self.skipped_threshold

    @property
    def skipped_fraction(self) -> float:
        """Share of row blocks not read: the fraction of the weight matrix skipped."""
        return self.skipped_blocks / self.blocks if self.blocks else 0.0

    def __add__(self, other: RowCounts) -> RowCounts:
        if not isinstance(other, RowCounts):
            return NotImplemented
        return RowCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                            for f in fields(self)})

    def to_json(self) -> dict:
        out = asdict(self)
        out["skipped_fraction"] = self.skipped_fraction
        return out


# ------------------------------------------------------------------------------ compiled kernel

# The inner loops run over ``range(m)`` of sliced views: with ``range(j0, j1)`` numba's LLVM does
# not vectorise them (3x slower here).
@njit(cache=True, fastmath=True)
def _axpy_rows(y, xs, wt, rows, n, j0, j1):
    """``y[j0:j1] += sum_k xs[k] * wt[rows[k], j0:j1]``, four rows per sweep of ``y``."""
    m = j1 - j0
    yv = y[j0:j1]
    k = 0
    while k + 4 <= n:
        r0 = wt[rows[k], j0:j1]
        r1 = wt[rows[k + 1], j0:j1]
        r2 = wt[rows[k + 2], j0:j1]
        r3 = wt[rows[k + 3], j0:j1]
        a0 = xs[k]
        a1 = xs[k + 1]
        a2 = xs[k + 2]
        a3 = xs[k + 3]
        for j in range(m):
            yv[j] += a0 * r0[j] + a1 * r1[j] + a2 * r2[j] + a3 * r3[j]
        k += 4
    while k < n:
        r = wt[rows[k], j0:j1]
        a = xs[k]
        for j in range(m):
            yv[j] += a * r[j]
        k += 1


@njit(cache=True, fastmath=True)
def _axpy_rows_masked(y, xs, ts, wt, rows, n, j0, j1):
    """Like :func:`_axpy_rows`, keeping ``w`` only where ``|w| > ts[k]`` (eq. 2, branch-free)."""
    m = j1 - j0
    yv = y[j0:j1]
    zero = np.float32(0.0)
    k = 0
    while k + 4 <= n:
        r0 = wt[rows[k], j0:j1]
        r1 = wt[rows[k + 1], j0:j1]
        r2 = wt[rows[k + 2], j0:j1]
        r3 = wt[rows[k + 3], j0:j1]
        a0 = xs[k]
        a1 = xs[k + 1]
        a2 = xs[k + 2]
        a3 = xs[k + 3]
        t0 = ts[k]
        t1 = ts[k + 1]
        t2 = ts[k + 2]
        t3 = ts[k + 3]
        for j in range(m):
            w0 = r0[j]
            w1 = r1[j]
            w2 = r2[j]
            w3 = r3[j]
            yv[j] += (a0 * (w0 if abs(w0) > t0 else zero) + a1 * (w1 if abs(w1) > t1 else zero)
                      + a2 * (w2 if abs(w2) > t2 else zero) + a3 * (w3 if abs(w3) > t3 else zero))
        k += 4
    while k < n:
        r = wt[rows[k], j0:j1]
        a = xs[k]
        t = ts[k]
        for j in range(m):
            w = r[j]
            yv[j] += a * (w if abs(w) > t else zero)
        k += 1


@njit(cache=True)
def rowskip_kernel(x, wt, colmax, nnz, t_groups, bias, has_bias, mode, count,
                   code, frac_bits, word_bits, start, pivot, left, right):
    """Row-skipping Linear. ``x [B, I]``, ``wt [I, O]`` (the weight transposed, contiguous),
    ``colmax [G, I]``, ``nnz [G, I]`` (nonzero weights per block), float32 / int64; ``mode`` 0
    (no skipping: the same loop over every row), 1 (row rule), 2 (per-MAC rule).

    Returns ``(y [B, O], stats)``, ``stats = [blocks, skipped_zero, skipped_threshold, macs_run,
    total, zero_weight, zero_input, threshold, compares, divisions]`` (the MacCounts part only
    when ``count``).
    """
    nb, ni = x.shape
    no = wt.shape[1]
    ng = t_groups.shape[0]
    og = no // ng
    per_mac = mode == 2
    y = np.empty((nb, no), dtype=np.float32)
    for b in range(nb):
        for j in range(no):
            y[b, j] = bias[j] if has_bias else np.float32(0.0)
    sf = np.zeros(4, dtype=np.float32)
    si = sf.view(np.int32)
    t = np.empty((nb, ni, ng), dtype=np.float32)      # ratio per (sample, input, group)
    keep = np.empty((ng, ni), dtype=np.bool_)
    skipped_zero = 0
    skipped_thr = 0
    divisions = 0
    if mode == 0:
        keep[:, :] = True
    elif nb == 1 and ng == 1 and code == 0:
        # batch 1, one group, exact division: the common case, written so LLVM vectorises it
        tg0 = t_groups[0]
        one = np.float32(1.0)
        nz = 0
        nk = 0
        for p in range(ni):
            a = abs(x[0, p])
            r = tg0 / (a if a != 0 else one)    # eq. (2): t = T / |x| (a zero input: no ratio)
            t[0, p, 0] = r
            k = (a != 0) & (colmax[0, p] > r)   # the whole row is skipped iff max|W| <= t
            keep[0, p] = k
            nz += a != 0
            nk += k
        divisions = nz
        skipped_zero = ni - nz
        skipped_thr = nz - nk
    elif nb == 1:
        # batch 1 (the case row skipping is for): one pass, no per-sample loops
        for p in range(ni):
            xv = x[0, p]
            if xv == 0:
                for g in range(ng):
                    keep[g, p] = False
                skipped_zero += ng
                continue
            a = abs(xv)
            divisions += ng
            for g in range(ng):                 # eq. (2): t = T_g / |x| once per (input, group)
                if code == 0:                   # exact float32 division, inline
                    r = t_groups[g] / a
                else:
                    r, _steps = ratio_scalar(t_groups[g], a, code, frac_bits, word_bits,
                                             start, pivot, left, right, sf, si)
                t[0, p, g] = r
                k = colmax[g, p] > r            # the whole block is skipped iff max|W| <= t
                keep[g, p] = k
                if not k:
                    skipped_thr += 1
    else:
        for p in range(ni):
            nz_any = False
            for b in range(nb):
                if x[b, p] != 0:
                    nz_any = True
                    a = abs(x[b, p])
                    for g in range(ng):             # eq. (2): t = T_g / |x| once per (input, group)
                        if code == 0:               # exact float32 division, inline
                            t[b, p, g] = t_groups[g] / a
                        else:
                            r, _steps = ratio_scalar(t_groups[g], a, code, frac_bits, word_bits,
                                                     start, pivot, left, right, sf, si)
                            t[b, p, g] = r
                    divisions += ng
            for g in range(ng):
                if not nz_any:
                    keep[g, p] = False
                    skipped_zero += 1
                    continue
                k = False
                for b in range(nb):
                    if x[b, p] != 0 and colmax[g, p] > t[b, p, g]:
                        k = True
                        break
                keep[g, p] = k
                if not k:
                    skipped_thr += 1
    rows = np.empty(ni, dtype=np.int64)
    xs = np.empty(ni, dtype=np.float32)
    ts = np.empty(ni, dtype=np.float32)
    yb = np.empty(no, dtype=np.float32)
    kept_blocks = 0
    for g in range(ng):
        n = 0
        for p in range(ni):
            if keep[g, p]:
                rows[n] = p
                n += 1
        kept_blocks += n
        j0 = g * og
        j1 = j0 + og
        for b in range(nb):
            for j in range(no):
                yb[j] = y[b, j]
            for k in range(n):
                xs[k] = x[b, rows[k]]
                # a zero input in a kept block (B > 1): its product is 0 under either rule
                ts[k] = t[b, rows[k], g] if xs[k] != 0 else np.float32(np.inf)
            if per_mac:
                _axpy_rows_masked(yb, xs, ts, wt, rows, n, j0, j1)
            else:
                _axpy_rows(yb, xs, wt, rows, n, j0, j1)
            for j in range(j0, j1):
                y[b, j] = yb[j]
    stats = np.zeros(10, dtype=np.int64)
    stats[0] = ni * ng
    stats[1] = skipped_zero
    stats[2] = skipped_thr
    stats[3] = kept_blocks * og * nb
    if count:
        zero_w = 0
        for g in range(ng):
            for p in range(ni):
                zero_w += og - nnz[g, p]
        executed = 0
        zero_in = 0
        compares = 0
        for b in range(nb):
            for p in range(ni):
                compares += 1                   # the zero test
                if x[b, p] == 0:
                    for g in range(ng):
                        zero_in += nnz[g, p]
                    continue
                if mode != 0:
                    compares += ng              # the block test per group
                for g in range(ng):
                    if not keep[g, p]:
                        continue
                    if not per_mac:
                        executed += nnz[g, p]
                        continue
                    compares += og
                    tt = t[b, p, g]
                    for j in range(g * og, (g + 1) * og):
                        if abs(wt[p, j]) > tt:
                            executed += 1
        total = nb * ni * no
        stats[4] = total
        stats[5] = nb * zero_w
        stats[6] = zero_in
        stats[7] = total - nb * zero_w - zero_in - executed
        stats[8] = compares
        stats[9] = divisions
    return y, stats


# ------------------------------------------------------------------------------ prepared weights

@dataclass
class RowPlan:
    """A Linear prepared for row skipping: ``W^T`` contiguous, per-block max and nonzero count,
    the per-group thresholds and the division method's kernel arguments (built once, so that a
    call pays only for the kernel)."""

    wt: np.ndarray          # [in, out] float32
    colmax: np.ndarray      # [G, in] float32
    nnz: np.ndarray         # [G, in] int64
    bias: np.ndarray        # [out] float32 (zeros when absent)
    has_bias: bool
    t_groups: np.ndarray    # [G] float32
    kargs: tuple            # kernel_args(division, **division_opts)

    @classmethod
    def build(cls, weight: Tensor, bias: Tensor | None, threshold: Tensor | float, *,
              division: str = "exact", division_opts: dict | None = None) -> RowPlan:
        out_f, in_f = weight.shape
        t_out, groups = threshold_per_output(threshold, out_f)
        w = weight.detach().to(torch.float32).cpu()
        blocks = w.abs().reshape(groups, out_f // groups, in_f)
        b = (bias.detach().to(torch.float32).cpu().numpy() if bias is not None
             else np.zeros(out_f, dtype=np.float32))
        t_groups = t_out.detach().cpu().reshape(groups, out_f // groups)[:, 0]
        return cls(wt=np.ascontiguousarray(w.t().numpy()),
                   colmax=np.ascontiguousarray(blocks.amax(dim=1).numpy()),
                   nnz=np.ascontiguousarray((blocks != 0).sum(dim=1).numpy().astype(np.int64)),
                   bias=np.ascontiguousarray(b), has_bias=bias is not None,
                   t_groups=np.ascontiguousarray(t_groups.numpy().astype(np.float32)),
                   kargs=kernel_args(division, **(division_opts or {})))


def rowskip_linear(x: Tensor, plan: RowPlan, *, rule: str = "mac", count: bool = True
                   ) -> tuple[Tensor, RowCounts, MacCounts | None]:
    """Row-skipping UnIT Linear: ``x [..., in]`` -> ``(y [..., out], RowCounts, MacCounts)``.

    ``count=False`` skips the per-MAC counting pass (for timing); the MacCounts are then None.
    """
    if rule not in RULES:
        raise LayerwiseError(f"rule {rule!r}: use 'mac' (UnIT's per-MAC test inside kept rows), "
                             "'row' (whole rows only) or 'none' (no skipping, the same loop)")
    in_f, out_f = plan.wt.shape
    if x.shape[-1] != in_f:
        raise LayerwiseError(
            f"input has {x.shape[-1]} features, the layer expects {in_f}; fix the input shape")
    if x.device.type != "cpu":
        raise LayerwiseError("row skipping runs on the CPU; move the model and input to cpu")
    lead = x.shape[:-1]
    x2 = x.detach().reshape(-1, in_f)
    if x2.dtype != torch.float32 or not x2.is_contiguous():
        x2 = x2.to(torch.float32).contiguous()
    y, s = rowskip_kernel(x2.numpy(), plan.wt, plan.colmax, plan.nnz, plan.t_groups, plan.bias,
                          plan.has_bias, _MODE[rule], count, *plan.kargs)
    n = x2.shape[0]
    rows = RowCounts(n, int(s[0]), int(s[1]), int(s[2]), n * in_f * out_f, int(s[3]))
    macs = (MacCounts(total=int(s[4]), zero_weight=int(s[5]), zero_input=int(s[6]),
                      threshold=int(s[7]), compares=int(s[8]), divisions=int(s[9]), samples=n)
            if count else None)
    return torch.from_numpy(y).reshape(*lead, out_f), rows, macs


# ------------------------------------------------------------------------------ the layer

class RowSkipLinear(UnITLinear):
    """A :class:`UnITLinear` that executes with row skipping on the CPU (module docstring).

    ``rule`` is ``"mac"`` (UnIT exactly) or ``"row"``; ``counting`` adds both counters each call
    (``counts``: MacCounts, ``row_counts``: RowCounts). The prepared weights are rebuilt when the
    weight, bias or group count changes.
    """

    def _init_rows(self, rule: str) -> None:
        if rule not in RULES:
            raise LayerwiseError(f"rule {rule!r}: use 'mac', 'row' or 'none'")
        self.rule = rule
        self.row_counts = RowCounts()
        self._plan: RowPlan | None = None
        self._plan_key: tuple | None = None

    @classmethod
    def from_unit(cls, layer: UnITLinear, rule: str = "mac") -> RowSkipLinear:
        """A row-skipping copy of a (calibrated) UnIT or plain Linear sharing its parameters."""
        groups = layer.threshold_groups if isinstance(layer, UnITLinear) else 1
        new = cls.from_module(layer, groups, division=getattr(layer, "division", "exact"),
                              division_opts=getattr(layer, "division_opts", None))
        if isinstance(layer, UnITLinear):
            new.unit_threshold = layer.unit_threshold.detach().clone()
            new.enabled = layer.enabled
        new._init_rows(rule)
        return new

    def reset_counts(self) -> None:
        super().reset_counts()
        self.row_counts = RowCounts()

    def plan(self) -> RowPlan:
        t = self.unit_threshold
        key = (self.weight.data_ptr(), self.weight._version,
               None if self.bias is None else (self.bias.data_ptr(), self.bias._version),
               id(t), t._version, self.division, id(self.division_opts))   # set_division assigns a new dict
        if self._plan is None or key != self._plan_key:
            self._plan = RowPlan.build(self.weight, self.bias, t, division=self.division,
                                       division_opts=self.division_opts)
            self._plan_key = key
        return self._plan

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return super().forward(x)
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) and self.training:
            raise LayerwiseError("RowSkipLinear is an inference layer; call model.eval() and run "
                                 "under torch.no_grad()")
        y, rows, macs = rowskip_linear(x, self.plan(), rule=self.rule, count=self.counting)
        if self.counting:
            self.row_counts = self.row_counts + rows
            self._record(macs)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rule={self.rule!r}"


def to_row_skip(model: torch.nn.Module, rule: str = "mac") -> list[str]:
    """Swap every :class:`UnITLinear` of ``model`` (in place) for a :class:`RowSkipLinear` with the
    same weights, thresholds and division; returns the swapped names. Convolutions stay as they
    are. Raises :class:`LayerwiseError` when the model has no UnIT Linear layer."""
    swapped = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, UnITLinear) and not isinstance(child, RowSkipLinear):
                parent._modules[name] = RowSkipLinear.from_unit(child, rule)
                swapped.append(f"{parent_name}.{name}" if parent_name else name)
            elif isinstance(child, RowSkipLinear):
                child.rule = rule
    if not swapped and not any(isinstance(m, RowSkipLinear) for m in model.modules()):
        raise LayerwiseError("the model has no UnIT Linear layer; call layerwise.unit.convert "
                             "(and calibrate) first")
    return swapped


def row_counts(model: torch.nn.Module) -> dict[str, RowCounts]:
    """The CPU counters of every :class:`RowSkipLinear`, by name."""
    return {n: m.row_counts for n, m in model.named_modules() if isinstance(m, RowSkipLinear)}


__all__ = ["RULES", "RowCounts", "RowPlan", "RowSkipLinear", "row_counts", "rowskip_kernel",
           "rowskip_linear", "to_row_skip"]
