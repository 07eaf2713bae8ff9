"""Laws UnIT relies on.

1. Each division approximation of ``T / c`` stays within the bound its docstring states
   (layerwise.unit.division), checked against the exact ratio computed here in float64:
   bitshift / binary_tree: ``T/(2c) <= approx < T/c`` for ``2**-f <= c < 2**(word_bits - f)``
   and ``start = 0`` (a tree over ``[0, word_bits]``, balanced or calibrated); with a coarse
   ``start`` (or a tree over ``[start, word_bits]``) the ratio is capped but still never above
   ``T/c``; below the fixed-point resolution it is ``T * 2**f``. bitmask:
   ``T/(2c) < approx < 2T/c`` for normal ``T`` and ``c`` whose exponent difference stays in the
   normal range, and a power of two. Every method is non-decreasing in ``T`` and 0 at ``T = 0``.
2. UnIT at ``T = 0`` is the dense layer (``F.linear`` / ``nn.Conv1d`` / ``nn.Conv2d``), with the
   fast path and without it, for every division method.
3. A larger threshold never executes more MACs (every division method, per-group thresholds).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from layerwise.unit.division import METHODS, balanced_tree, calibrate_pivots, threshold_ratio
from layerwise.unit.reference import unit_conv, unit_linear

LAW = settings(max_examples=50, deadline=None)
SLOW_LAW = settings(max_examples=30, deadline=None)


def f32(v: float) -> float:
    return float(np.float32(v))


thresholds = st.floats(1e-6, 1e6).map(f32)


@st.composite
def fixed_point(draw):
    """(frac_bits, word_bits) with a non-empty bound domain."""
    f = draw(st.integers(0, 12))
    wb = draw(st.integers(f + 1, min(f + 40, 52)))
    return f, wb


@st.composite
def c_in_domain(draw, f: int, wb: int):
    """A float32 c with 2**-f <= c < 2**(wb - f) (log-uniform, edges included)."""
    e = draw(st.floats(-f, wb - f))
    c = f32(2.0 ** e * draw(st.sampled_from([1.0, 1.0 - 2 ** -20, 1.0 + 2 ** -20])))
    c = min(max(c, 2.0 ** -f), np.nextafter(np.float32(2.0 ** (wb - f)), np.float32(0)))
    return float(np.float32(c))


def approx(T, c, method, **opts) -> float:
    return float(threshold_ratio(torch.tensor(T), torch.tensor(c), method, **opts))


# --------------------------------------------------------------------- division bounds

@LAW
@given(fw=fixed_point(), T=thresholds, data=st.data())
def test_bitshift_within_factor_two_below_the_exact_ratio(fw, T, data):
    f, wb = fw
    c = data.draw(c_in_domain(f, wb))
    exact = T / c  # float64
    a = approx(T, c, "bitshift", frac_bits=f, word_bits=wb)
    assert exact / 2 <= a < exact
    assert math.log2(a / T) == int(math.log2(a / T))  # T times a power of two


@LAW
@given(fw=fixed_point(), T=thresholds, seed=st.integers(0, 2**31 - 1), calibrated=st.booleans(),
       data=st.data())
def test_binary_tree_within_factor_two_below_the_exact_ratio(fw, T, seed, calibrated, data):
    f, wb = fw
    c = data.draw(c_in_domain(f, wb))
    if calibrated:  # any tree over [0, word_bits] finds the same exponent
        g = torch.Generator().manual_seed(seed)
        sample = torch.exp(torch.randn(200, generator=g) * 4)
        tree = calibrate_pivots(sample, frac_bits=f, word_bits=wb)
    else:
        tree = balanced_tree(0, wb)
    exact = T / c
    a = approx(T, c, "binary_tree", frac_bits=f, word_bits=wb, tree=tree)
    assert exact / 2 <= a < exact


@LAW
@given(fw=fixed_point(), T=thresholds, data=st.data())
def test_coarse_start_caps_the_ratio_and_never_over_estimates(fw, T, data):
    f, wb = fw
    start = data.draw(st.integers(0, wb))
    # anything from far below the resolution up to the top of the word
    c = f32(2.0 ** data.draw(st.floats(-f - 20, wb - f)))
    assume(0 < c < 2.0 ** (wb - f))
    exact = T / c
    a = approx(T, c, "bitshift", frac_bits=f, word_bits=wb, start=start)
    assert a < exact
    assert a <= T * 2.0 ** (f - start)  # the cap
    tree = balanced_tree(start, wb) if start < wb else None
    if tree is not None:  # a tree over [start, word_bits] is the same approximation
        assert approx(T, c, "binary_tree", frac_bits=f, word_bits=wb, tree=tree) == a


@LAW
@given(fw=fixed_point(), T=thresholds, data=st.data())
def test_below_the_fixed_point_resolution_the_ratio_is_T_times_2_to_the_f(fw, T, data):
    f, wb = fw
    c = f32(2.0 ** data.draw(st.floats(-f - 30, -f)) * 0.999)
    assume(0 < c < 2.0 ** -f)
    a = approx(T, c, "bitshift", frac_bits=f, word_bits=wb)
    assert a == f32(T * 2.0 ** f)
    assert a < T / c


normal32 = st.floats(2.0 ** -120, 2.0 ** 120).map(f32)


@LAW
@given(T=normal32, c=normal32)
def test_bitmask_within_factor_two_of_the_exact_ratio(T, c):
    exact = T / c
    assume(2.0 ** -125 <= exact <= 2.0 ** 126)  # exponent difference inside the normal range
    a = approx(T, c, "bitmask")
    assert exact / 2 < a < 2 * exact
    assert a == 2.0 ** round(math.log2(a))  # a power of two, from the exponent fields alone


@LAW
@given(method=st.sampled_from(METHODS), t1=thresholds, t2=thresholds,
       c=st.floats(1e-6, 1e6).map(f32))
def test_every_ratio_is_non_decreasing_in_T_and_zero_at_zero(method, t1, t2, c):
    lo, hi = sorted((t1, t2))
    assert approx(lo, c, method) <= approx(hi, c, method)
    assert approx(0.0, c, method) == 0.0


# ------------------------------------------------------------------ T = 0 is the dense layer

@SLOW_LAW
@given(lead=st.lists(st.integers(1, 3), min_size=1, max_size=2), in_f=st.integers(1, 12),
       out_f=st.sampled_from([1, 2, 4, 6]), groups=st.sampled_from([0, 1, 2]), bias=st.booleans(),
       zeros=st.floats(0.0, 0.5), method=st.sampled_from(METHODS), fast=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_linear_at_zero_threshold_is_dense(lead, in_f, out_f, groups, bias, zeros, method, fast, seed):
    assume(groups == 0 or out_f % groups == 0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, in_f, generator=g)
    x = torch.where(torch.rand(x.shape, generator=g) < zeros, 0.0, x)
    w = torch.randn(out_f, in_f, generator=g)
    b = torch.randn(out_f, generator=g) if bias else None
    t = torch.tensor(0.0) if groups == 0 else torch.zeros(groups)
    y, counts = unit_linear(x, w, b, t, division=method, fast_path=fast)
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    assert counts.threshold == 0
    n = int(np.prod(lead))
    assert counts.total == n * in_f * out_f
    assert counts.executed == int((x != 0).sum()) * out_f  # all weights nonzero (randn)


@st.composite
def conv_case(draw):
    nd = draw(st.sampled_from([1, 2]))
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(nd))
    if draw(st.booleans()) and stride == (1,) * nd:
        padding = "same"
    size = tuple(draw(st.integers(3, 7)) for _ in range(nd))
    # input must cover the dilated kernel; reflect needs padding < size
    for s, kk, d in zip(size, k, dilation):
        assume(s + 2 * 2 >= d * (kk - 1) + 1)
    assume(not (mode == "reflect" and padding != "same" and any(p >= s for p, s in zip(padding, size))))
    return dict(nd=nd, groups=groups, c_in=c_in, c_out=c_out, k=k, stride=stride, dilation=dilation,
                padding=padding, mode=mode, size=size, batch=draw(st.integers(1, 2)), bias=draw(st.booleans()))


@SLOW_LAW
@given(case=conv_case(), method=st.sampled_from(METHODS), fast=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_conv_at_zero_threshold_is_dense(case, method, fast, seed):
    torch.manual_seed(seed)
    cls = nn.Conv1d if case["nd"] == 1 else nn.Conv2d
    try:
        conv = cls(case["c_in"], case["c_out"], case["k"], stride=case["stride"], padding=case["padding"],
                   dilation=case["dilation"], groups=case["groups"], bias=case["bias"],
                   padding_mode=case["mode"])
        x = torch.randn(case["batch"], case["c_in"], *case["size"])
        with torch.no_grad():
            dense = conv(x)
    except (RuntimeError, ValueError):
        assume(False)  # a shape torch itself rejects (kernel larger than the padded input, ...)
    y, counts = unit_conv(x, conv.weight.detach(), None if conv.bias is None else conv.bias.detach(),
                          torch.tensor(0.0), stride=case["stride"], padding=case["padding"],
                          dilation=case["dilation"], groups=case["groups"], padding_mode=case["mode"],
                          division=method, fast_path=fast)
    torch.testing.assert_close(y, dense, rtol=1e-5, atol=1e-5)
    assert counts.threshold == 0
    assert counts.executed == counts.total - counts.zero_weight - counts.zero_input


# ------------------------------------------------------------ threshold monotonicity

def _sparse(shape, p, g):
    x = torch.randn(*shape, generator=g)
    return torch.where(torch.rand(shape, generator=g) < p, 0.0, x)


@SLOW_LAW
@given(method=st.sampled_from(METHODS), seed=st.integers(0, 2**31 - 1), groups=st.sampled_from([0, 1, 2]),
       t_lo=st.lists(st.floats(0.0, 3.0), min_size=2, max_size=2),
       bump=st.lists(st.floats(0.0, 3.0), min_size=2, max_size=2))
def test_larger_threshold_never_executes_more_macs(method, seed, groups, t_lo, bump):
    g = torch.Generator().manual_seed(seed)
    if groups == 0:
        lo, hi = torch.tensor(t_lo[0]), torch.tensor(t_lo[0] + bump[0])
    else:
        lo = torch.tensor(t_lo[:groups])
        hi = lo + torch.tensor(bump[:groups])  # elementwise >= lo
    x, w = _sparse((3, 7), 0.2, g), _sparse((4, 7), 0.2, g)
    e_lo = unit_linear(x, w, None, lo, division=method, fast_path=False)[1]
    e_hi = unit_linear(x, w, None, hi, division=method, fast_path=False)[1]
    assert e_hi.executed <= e_lo.executed
    assert e_hi.threshold >= e_lo.threshold
    assert (e_hi.zero_weight, e_hi.zero_input, e_hi.total) == (e_lo.zero_weight, e_lo.zero_input, e_lo.total)
    xc, wc = _sparse((2, 2, 5, 5), 0.2, g), _sparse((4, 2, 3, 3), 0.2, g)
    c_lo = unit_conv(xc, wc, None, lo, padding=1, division=method, fast_path=False)[1]
    c_hi = unit_conv(xc, wc, None, hi, padding=1, division=method, fast_path=False)[1]
    assert c_hi.executed <= c_lo.executed
    assert c_hi.threshold >= c_lo.threshold
    # the fast path at T = 0 counts the same as the general path
    if not bool(lo.any()):
        assert unit_conv(xc, wc, None, lo, padding=1, division=method)[1] == c_lo
