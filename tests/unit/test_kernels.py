"""Compiled UnIT kernels: exact counts and outputs against a brute-force loop and the reference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerwise.unit.division import METHODS, balanced_tree, division_steps, threshold_ratio
from layerwise.unit.kernels import unit_conv_kernel, unit_linear_kernel
from layerwise.unit.reference import unit_conv, unit_linear


def sparse(shape, seed, zero_frac=0.3, relu=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g)
    if relu:
        t = torch.relu(t)
    t[torch.rand(*shape, generator=g) < zero_frac] = 0.0
    return t


def brute_linear(x, W, b, T_groups):
    """Plain python loops over every MAC (exact division)."""
    x, W = x.numpy(), W.numpy()
    out, inp = W.shape
    G = len(T_groups)
    y = np.zeros((x.shape[0], out)) + (b.numpy() if b is not None else 0)
    c = dict(zero_weight=0, zero_input=0, threshold=0, executed=0)
    for bb in range(x.shape[0]):
        for i in range(inp):
            for j in range(out):
                xv, wv = x[bb, i], W[j, i]
                if wv == 0:
                    c["zero_weight"] += 1
                elif xv == 0:
                    c["zero_input"] += 1
                elif np.abs(wv) > np.float32(T_groups[j // (out // G)]) / np.float32(abs(xv)):
                    y[bb, j] += float(xv) * float(wv)
                    c["executed"] += 1
                else:
                    c["threshold"] += 1
    return torch.tensor(y, dtype=torch.float32), c


def brute_conv2d(x, W, b, T_groups, stride, padding, dilation, groups):
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    W = W.numpy()
    B, _, H, Wd = xp.shape
    O, Cg, KH, KW = W.shape
    OH = (H - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (Wd - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    G = len(T_groups)
    y = np.zeros((B, O, OH, OW)) + (b.numpy()[None, :, None, None] if b is not None else 0)
    c = dict(zero_weight=0, zero_input=0, threshold=0, executed=0)
    for bb in range(B):
        for o in range(O):
            t_o = np.float32(T_groups[o // (O // G)])
            for ci in range(Cg):
                cin = (o // (O // groups)) * Cg + ci
                for kh in range(KH):
                    for kw in range(KW):
                        wv = W[o, ci, kh, kw]
                        for p in range(OH):
                            for q in range(OW):
                                xv = xp[bb, cin, p * stride[0] + kh * dilation[0],
                                        q * stride[1] + kw * dilation[1]]
                                if wv == 0:
                                    c["zero_weight"] += 1
                                elif xv == 0:
                                    c["zero_input"] += 1
                                elif abs(xv) > t_o / np.float32(abs(wv)):
                                    y[bb, o, p, q] += float(xv) * float(wv)
                                    c["executed"] += 1
                                else:
                                    c["threshold"] += 1
    return torch.tensor(y, dtype=torch.float32), c


def check_counts(counts, brute):
    assert counts.zero_weight == brute["zero_weight"]
    assert counts.zero_input == brute["zero_input"]
    assert counts.threshold == brute["threshold"]
    assert counts.executed == brute["executed"]


@pytest.mark.parametrize("T", [[0.0], [0.3], [0.05, 0.4], [0.1, 0.2, 0.3, 10.0]])
def test_linear_matches_brute_force(T):
    x = sparse((3, 12), 0, relu=True)
    W = sparse((8, 12), 1)
    b = torch.randn(8)
    t = torch.tensor(T) if len(T) > 1 else torch.tensor(T[0])
    res = unit_linear_kernel(x, W, b, t)
    y, c = brute_linear(x, W, b, T)
    check_counts(res.counts, c)
    assert res.counts.total == 3 * 12 * 8
    assert torch.allclose(res.output, y, rtol=1e-5, atol=1e-5)


def test_conv2d_matches_brute_force():
    x = sparse((2, 4, 7, 6), 2, relu=True)
    W = sparse((6, 2, 3, 2), 3)
    b = torch.randn(6)
    T = [0.05, 0.3, 0.6]
    res = unit_conv_kernel(x, W, b, torch.tensor(T), stride=2, padding=1, dilation=(1, 2),
                           groups=2)
    y, c = brute_conv2d(x, W, b, T, (2, 2), (1, 1), (1, 2), 2)
    check_counts(res.counts, c)
    assert torch.allclose(res.output, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("division", METHODS)
@pytest.mark.parametrize("T", [torch.tensor(0.2), torch.tensor([0.0, 0.1, 0.5, 2.0])])
def test_linear_matches_reference(division, T):
    x = sparse((2, 3, 10), 4, relu=True)               # extra leading dims are flattened
    W = sparse((8, 10), 5)
    b = torch.randn(8)
    res = unit_linear_kernel(x, W, b, T, division=division)
    y, counts = unit_linear(x, W, b, T, division=division)
    assert res.counts == counts
    assert res.output.shape == y.shape
    assert torch.allclose(res.output, y, rtol=1e-5, atol=1e-5)


CONV_CASES = [
    dict(stride=2, padding=1, dilation=1, groups=2),
    dict(stride=1, padding=(2, 1), dilation=(2, 1), groups=1),
    dict(stride=(1, 2), padding="same", dilation=1, groups=2),
    dict(stride=1, padding=1, dilation=1, groups=2, padding_mode="reflect"),
    dict(stride=1, padding=(1, 2), dilation=1, groups=1, padding_mode="circular"),
]


@pytest.mark.parametrize("division", METHODS)
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_reference(division, case):
    x = sparse((2, 4, 8, 7), 6, relu=True)
    W = sparse((6, 4 // case["groups"], 3, 2), 7)      # non-square kernel
    b = torch.randn(6)
    T = torch.tensor([0.1, 0.4, 0.0])
    res = unit_conv_kernel(x, W, b, T, division=division, **case)
    y, counts = unit_conv(x, W, b, T, division=division, **case)
    assert res.counts == counts
    assert torch.allclose(res.output, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("division", ["exact", "bitshift"])
def test_conv1d_matches_reference(division):
    x = sparse((2, 4, 13), 8, relu=True)
    W = sparse((6, 2, 3), 9)
    T = torch.tensor([0.2, 0.5])
    kw = dict(stride=2, padding=1, dilation=2, groups=2)
    res = unit_conv_kernel(x, W, None, T, division=division, **kw)
    y, counts = unit_conv(x, W, None, T, division=division, **kw)
    assert res.counts == counts
    assert torch.allclose(res.output, y, rtol=1e-5, atol=1e-5)


def test_dense_kernels_equal_torch():
    x = sparse((2, 4, 8, 7), 10, relu=True)
    W = sparse((6, 2, 3, 2), 11)
    b = torch.randn(6)
    res = unit_conv_kernel(x, W, b, 0.5, stride=2, padding=1, groups=2, skip=False)
    assert torch.allclose(res.output, F.conv2d(x, W, b, stride=2, padding=1, groups=2),
                          rtol=1e-5, atol=1e-5)
    assert res.counts.executed == res.counts.total and res.counts.divisions == 0
    xl, Wl = sparse((3, 12), 12), sparse((5, 12), 13)
    rl = unit_linear_kernel(xl, Wl, None, 0.5, skip=False)
    assert torch.allclose(rl.output, F.linear(xl, Wl), rtol=1e-5, atol=1e-5)
    assert rl.counts.total == 3 * 12 * 5 and rl.counts.skipped == 0


def test_zero_threshold_is_dense_with_zero_skips():
    x = sparse((3, 12), 14, relu=True)
    W = sparse((8, 12), 15)
    res = unit_linear_kernel(x, W, None, 0.0)
    assert res.counts.threshold == 0
    assert torch.allclose(res.output, F.linear(x, W), rtol=1e-5, atol=1e-5)


def test_division_steps_are_summed_over_divisions():
    x = sparse((2, 12), 16, relu=True)
    W = sparse((8, 12), 17)
    T = torch.tensor([0.1, 0.3])                       # 2 groups: 2 divisions per nonzero input
    nz = x[x != 0].abs()
    for division, opts in [("bitshift", {}), ("bitshift", {"start": 3}),
                           ("binary_tree", {"tree": balanced_tree(0, 20)}), ("exact", {})]:
        res = unit_linear_kernel(x, W, None, T, division=division, **opts)
        assert res.counts.divisions == 2 * nz.numel()
        assert res.division_steps == 2 * int(division_steps(nz, division, **opts).sum())


def test_threshold_skips_are_the_pairs_under_the_ratio():
    # one input, one group: MACs kept are exactly |w| > T/|x| (ties skipped)
    x = torch.tensor([[2.0]])
    W = torch.tensor([[0.25], [0.5], [-0.75], [0.0]])
    res = unit_linear_kernel(x, W, None, 1.0)          # t = 0.5: keeps only -0.75
    assert (res.counts.executed, res.counts.threshold, res.counts.zero_weight) == (1, 2, 1)
    assert res.output.flatten().tolist() == [0.0, 0.0, -1.5, 0.0]
    assert float(threshold_ratio(1.0, torch.tensor(2.0))) == 0.5
