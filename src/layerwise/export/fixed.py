"""The whole network in int16 fixed point: the Python reference the exported C must match bit for bit.

A plain chain of layers (``nn.Conv1d``, ``nn.Conv2d``, ``nn.Linear``, ``nn.ReLU``, max / average
pooling, ``nn.Flatten``, ``nn.Dropout`` and ``nn.Identity`` in eval mode, in the order their modules
are registered) becomes a :class:`QNet`. Formats and arithmetic (the choices where UnIT, arXiv
2507.07885, section 3.6 and SONIC leave them open):

* every activation tensor is int16 with its own number of fractional bits ``f`` (``Q(15-f).f``),
  the largest ``f <= 15`` for which the largest ``|value|`` seen on the calibration (validation)
  data fits int16; values beyond it saturate (counted). Weights: int16 with the largest ``f_w``
  that holds ``max |w|``, lowered while the worst accumulator on the calibration data (the sum of
  ``|x_q * w_q|`` over a whole output, a bound on every partial sum in any order) exceeds half the
  int32 range; the bias is int32 with ``f_in + f_w`` fractional bits.
* products ``x_q * w_q`` are exact (16 x 16 -> 32 bits) and summed in int32 with two's-complement
  wrap-around (the C code adds as ``uint32_t``); the sum is requantised once per output:
  ``y = floor((acc + 2**(s-1)) / 2**s)`` with ``s = f_in + f_w - f_out``, computed without overflow as
  ``(acc >> s) + ((acc >> (s-1)) & 1)``, then saturated to int16. SONIC rounds every product
  (``F_MUL``); rounding once is cheaper and more accurate, and decides nothing UnIT depends on.
* max pooling is exact; average pooling needs a power-of-two window (the same rounding shift).
* UnIT (eq. 1-3): a layer threshold ``T`` (per threshold group) is held in product units,
  ``T_w = round(T * 2**(f_in + f_w))`` (uint32). Linear keeps ``x_i * w_ij`` iff
  ``|w_q| > t(|x_q|)`` (eq. 2) with the per-input ratio by :data:`DIVISIONS` below; Conv keeps
  iff ``|x_q| > t_w`` (eq. 3) with ``t_w = min(T_w // |w_q|, 0xFFFF)`` precomputed per weight at
  export time (exact: the table costs ROM, not cycles), zero weights skipped whole. Ratios are
  clamped to 16 bits (no int16 magnitude exceeds 0xFFFF, so clamping changes no decision).

Linear ratio ``t(a)`` for ``a = |x_q| > 0`` (``bitlen(a)``: bits of ``a``, 1..16):

* ``exact``: ``T_w // a`` (integer division: ``|w| > T_w // a  <=>  |w| * a > T_w``, eq. 1 exactly);
* ``bitshift`` (eq. 4, Fig. 3): ``T_w >> bitlen(a)``, the shift loop shifting ``T_w`` once per bit of
  ``a`` (the divisor rounded up to a power of two: never more skips than exact);
* ``binary_tree`` (Fig. 4): the same ``n = bitlen(a)`` found by a pivot tree calibrated on the
  validation inputs (:func:`layerwise.unit.division.calibrate_pivots`), each leaf returning the
  constant ``T_w >> n``; only the number of comparisons differs from bitshift;
* ``bitmask`` (eq. 5-6): ``2**(E_T - E_a)`` with ``E = bitlen - 1`` the exponents of ``T_w`` and
  ``a`` (0 when negative). The MSP430 has no FPU and the activations are integers, so the
  exponent of ``a`` has no bit field to mask: it is found by the shift loop (``E_T`` is a
  constant), and the power of two read from a table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayerwiseError
from ..unit.division import PivotTree, calibrate_pivots

log = logging.getLogger(__name__)

DIVISIONS = ("exact", "bitshift", "binary_tree", "bitmask")
MODES = ("dense", "zero_skip", "unit")
INT32_MAX = 2 ** 31 - 1
ACC_HEADROOM = 2 ** 30          # worst calibration accumulator allowed (half the int32 range)

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_PASS = (nn.Flatten, nn.Dropout, nn.Identity)


@dataclass
class QLayer:
    """One layer of a :class:`QNet` (shapes without the batch dimension)."""

    kind: str                       # conv | linear | relu | maxpool | avgpool | flatten
    name: str
    in_shape: tuple
    out_shape: tuple
    f_in: int
    f_out: int
    weight: np.ndarray | None = None      # int16: conv [O, C, K...], linear [O, I]
    bias: np.ndarray | None = None        # int64 holding int32 values, f_in + f_w fractional bits
    f_w: int = 0
    stride: tuple = (1,)
    padding: tuple = (0,)
    dilation: tuple = (1,)
    kernel: tuple = (1,)
    threshold: np.ndarray | None = None   # per output unit / channel, T_w (product units), int64
    groups: int = 1                       # threshold groups (linear)
    tree: PivotTree | None = None         # binary_tree division (linear)

    @property
    def shift(self) -> int:
        return self.f_in + self.f_w - self.f_out

    @property
    def is_mac(self) -> bool:
        return self.kind in ("conv", "linear")

    def conv_table(self) -> np.ndarray:
        """Per-weight ratio ``min(T_w // |w_q|, 0xFFFF)`` (eq. 3; 0xFFFF for a zero weight)."""
        w = np.abs(self.weight.astype(np.int64))
        t = self.threshold.reshape((-1,) + (1,) * (w.ndim - 1))
        return np.where(w > 0, np.minimum(t // np.maximum(w, 1), 0xFFFF), 0xFFFF).astype(np.int64)


@dataclass
class QNet:
    """An int16 fixed-point network (see the module docstring)."""

    layers: list[QLayer]
    input_shape: tuple
    f_input: int
    num_classes: int
    division: str = "exact"
    calibration: dict = field(default_factory=dict)

    @property
    def f_output(self) -> int:
        return self.layers[-1].f_out

    def quantize_input(self, x: Tensor) -> np.ndarray:
        """Float inputs ``[B, ...]`` -> int16 (round to nearest, saturating)."""
        v = np.round(np.asarray(x, dtype=np.float64) * 2.0 ** self.f_input)
        return np.clip(v, -32768, 32767).astype(np.int16)

    def mac_layers(self) -> list[QLayer]:
        return [q for q in self.layers if q.is_mac]


# ----------------------------------------------------------------------------- building

def chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in registration order, checked to be a supported plain chain."""
    out = []
    for name, m in model.named_modules():
        if len(m._modules):
            continue
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.ReLU, *_POOLS, *_PASS)):
            out.append((name, m))
        else:
            raise LayerwiseError(
                f"export: layer {name!r} ({type(m).__name__}) is not supported; the C export "
                "handles Conv1d, Conv2d, Linear, ReLU, max / average pooling, Flatten and Dropout "
                "(fold BatchNorm into the convolution before exporting)")
    if not out:
        raise LayerwiseError("export: the model has no layer; pass a trained network")
    return out


def _run_chain(layers, x: Tensor) -> list[Tensor]:
    """Float outputs of every leaf, in order (the input first)."""
    outs = [x]
    for _, m in layers:
        x = m(x)
        outs.append(x)
    return outs


def _frac_bits(max_abs: float, top: int = 15) -> int:
    """Largest ``f <= top`` with ``round(max_abs * 2**f) <= 32767`` (0 when nothing fits)."""
    for f in range(top, -1, -1):
        if round(max_abs * 2 ** f) <= 32767:
            return f
    raise LayerwiseError(f"export: |value| up to {max_abs:.4g} does not fit int16 at any "
                         "fractional bit count; rescale the inputs or weights")


def _check_conv(name: str, m: nn.Module) -> None:
    if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise LayerwiseError(
            f"export: convolution {name!r} uses groups={m.groups}, padding={m.padding!r}, "
            f"padding_mode={m.padding_mode!r}; the C export handles groups=1 with numeric zero padding")


def _pool_args(name: str, m: nn.Module, nd: int) -> tuple:
    k = _tup(m.kernel_size, nd)
    s = _tup(m.stride if m.stride is not None else m.kernel_size, nd)
    pad = _tup(m.padding, nd)
    extra = []
    if any(pad):
        extra.append(f"padding={m.padding}")
    if getattr(m, "ceil_mode", False):
        extra.append("ceil_mode=True")
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) and any(d != 1 for d in _tup(m.dilation, nd)):
        extra.append(f"dilation={m.dilation}")
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        n = int(np.prod(k))
        if n & (n - 1):
            extra.append(f"a {n}-element window (the C export averages power-of-two windows)")
    if extra:
        raise LayerwiseError(f"export: pooling {name!r} uses {', '.join(extra)}; use a plain "
                             "window without padding")
    return k, s


def _tup(v, nd: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * nd


def quantize_model(model: nn.Module, calib: Tensor, *, division: str = "exact",
                   thresholds: dict[str, Tensor] | None = None, tree_values: int = 4096
                   ) -> QNet:
    """Build the :class:`QNet` of ``model`` (eval mode) with formats from ``calib`` inputs.

    ``thresholds``: UnIT threshold per converted layer name (``[G]`` float, eq. 1 units); layers
    missing from it get ``T = 0`` (zero operands are still skipped in the UnIT build). Every Linear
    gets binary_tree pivots calibrated on its inputs from ``calib``, so one export serves every
    division; ``division`` is the default the C source compiles with.
    """
    if division not in DIVISIONS:
        raise LayerwiseError(f"division {division!r}: use one of {', '.join(DIVISIONS)}")
    model = model.eval()
    layers = chain(model)
    thresholds = thresholds or {}
    with torch.no_grad():
        outs = _run_chain(layers, calib.float())
    x_shape = tuple(calib.shape[1:])
    f_in = _frac_bits(float(outs[0].abs().max()))
    qnet = QNet(layers=[], input_shape=x_shape, f_input=f_in, num_classes=0, division=division)
    for i, (name, m) in enumerate(layers):
        y = outs[i + 1]
        in_shape, out_shape = tuple(outs[i].shape[1:]), tuple(y.shape[1:])
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            is_conv = not isinstance(m, nn.Linear)
            if is_conv:
                _check_conv(name, m)
            f_out = _frac_bits(float(y.abs().max()))
            w = m.weight.detach().double()
            f_w = _frac_bits(float(w.abs().max()))
            xq = torch.round(outs[i].double() * 2 ** f_in).clamp(-32768, 32767)
            while True:
                wq = torch.round(w * 2 ** f_w)
                b = (m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0]))
                bq = torch.round(b * 2 ** (f_in + f_w))
                if is_conv:
                    nd = w.dim() - 2
                    conv = F.conv1d if nd == 1 else F.conv2d
                    worst = conv(xq.abs(), wq.abs(), None, m.stride, m.padding, m.dilation)
                    worst = worst + bq.abs().reshape((1, -1) + (1,) * nd)
                else:
                    worst = xq.abs() @ wq.abs().T + bq.abs()
                if float(worst.max()) <= ACC_HEADROOM or f_w == 0:
                    break
                f_w -= 1
            if float(bq.abs().max()) > INT32_MAX or float(worst.max()) > INT32_MAX:
                raise LayerwiseError(f"export: layer {name!r} overflows the int32 accumulator at any "
                                     "weight format; rescale its inputs")
            f_out = min(f_out, f_in + f_w)
            T = thresholds.get(name)
            out_units = w.shape[0]
            if T is None:
                T = torch.zeros(1)
            T = torch.as_tensor(T, dtype=torch.float64).reshape(-1)
            groups = T.numel()
            t_w = torch.round(T * 2.0 ** (f_in + f_w)).clamp(0, 2 ** 32 - 1)
            t_w = t_w.repeat_interleave(out_units // groups).to(torch.int64).numpy()
            q = QLayer(kind="conv" if is_conv else "linear", name=name, in_shape=in_shape,
                       out_shape=out_shape, f_in=f_in, f_out=f_out,
                       weight=wq.to(torch.int16).numpy(), bias=bq.to(torch.int64).numpy(), f_w=f_w,
                       threshold=t_w, groups=groups)
            if is_conv:
                nd = w.dim() - 2
                q.stride, q.padding = _tup(m.stride, nd), _tup(m.padding, nd)
                q.dilation, q.kernel = _tup(m.dilation, nd), tuple(w.shape[2:])
            else:                   # pivot trees for the binary_tree build (cheap; every export has them)
                a = xq.reshape(-1).abs()
                a = a[a > 0]
                if a.numel() > tree_values:
                    a = a[torch.randperm(a.numel(), generator=torch.Generator().manual_seed(0))[:tree_values]]
                q.tree = calibrate_pivots(a, frac_bits=0, word_bits=16, lo=0, hi=16)
            qnet.layers.append(q)
            f_in = f_out
        elif isinstance(m, nn.ReLU):
            qnet.layers.append(QLayer("relu", name, in_shape, out_shape, f_in, f_in))
        elif isinstance(m, _POOLS):
            nd = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
            k, s = _pool_args(name, m, nd)
            kind = "maxpool" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) else "avgpool"
            qnet.layers.append(QLayer(kind, name, in_shape, out_shape, f_in, f_in, kernel=k,
                                      stride=s))
        elif isinstance(m, nn.Flatten):
            qnet.layers.append(QLayer("flatten", name, in_shape, out_shape, f_in, f_in))
        # Dropout / Identity in eval mode: nothing to run
    if not qnet.mac_layers():
        raise LayerwiseError("export: the model has no Conv or Linear layer to export")
    qnet.num_classes = int(np.prod(qnet.layers[-1].out_shape))
    qnet.calibration = {"samples": int(calib.shape[0]), "f_input": qnet.f_input,
                        "formats": {q.name: {"f_in": q.f_in, "f_out": q.f_out, "f_w": q.f_w}
                                    for q in qnet.layers if q.is_mac}}
    return qnet


# ----------------------------------------------------------------------------- running

@dataclass
class LayerWork:
    """Operations one layer performed, summed over the batch (divide by ``samples``)."""

    name: str
    kind: str
    macs: int = 0              # every MAC of the dense loop
    executed: int = 0          # MACs that ran
    tests: int = 0             # per-MAC compare-and-skip tests (zero or threshold)
    row_tests: int = 0         # per-input (linear) / per-weight (conv) zero tests
    rows: int = 0              # rows of the loop: inputs (linear) / weights (conv) visited
    divisions: int = 0         # runtime ratios (linear, unit build)
    division_steps: int = 0    # shift-loop iterations / tree comparisons
    outputs: int = 0           # output elements written
    inputs: int = 0            # input elements read (relu, pooling)
    saturated: int = 0         # outputs clipped to int16
    multiply_bits: int = 0     # sum over executed MACs of bitlen(|w_q|) (software multiply steps)
    segments: int = 0          # starts of the innermost loop (conv: output rows per weight run)

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def add(self, other: "LayerWork") -> None:
        for k, v in other.__dict__.items():
            if isinstance(v, int):
                setattr(self, k, getattr(self, k) + v)


def wrap32(v: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values."""
    return ((v + 2 ** 31) % 2 ** 32) - 2 ** 31


def requant(acc: np.ndarray, s: int) -> tuple[np.ndarray, int]:
    """int32 accumulators -> int16 at ``s`` fewer fractional bits (round half up, saturate)."""
    if s > 0:
        y = (acc >> s) + ((acc >> (s - 1)) & 1)
    else:
        y = acc
    sat = int(((y > 32767) | (y < -32768)).sum())
    return np.clip(y, -32768, 32767), sat


def bitlen(a: np.ndarray) -> np.ndarray:
    """Number of bits of nonnegative integers below 2**33."""
    a = np.asarray(a, dtype=np.int64)
    n = np.zeros(a.shape, dtype=np.int64)
    for k in range(33):
        n += a >= (1 << k)
    return n


def tree_walk(a: np.ndarray, tree: PivotTree) -> tuple[np.ndarray, np.ndarray]:
    """``(n, comparisons)`` of the pivot tree for integer control terms ``a``."""
    node = np.zeros(a.shape, dtype=np.int64)
    n = np.zeros(a.shape, dtype=np.int64)
    comps = np.zeros(a.shape, dtype=np.int64)
    active = np.ones(a.shape, dtype=bool)
    while active.any():
        p = tree.pivot[node]
        child = np.where(a < (np.int64(1) << p), tree.left[node], tree.right[node])
        comps += active
        leaf = active & (child < 0)
        n = np.where(leaf, -child - 1, n)
        active &= ~leaf
        node = np.where(active, child, node)
    return n, comps


def linear_ratio(t_w: np.ndarray, a: np.ndarray, division: str, tree: PivotTree | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-input ratio ``t(a)`` (clamped to 0xFFFF) and its loop steps; ``a > 0`` (see module)."""
    t_w = np.asarray(t_w, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    if division == "exact":
        t, steps = t_w // a, np.zeros_like(a)
    elif division == "bitshift":
        steps = bitlen(a)
        t = t_w >> steps
    elif division == "binary_tree":
        if tree is None:
            raise LayerwiseError("binary_tree division needs the layer's pivot tree")
        n, steps = tree_walk(a, tree)
        t = t_w >> n
    elif division == "bitmask":
        steps = bitlen(a)
        d = (bitlen(t_w) - 1) - (steps - 1)
        t = np.where((t_w > 0) & (d >= 0), np.int64(1) << np.clip(d, 0, 62), 0)
    else:
        raise LayerwiseError(f"division {division!r}: use one of {', '.join(DIVISIONS)}")
    return np.minimum(t, 0xFFFF), steps


def _conv(q: QLayer, x: np.ndarray, mode: str, work: LayerWork) -> np.ndarray:
    nd = len(q.kernel)
    xt = torch.from_numpy(x.astype(np.float64))
    if nd == 1:
        xt = xt.unsqueeze(2)
    k = (1,) * (2 - nd) + q.kernel
    st, pd, dl = ((1,) * (2 - nd) + q.stride, (0,) * (2 - nd) + q.padding,
                  (1,) * (2 - nd) + q.dilation)
    cols = F.unfold(xt, k, dilation=dl, padding=pd, stride=st)          # [B, CK, P] exact
    valid = F.unfold(torch.ones_like(xt[:1]), k, dilation=dl, padding=pd, stride=st)[0] > 0
    b, ck, npos = cols.shape
    w = q.weight.reshape(q.weight.shape[0], -1).astype(np.int64)        # [O, CK]
    nvalid = valid.sum(1).numpy().astype(np.int64)                      # [CK]
    work.macs += b * int((nvalid[None] * np.ones_like(w)).sum())
    work.rows += b * w.size
    oh = q.out_shape[1] if nd == 2 else 1
    table = q.conv_table().reshape(w.shape) if mode == "unit" else None
    # taps the inner loop runs over: all (dense), nonzero weights (zero_skip), and for UnIT the
    # weights whose ratio t < 0x8000 (t >= 0x8000 skips the whole tap: no int16 |x| exceeds it;
    # a zero weight's t is 0xFFFF)
    live_w = (np.ones_like(w, dtype=bool) if mode == "dense" else
              (w != 0) if mode == "zero_skip" else (table < 0x8000))
    work.segments += b * int(live_w.sum()) * oh
    out = np.empty((b, w.shape[0], npos), dtype=np.int64)
    colsn = cols.numpy().astype(np.int64)
    nz_w = w != 0
    for o in range(w.shape[0]):
        wo = w[o]
        wbits = bitlen(np.abs(wo))
        if mode == "dense":
            keep = None
            work.executed += b * int(nvalid.sum())
            work.multiply_bits += b * int((nvalid * wbits).sum())
        else:
            work.row_tests += b * ck
            work.tests += b * int(nvalid[live_w[o]].sum())
            thr = np.zeros(ck, np.int64) if mode == "zero_skip" else table[o]
            keep = (np.abs(colsn) > thr[None, :, None]) & nz_w[o][None, :, None] & valid.numpy()[None]
            work.executed += int(keep.sum())
            work.multiply_bits += int((keep.sum((0, 2)) * wbits).sum())
        prod = colsn * wo[None, :, None]
        if keep is not None:
            prod = np.where(keep, prod, 0)
        out[:, o] = prod.sum(1) + q.bias[o]
    acc = wrap32(out)
    y, sat = requant(acc, q.shift)
    work.saturated += sat
    work.outputs += y.size
    return y.reshape((b,) + q.out_shape)


def _linear(q: QLayer, x: np.ndarray, mode: str, division: str, work: LayerWork) -> np.ndarray:
    b = x.shape[0]
    x = x.reshape(b, -1).astype(np.int64)
    w = q.weight.astype(np.int64)                      # [O, I]
    o_n, i_n = w.shape
    work.macs += b * o_n * i_n
    work.rows += b * i_n
    if mode != "unit":
        work.segments += b * i_n if mode == "dense" else int((x != 0).sum())
    wbits = bitlen(np.abs(w))                          # [O, I]
    if mode == "dense":
        work.executed += b * o_n * i_n
        work.multiply_bits += b * int(wbits.sum())
        acc = x @ w.T + q.bias[None]
    else:
        nz = x != 0
        work.row_tests += b * i_n
        if mode == "zero_skip":
            work.executed += int(nz.sum()) * o_n
            work.multiply_bits += int((nz.sum(0)[None, :] * wbits).sum())
            acc = x @ w.T + q.bias[None]                # zero inputs add nothing
        else:
            g = q.groups
            per = o_n // g
            t_g = q.threshold[::per][:g]                # [G]
            a = np.abs(x)
            acc = np.tile(q.bias[None], (b, 1)).astype(np.int64)
            aw = np.abs(w)
            for gi in range(g):
                t, steps = linear_ratio(np.full(a.shape, t_g[gi]), np.maximum(a, 1), division, q.tree)
                work.divisions += int(nz.sum())
                work.division_steps += int(steps[nz].sum())
                # t >= 0x8000 skips the group's whole row (no int16 |w| exceeds it), untested
                live = int((nz & (t < 0x8000)).sum())
                work.segments += live
                work.tests += live * per
                sl = slice(gi * per, (gi + 1) * per)
                keep = (aw[sl][None, :, :] > t[:, None, :]) & nz[:, None, :]   # [B, O_g, I]
                work.executed += int(keep.sum())
                work.multiply_bits += int((keep.sum(0) * wbits[sl]).sum())
                acc[:, sl] += (np.where(keep, x[:, None, :] * w[sl][None], 0)).sum(2)
    acc = wrap32(acc)
    y, sat = requant(acc, q.shift)
    work.saturated += sat
    work.outputs += y.size
    return y


def _pool(q: QLayer, x: np.ndarray, work: LayerWork) -> np.ndarray:
    b = x.shape[0]
    nd = len(q.kernel)
    xt = torch.from_numpy(x.astype(np.float64))
    if nd == 1:
        xt = xt.unsqueeze(2)
    k, s = (1,) * (2 - nd) + q.kernel, (1,) * (2 - nd) + q.stride
    if q.kind == "maxpool":
        y = F.max_pool2d(xt, k, s).numpy().astype(np.int64)
    else:
        tot = (F.avg_pool2d(xt, k, s) * float(np.prod(k))).round().numpy().astype(np.int64)
        sh = int(np.log2(np.prod(k)))
        y = requant(tot, sh)[0] if sh else tot
    work.inputs += b * int(np.prod(q.kernel)) * int(np.prod(q.out_shape))
    work.outputs += y.size
    return y.reshape((b,) + q.out_shape)


def run_fixed(qnet: QNet, x_q: np.ndarray, mode: str = "unit", division: str | None = None,
              batch: int = 64) -> tuple[np.ndarray, dict[str, LayerWork]]:
    """int16 logits ``[B, classes]`` of int16 inputs ``x_q`` and each layer's work (summed over B).

    ``mode``: ``dense`` (every MAC), ``zero_skip`` (zero inputs and weights skipped) or ``unit``.
    """
    if mode not in MODES:
        raise LayerwiseError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    division = qnet.division if division is None else division
    if division == "binary_tree" and any(q.tree is None for q in qnet.layers if q.kind == "linear"):
        raise LayerwiseError("this QNet was quantised without pivot trees; quantise it with "
                             "division='binary_tree'")
    x_q = np.asarray(x_q)
    if tuple(x_q.shape[1:]) != tuple(qnet.input_shape):
        raise LayerwiseError(f"inputs of shape {tuple(x_q.shape[1:])} do not match the network's "
                             f"{tuple(qnet.input_shape)}")
    works = {q.name: LayerWork(q.name, q.kind) for q in qnet.layers}
    outs = []
    for i0 in range(0, x_q.shape[0], batch):
        h = x_q[i0:i0 + batch].astype(np.int64)
        for q in qnet.layers:
            wk = works[q.name]
            if q.kind == "conv":
                h = _conv(q, h, mode, wk)
            elif q.kind == "linear":
                h = _linear(q, h, mode, division, wk)
            elif q.kind == "relu":
                wk.inputs += h.size
                wk.outputs += h.size
                h = np.maximum(h, 0)
            elif q.kind in ("maxpool", "avgpool"):
                h = _pool(q, h, wk)
            else:
                h = h.reshape((h.shape[0],) + q.out_shape)
        outs.append(h.reshape(h.shape[0], -1))
    return np.concatenate(outs).astype(np.int16), works
