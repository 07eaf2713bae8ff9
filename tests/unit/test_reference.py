"""UnIT reference semantics against brute-force loops over every MAC (paper eq. 1-3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.errors import LayerwiseError
from layerwise.unit import MacCounts, unit_conv, unit_linear

_NP_PAD = {"zeros": "constant", "reflect": "reflect", "circular": "wrap", "replicate": "edge"}


def _t_out(threshold, out):
    t = np.asarray(threshold, dtype=np.float32).reshape(-1)
    return np.repeat(t, out // t.size) if t.size > 1 else np.full(out, t[0], np.float32)


def _exact(t, c):
    return np.float32(t) / np.float32(c)


def brute_linear(x, w, b, threshold, ratio_fn=_exact):
    """Every MAC of a Linear, one at a time, with the decision of eq. (2) in float32."""
    x = x.reshape(-1, x.shape[-1]).numpy()
    w = w.numpy()
    n, n_in = x.shape
    n_out = w.shape[0]
    t_out = _t_out(threshold, n_out)
    groups = np.asarray(threshold).size
    y = np.zeros((n, n_out), np.float64)
    c = dict(total=0, zero_weight=0, zero_input=0, threshold=0, compares=0, divisions=0,
             samples=n)
    for r in range(n):
        for i in range(n_in):
            xv = x[r, i]
            if xv == 0:
                c["compares"] += 1  # one zero test skips the whole row
            else:
                c["compares"] += n_out
                c["divisions"] += groups
            for j in range(n_out):
                wv = w[j, i]
                c["total"] += 1
                if wv == 0:
                    c["zero_weight"] += 1
                elif xv == 0:
                    c["zero_input"] += 1
                elif abs(wv) > ratio_fn(t_out[j], abs(xv)):
                    y[r, j] += float(xv) * float(wv)
                else:
                    c["threshold"] += 1
    if b is not None:
        y += b.numpy()
    return y, MacCounts(**c)


def brute_conv2d(x, w, b, threshold, stride, padding, dilation, groups, padding_mode,
                 ratio_fn=_exact):
    """Every MAC of a Conv2d, one at a time, with the decision of eq. (3) in float32."""
    x, w = x.numpy(), w.numpy()
    bsz, c_in, _, _ = x.shape
    n_out, cg, kh, kw = w.shape
    og = n_out // groups
    p0, p1 = padding
    xp = np.pad(x, ((0, 0), (0, 0), (p0, p0), (p1, p1)), mode=_NP_PAD[padding_mode])
    hp, wp = xp.shape[2:]
    oh = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    t_out = _t_out(threshold, n_out)
    y = np.zeros((bsz, n_out, oh, ow), np.float64)
    c = dict(total=0, zero_weight=0, zero_input=0, threshold=0, compares=0, divisions=0,
             samples=bsz)
    for bb in range(bsz):
        for o in range(n_out):
            grp = o // og
            for ci in range(cg):
                for a in range(kh):
                    for e in range(kw):
                        wv = w[o, ci, a, e]
                        if wv == 0:
                            c["compares"] += 1  # one zero test skips the weight's positions
                        else:
                            c["compares"] += oh * ow
                            c["divisions"] += 1
                            t = ratio_fn(t_out[o], abs(wv))
                        for i in range(oh):
                            for j in range(ow):
                                xv = xp[bb, grp * cg + ci, i * stride[0] + a * dilation[0],
                                        j * stride[1] + e * dilation[1]]
                                c["total"] += 1
                                if wv == 0:
                                    c["zero_weight"] += 1
                                elif xv == 0:
                                    c["zero_input"] += 1
                                elif abs(xv) > t:
                                    y[bb, o, i, j] += float(xv) * float(wv)
                                else:
                                    c["threshold"] += 1
    if b is not None:
        y += b.numpy()[None, :, None, None]
    return y, MacCounts(**c)


def _sparse(shape, frac_zero, gen):
    v = torch.randn(shape, generator=gen)
    return v * (torch.rand(shape, generator=gen) >= frac_zero)


def _median_product(x, w):
    p = (x.reshape(-1, 1).abs() * w.reshape(1, -1).abs()).reshape(-1)
    return float(p[p > 0].median())


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 3.0])
def test_linear_matches_brute_force(groups, scale):
    gen = torch.Generator().manual_seed(1)
    x = _sparse((2, 3, 7), 0.3, gen)  # leading batch shape [2, 3]
    w = _sparse((6, 7), 0.2, gen)
    b = torch.randn(6, generator=gen)
    t = scale * _median_product(x, w)
    threshold = torch.tensor([t, 2 * t][:groups] if groups > 1 else t, dtype=torch.float32)
    y, counts = unit_linear(x, w, b, threshold, fast_path=False)
    y_ref, c_ref = brute_linear(x, w, b, threshold)
    assert y.shape == (2, 3, 6)
    np.testing.assert_allclose(y.reshape(-1, 6).numpy(), y_ref, rtol=1e-5, atol=1e-5)
    assert counts == c_ref
    if scale > 0:
        assert counts.threshold > 0 and counts.executed > 0


CONV_CASES = [
    # (kernel, stride, padding, dilation, groups, padding_mode)
    ((3, 2), (2, 2), (1, 1), (2, 2), 2, "zeros"),
    ((3, 2), (2, 1), (1, 1), (2, 1), 2, "reflect"),
    ((3, 2), (1, 2), (1, 1), (1, 2), 1, "circular"),
    ((3, 3), (1, 1), (1, 1), (1, 1), 1, "replicate"),
]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups,padding_mode", CONV_CASES)
@pytest.mark.parametrize("scale", [0.0, 0.7, 2.0])
def test_conv2d_matches_brute_force(kernel, stride, padding, dilation, groups, padding_mode,
                                    scale):
    gen = torch.Generator().manual_seed(2)
    x = _sparse((2, 4, 7, 6), 0.3, gen)
    w = _sparse((4, 4 // groups, *kernel), 0.2, gen)
    b = torch.randn(4, generator=gen)
    t = scale * _median_product(x, w)
    y, counts = unit_conv(x, w, b, torch.tensor(t), stride=stride, padding=padding,
                          dilation=dilation, groups=groups, padding_mode=padding_mode,
                          fast_path=False)
    y_ref, c_ref = brute_conv2d(x, w, b, t, stride, padding, dilation, groups, padding_mode)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-5)
    assert counts == c_ref
    if padding_mode == "zeros":  # padded positions are zero-input skips
        assert counts.zero_input > int((x == 0).sum())
    if scale > 0:
        assert counts.threshold > 0 and counts.executed > 0


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
def test_conv1d_matches_brute_force(padding_mode):
    gen = torch.Generator().manual_seed(3)
    x = _sparse((2, 4, 11), 0.3, gen)
    w = _sparse((6, 2, 3), 0.2, gen)
    b = torch.randn(6, generator=gen)
    t = torch.tensor([0.3, 1.2], dtype=torch.float32)  # two groups of 3 output channels
    y, counts = unit_conv(x, w, b, t, stride=2, padding=1, dilation=2, groups=2,
                          padding_mode=padding_mode, fast_path=False)
    y_ref, c_ref = brute_conv2d(x[:, :, None], w[:, :, None], b, t, (1, 2), (0, 1), (1, 2), 2,
                                padding_mode)
    assert y.shape == (2, 6, y_ref.shape[-1])
    np.testing.assert_allclose(y.numpy(), y_ref[:, :, 0], rtol=1e-5, atol=1e-5)
    assert counts == c_ref


def test_zero_threshold_is_dense_output():
    gen = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(5, 9, generator=gen), torch.randn(3, 9, generator=gen), torch.randn(3)
    for fast in (True, False):
        y, c = unit_linear(x, w, b, torch.tensor(0.0), fast_path=fast)
        torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        assert c.executed == c.total == 5 * 9 * 3
    x, w = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(4, 3, 3, 2, generator=gen)
    dense = F.conv2d(x, w, b[:1].expand(4), stride=2, padding=1, dilation=2)
    slow = unit_conv(x, w, b[:1].expand(4), 0.0, stride=2, padding=1, dilation=2, fast_path=False)
    fast = unit_conv(x, w, b[:1].expand(4), 0.0, stride=2, padding=1, dilation=2)
    torch.testing.assert_close(slow[0], dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast[0], dense, rtol=1e-5, atol=1e-5)
    assert slow[1] == fast[1]
    assert slow[1].threshold == 0 and slow[1].zero_input > 0  # only padding skipped


def test_ties_are_skipped():
    # |x * w| == T exactly in float32 (powers of two): eq. (1) prunes <= T.
    x = torch.tensor([[0.5, 0.25]])
    w = torch.tensor([[0.25, 0.5], [0.5, 1.0]])  # products: row0 0.125, 0.125; row1 0.25, 0.25
    y, c = unit_linear(x, w, None, torch.tensor(0.125), fast_path=False)
    assert c.threshold == 2 and c.executed == 2
    torch.testing.assert_close(y, torch.tensor([[0.0, 0.5]]))
    xc = torch.tensor([[[[0.5, 2.0, 0.25]]]])           # [1, 1, 1, 3]
    wc = torch.tensor([[[[0.25]]]])                      # products 0.125, 0.5, 0.0625
    y, c = unit_conv(xc, wc, None, torch.tensor(0.125), fast_path=False)
    assert c.threshold == 2 and c.executed == 1
    torch.testing.assert_close(y, torch.tensor([[[[0.0, 0.5, 0.0]]]]))


def test_zero_input_and_zero_weight_attribution():
    x = torch.tensor([[0.0, 1.0, 2.0]])
    w = torch.tensor([[1.0, 0.0, 3.0], [2.0, 5.0, 0.0]])
    y, c = unit_linear(x, w, torch.tensor([1.0, -1.0]), torch.tensor(0.5), fast_path=False)
    # input 0 is zero: its 2 MACs are zero-input skips (attributed after zero weights: none here)
    # zero weights W[0,1], W[1,2] are zero-weight skips; the rest run (|x*w| = 5, 6 > 0.5)
    assert (c.total, c.zero_weight, c.zero_input, c.threshold, c.executed) == (6, 2, 2, 0, 2)
    assert c.compares == 1 + 2 * 2 and c.divisions == 2
    torch.testing.assert_close(y, torch.tensor([[1.0 + 6.0, -1.0 + 5.0]]))
    # a MAC with BOTH operands zero is a zero-weight skip
    _, c = unit_linear(torch.tensor([[0.0]]), torch.tensor([[0.0]]), None, 0.0, fast_path=False)
    assert (c.zero_weight, c.zero_input) == (1, 0)


def test_group_thresholds_decide_per_group():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 8, generator=gen)
    w = torch.randn(4, 8, generator=gen)
    b = torch.arange(4.0)
    y, c = unit_linear(x, w, b, torch.tensor([0.0, 1e9]), fast_path=False)
    dense = F.linear(x, w, b)
    torch.testing.assert_close(y[:, :2], dense[:, :2])          # group 0: T = 0, dense
    torch.testing.assert_close(y[:, 2:], b[2:].expand(4, 2))    # group 1: everything skipped
    assert c.threshold == 4 * 8 * 2 and c.executed == 4 * 8 * 2
    xc = torch.randn(2, 2, 5, 5, generator=gen)
    wc = torch.randn(4, 2, 3, 3, generator=gen)
    y, c = unit_conv(xc, wc, None, torch.tensor([1e9, 0.0]), padding=1, fast_path=False)
    dense = F.conv2d(xc, wc, padding=1)
    assert torch.all(y[:, :2] == 0)
    torch.testing.assert_close(y[:, 2:], dense[:, 2:], rtol=1e-5, atol=1e-5)


def test_chunking_gives_same_result():
    gen = torch.Generator().manual_seed(6)
    x, w = _sparse((5, 10), 0.2, gen), _sparse((7, 10), 0.2, gen)
    t = torch.tensor(_median_product(x, w))
    full = unit_linear(x, w, None, t, fast_path=False)
    tiny = unit_linear(x, w, None, t, fast_path=False, chunk_elems=3)
    torch.testing.assert_close(full[0], tiny[0], rtol=1e-6, atol=1e-6)
    assert full[1] == tiny[1]
    xc, wc = _sparse((3, 4, 6, 6), 0.2, gen), _sparse((6, 2, 3, 3), 0.2, gen)
    t = torch.tensor(_median_product(xc, wc))
    kw = dict(stride=1, padding=1, groups=2, fast_path=False)
    full = unit_conv(xc, wc, None, t, **kw)
    for chunk in (5, 50, 500):
        part = unit_conv(xc, wc, None, t, chunk_elems=chunk, **kw)
        torch.testing.assert_close(full[0], part[0], rtol=1e-6, atol=1e-6)
        assert full[1] == part[1]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), t1=st.floats(0, 4), t2=st.floats(0, 4))
def test_executed_never_increases_with_threshold(seed, t1, t2):
    lo, hi = sorted((t1, t2))
    gen = torch.Generator().manual_seed(seed)
    x, w = _sparse((3, 6), 0.2, gen), _sparse((5, 6), 0.2, gen)
    e_lo = unit_linear(x, w, None, torch.tensor(lo), fast_path=False)[1]
    e_hi = unit_linear(x, w, None, torch.tensor(hi), fast_path=False)[1]
    assert e_hi.executed <= e_lo.executed
    xc, wc = _sparse((1, 2, 5, 5), 0.2, gen), _sparse((3, 2, 3, 3), 0.2, gen)
    c_lo = unit_conv(xc, wc, None, torch.tensor(lo), padding=1, fast_path=False)[1]
    c_hi = unit_conv(xc, wc, None, torch.tensor(hi), padding=1, fast_path=False)[1]
    assert c_hi.executed <= c_lo.executed


def test_bad_thresholds_are_rejected():
    x, w = torch.randn(2, 4), torch.randn(6, 4)
    with pytest.raises(LayerwiseError, match=">= 0"):
        unit_linear(x, w, None, torch.tensor(-1.0))
    with pytest.raises(LayerwiseError, match="do not divide"):
        unit_linear(x, w, None, torch.tensor([1.0, 1.0, 1.0, 1.0]))


def test_counts_add_and_json():
    a = MacCounts(total=10, zero_weight=1, zero_input=2, threshold=3, compares=7, divisions=2,
                  samples=1)
    s = sum([a, a])
    assert s.total == 20 and s.executed == 8 and s.skipped == 12 and s.nonzero_pairs == 14
    j = s.to_json()
    assert j["executed"] == 8 and MacCounts.from_json(j) == s


@pytest.mark.parametrize("method,opts", [
    ("bitshift", {}), ("bitshift", {"frac_bits": 3, "start": 2}), ("binary_tree", {}),
    ("bitmask", {}), ("exact", {}),
])
def test_division_methods_match_brute_force(method, opts):
    from layerwise.unit.division import threshold_ratio

    def ratio_fn(t, c):  # the approximation applied to one MAC at a time
        return float(threshold_ratio(torch.tensor(float(t)), torch.tensor(float(c)), method,
                                     **opts))

    gen = torch.Generator().manual_seed(7)
    x, w, b = _sparse((2, 6), 0.2, gen), _sparse((4, 6), 0.2, gen), torch.randn(4, generator=gen)
    t = torch.tensor([0.3, 0.9])
    y, counts = unit_linear(x, w, b, t, division=method, division_opts=opts, fast_path=False)
    y_ref, c_ref = brute_linear(x, w, b, t, ratio_fn)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-5)
    assert counts == c_ref
    xc, wc = _sparse((1, 2, 5, 5), 0.2, gen), _sparse((4, 2, 3, 2), 0.2, gen)
    y, counts = unit_conv(xc, wc, None, t, padding=1, division=method, division_opts=opts,
                          fast_path=False)
    y_ref, c_ref = brute_conv2d(xc, wc, None, t, (1, 1), (1, 1), (1, 1), 1, "zeros", ratio_fn)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=1e-5)
    assert counts == c_ref
    assert counts.threshold > 0
