"""int16 fixed-point UnIT layers: quantisation checks, F_MUL, exact integer decisions, agreement
with the float path on dequantised tensors."""

import numpy as np
import pytest
import torch

from layerwise.errors import LayerwiseError
from layerwise.unit.division import balanced_tree
from layerwise.unit.fixed_point import (
    QFormat, exact_integer_keep, fixed_conv2d, fixed_linear, quantize_threshold)
from layerwise.unit.kernels import unit_conv_kernel, unit_linear_kernel
from layerwise.unit.reference import unit_conv, unit_linear

Q = QFormat()


def sparse(shape, seed, zero_frac=0.3, relu=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g) * scale
    if relu:
        t = torch.relu(t)
    t[torch.rand(*shape, generator=g) < zero_frac] = 0.0
    return t


def deq(t):
    return Q.dequantize(Q.quantize(t))


def test_qformat_roundtrip_and_name():
    assert str(Q) == "Q10.5" and Q.max_value == 1023.96875 and Q.min_value == -1024.0
    v = torch.tensor([0.0, 1.0, -0.5, 0.03125, 0.046875, 1023.96875, -1024.0])
    q = Q.quantize(v)
    assert q.dtype == torch.int16
    assert q.tolist() == [0, 32, -16, 1, 2, 32767, -32768]   # 1.5 ulp rounds to even (2)
    assert Q.dequantize(q).tolist() == [0.0, 1.0, -0.5, 0.03125, 0.0625, 1023.96875, -1024.0]


def test_overflow_raises_with_layer_range_and_fewer_bits():
    with pytest.raises(LayerwiseError) as e:
        Q.quantize(torch.tensor([-3.0, 2000.0]), "conv1 weight")
    msg = str(e.value)
    assert "conv1 weight" in msg and "[-3, 2000]" in msg and "Q10.5" in msg
    assert "fewer fractional bits" in msg and "frac_bits=4" in msg
    with pytest.raises(LayerwiseError, match="fc input"):
        fixed_linear(torch.full((1, 3), 5000.0), torch.ones(2, 3), None, 0.0, name="fc")


def test_fmul_is_sonic_rounding():
    assert Q.mul(32, 32) == 32                  # 1.0 * 1.0
    assert Q.mul(1, 16) == 1                    # (16 + 16) >> 5: half rounds up
    assert Q.mul(1, 15) == 0
    assert Q.mul(-1, 16) == 0                   # (-16 + 16) >> 5
    assert Q.mul(-1, 17) == -1                  # arithmetic shift floors
    assert QFormat(0).mul(3, 4) == 12


def test_accumulator_overflow_is_reported():
    x = torch.full((1, 100), 1000.0)
    W = torch.full((2, 100), 1000.0)            # 100 products of 1e6: 3.2e9 > int32 in Q10.5
    with pytest.raises(LayerwiseError, match="int32 accumulator overflowed.*fewer fractional"):
        fixed_linear(x, W, None, 0.0, name="fc")
    with pytest.raises(LayerwiseError, match="fc output.*overflow Q10.5"):
        fixed_linear(torch.full((1, 4), 30.0), torch.full((1, 4), 30.0), None, 0.0, name="fc")
    with pytest.raises(LayerwiseError, match="int32 accumulator"):
        fixed_conv2d(torch.full((1, 100, 1, 1), 1000.0), torch.full((1, 100, 1, 1), 1000.0),
                     None, 0.0, name="conv")


@pytest.mark.parametrize("groups_T", [[0.3], [0.0, 0.2, 0.5, 1.5]])
def test_exact_integer_division_is_eq1_on_integers(groups_T):
    # keep iff |x_q| > (T_q << f) // |w_q| ... here Linear: keep iff |w_q| > T_w // |x_q|
    # must equal |x_q * w_q| > T_w exactly, for every MAC
    x = sparse((4, 16), 0, relu=True, scale=3.0)
    W = sparse((8, 16), 1, scale=2.0)
    T = torch.tensor(groups_T) if len(groups_T) > 1 else torch.tensor(groups_T[0])
    res = fixed_linear(x, W, None, T)
    xq, wq = Q.quantize(x).numpy(), Q.quantize(W).numpy()
    t_w, g = quantize_threshold(T, 8, Q)
    assert np.array_equal(t_w[::8 // g], np.round(np.atleast_1d(groups_T) * 32).astype(int) << 5)
    keep = exact_integer_keep(xq[:, :, None], wq.T[None, :, :], t_w[None, None, :])
    assert res.counts.executed == int(keep.sum())
    assert res.counts.threshold == int(((xq[:, :, None] != 0) & (wq.T[None] != 0)).sum()
                                       - keep.sum())


def test_exact_integer_division_conv():
    x = sparse((2, 2, 6, 6), 2, relu=True, scale=4.0)
    W = sparse((3, 2, 3, 3), 3)
    res = fixed_conv2d(x, W, None, 0.4)
    xq = Q.quantize(x).numpy().astype(np.int64)
    wq = Q.quantize(W).numpy().astype(np.int64)
    t_w = int(round(0.4 * 32)) << 5
    kept = 0
    for o in range(3):
        for c in range(2):
            for kh in range(3):
                for kw in range(3):
                    xs = xq[:, c, kh:kh + 4, kw:kw + 4]
                    kept += int(exact_integer_keep(xs, wq[o, c, kh, kw], t_w).sum())
    assert res.counts.executed == kept


DIVISIONS = [("exact", {}, {}),
             ("bitshift", {}, {}),
             ("bitshift", {"start": 3}, {"start": 3}),
             ("binary_tree", {"tree": balanced_tree(0, 16)}, {"tree": balanced_tree(0, 16)})]


@pytest.mark.parametrize("division,fixed_opts,float_opts", DIVISIONS)
def test_linear_counts_match_float_reference_on_dequantised(division, fixed_opts, float_opts):
    x = sparse((3, 20), 4, relu=True, scale=2.0)
    W = sparse((6, 20), 5)
    b = torch.randn(6)
    T = torch.tensor([0.1, 0.3, 0.7])
    res = fixed_linear(x, W, b, T, division=division, **fixed_opts)
    xd, Wd, bd, Td = deq(x), deq(W), deq(b), deq(T)
    y_ref, counts = unit_linear(xd, Wd, bd, Td, division=division, division_opts=float_opts)
    assert res.counts == counts                 # exactly: |x_q|*|w_q| < 2**24 here
    # output within the rounding of F_MUL: at most half an ulp per executed product
    ulp = 1 / Q.scale
    assert (Q.dequantize(res.output) - y_ref).abs().max() <= 20 * ulp / 2 + 1e-5


@pytest.mark.parametrize("division,fixed_opts,float_opts", DIVISIONS)
def test_conv_counts_match_float_reference_on_dequantised(division, fixed_opts, float_opts):
    x = sparse((2, 4, 7, 6), 6, relu=True, scale=2.0)
    W = sparse((4, 2, 3, 2), 7)
    b = torch.randn(4)
    T = torch.tensor([0.2, 0.5])
    kw = dict(stride=2, padding=1, dilation=(2, 1), groups=2)
    res = fixed_conv2d(x, W, b, T, division=division, **kw, **fixed_opts)
    y_ref, counts = unit_conv(deq(x), deq(W), deq(b), deq(T), division=division,
                              division_opts=float_opts, **kw)
    assert res.counts == counts
    assert (Q.dequantize(res.output) - y_ref).abs().max() <= 2 * 3 * 2 * (0.5 / Q.scale) + 1e-5
    # the compiled float kernel decides the same way
    assert unit_conv_kernel(deq(x), deq(W), deq(b), deq(T), division=division, **kw,
                            **float_opts).counts == counts


def test_conv1d_and_reflect_padding():
    x = sparse((2, 2, 9), 8, relu=True)
    W = sparse((2, 2, 3), 9)
    res = fixed_conv2d(x, W, None, 0.2, padding=1, padding_mode="reflect")
    _, counts = unit_conv(deq(x), deq(W), None, deq(torch.tensor(0.2)), padding=1,
                          padding_mode="reflect")
    assert res.output.shape == (2, 2, 9) and res.counts == counts


def test_dense_fixed_kernel_and_outputs_near_float():
    x = sparse((3, 20), 10, relu=True)
    W = sparse((5, 20), 11)
    res = fixed_linear(x, W, None, 0.0, skip=False)
    y = unit_linear_kernel(deq(x), deq(W), None, 0.0, skip=False).output
    assert (Q.dequantize(res.output) - y).abs().max() <= 20 * 0.5 / Q.scale + 1e-5
    assert res.counts.executed == res.counts.total == 300


def test_small_threshold_needs_finer_threshold_bits():
    x = sparse((2, 20), 12, relu=True, scale=0.3)
    W = sparse((5, 20), 13, scale=0.1)
    coarse = fixed_linear(x, W, None, 0.015)     # 0.015 * 32 rounds to 0: nothing skipped
    assert coarse.counts.threshold == 0
    fine = fixed_linear(x, W, None, 0.015, threshold_frac_bits=10)
    assert fine.counts.threshold > 0
    _, counts = unit_linear(deq(x), deq(W), None, torch.tensor(round(0.015 * 1024) / 1024))
    assert fine.counts == counts


def test_int16_inputs_are_taken_as_quantised_and_bitmask_is_refused():
    x = sparse((2, 8), 14, relu=True)
    W = sparse((3, 8), 15)
    a = fixed_linear(x, W, None, 0.2)
    b = fixed_linear(Q.quantize(x), Q.quantize(W), None, 0.2)
    assert torch.equal(a.output, b.output) and a.counts == b.counts
    with pytest.raises(LayerwiseError, match="IEEE-754"):
        fixed_linear(x, W, None, 0.2, division="bitmask")


def test_float_exact_division_agrees_below_2_pow_24_and_can_flip_above():
    # exhaustive over small integers: the float32 reference decides as the integers do
    z = np.arange(1, 41)[:, None, None]
    c = np.arange(1, 41)[None, :, None]
    t_w = np.arange(0, 1700)[None, None, :]
    keep_int = exact_integer_keep(z, c, t_w)
    ratio = (torch.tensor(t_w / 1024.0, dtype=torch.float32)
             / torch.tensor(c / 32.0, dtype=torch.float32))        # T / |c| in float32
    keep_float = torch.tensor(z / 32.0, dtype=torch.float32) > ratio
    assert np.array_equal(keep_int, keep_float.numpy())
    # above 2**24 a float32 tie can flip a decision (T itself exact in float32 here):
    # T_w = z*c - 1 keeps on the integers, while fl(T/|c|) rounds to exactly |z| and the float
    # path skips the tie
    zq, cq, tw = 1343, 20555, 27605364
    assert zq * cq == tw + 1 and zq * cq >= 2 ** 24
    assert exact_integer_keep(zq, cq, tw)
    t = torch.tensor(tw / 1024.0, dtype=torch.float32)
    assert float(t) * 1024 == tw
    r = t / torch.tensor(cq / 32.0, dtype=torch.float32)
    assert float(r) == zq / 32.0
    assert not bool(torch.tensor(zq / 32.0, dtype=torch.float32) > r)
