"""Division approximations of T/|c| (UnIT section 2.2): bounds, scalar == vectorised, tree ==
shift."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.errors import LayerwiseError
from layerwise.unit.division import (
    METHODS, balanced_tree, bitshift_exponent, calibrate_pivots, decision_agreement,
    division_steps, scalar_threshold_ratio, threshold_ratio, tree_exponent)

F = 5  # default frac_bits (Q10.5)
SETTINGS = settings(max_examples=150, deadline=None)


def f32(v):
    return float(np.float32(v))


# c in the domain where the fixed-point bounds hold: 2**-f <= c < 2**(word_bits - f)
c_fixed = st.floats(2.0 ** -F, 2.0 ** 26, allow_nan=False).map(f32)
c_normal = st.floats(1e-30, 1e30, allow_nan=False).map(f32)
thresholds = st.floats(1e-6, 1e6, allow_nan=False).map(f32)


@SETTINGS
@given(T=thresholds, c=c_fixed)
def test_bitshift_bound_and_conservative(T, c):
    approx = float(threshold_ratio(torch.tensor(T), torch.tensor(c), "bitshift"))
    exact = T / c                                   # float64: the real ratio
    assert T / (2 * c) <= approx < exact            # T/(2c) <= approx < T/c
    # never above the float32 exact ratio, so it keeps every MAC that exact division keeps
    assert approx <= float(threshold_ratio(torch.tensor(T), torch.tensor(c), "exact"))


@SETTINGS
@given(T=thresholds, c=c_fixed)
def test_binary_tree_bound_and_same_n_as_bitshift(T, c):
    approx = float(threshold_ratio(torch.tensor(T), torch.tensor(c), "binary_tree"))
    assert T / (2 * c) <= approx < T / c
    n_shift, _ = bitshift_exponent(torch.tensor([c]))
    n_tree, comps = tree_exponent(torch.tensor([c]), balanced_tree())
    assert int(n_tree) == int(n_shift)
    assert 1 <= int(comps) <= 6                     # balanced over 33 exponents: depth 5 or 6


@SETTINGS
@given(T=thresholds, c=c_normal)
def test_bitmask_bound(T, c):
    approx = float(threshold_ratio(torch.tensor(T), torch.tensor(c), "bitmask"))
    assert T / (2 * c) < approx < 2 * T / c         # mantissa ratio in (1/2, 2)
    assert np.log2(approx) == int(np.log2(approx))  # a power of two


EDGE = [1e-40, 1e-38, 2.0 ** -F, 2.0 ** -F * 0.99, 0.5, 1.0, 1.5, 2.0, 3.0, 1023.97, 2.0 ** 26,
        2.0 ** 27, 2.0 ** 28, 3e38]


@pytest.mark.parametrize("method", METHODS)
def test_scalar_equals_vectorised_bit_for_bit(method):
    g = torch.Generator().manual_seed(0)
    c = torch.cat([torch.tensor(EDGE), torch.exp(torch.randn(2000, generator=g) * 6)]).float()
    T = torch.cat([torch.tensor([0.0, 1e-40, 3e38]),
                   torch.rand(c.numel() - 3, generator=g)]).float()
    vec = threshold_ratio(T, c, method).numpy()
    sca, steps = scalar_threshold_ratio(T, c, method)
    assert np.array_equal(vec.view(np.int32), sca.view(np.int32))
    assert np.array_equal(steps, division_steps(c, method).numpy())


@pytest.mark.parametrize("opts", [{"frac_bits": 3}, {"word_bits": 16}, {"start": 4},
                                  {"frac_bits": 8, "word_bits": 20, "start": 2}])
def test_bitshift_options_scalar_equals_vectorised(opts):
    c = torch.exp(torch.randn(500, generator=torch.Generator().manual_seed(1)) * 5).float()
    vec = threshold_ratio(torch.tensor(0.7), c, "bitshift", **opts).numpy()
    sca, _ = scalar_threshold_ratio(torch.tensor(0.7), c, "bitshift", **opts)
    assert np.array_equal(vec.view(np.int32), sca.view(np.int32))


def test_bitshift_values_and_start_caps_the_ratio():
    T = torch.tensor(1.0)
    c = torch.tensor([0.01, 1 / 32, 0.75, 1.0, 3.0])
    # c_q = floor(c * 32) = 0, 1, 24, 32, 96 -> n = 0, 1, 5, 6, 7 -> T * 2**(5 - n)
    assert threshold_ratio(T, c, "bitshift").tolist() == [32.0, 16.0, 1.0, 0.5, 0.25]
    # start=6: n = max(n, 6), so every c below 2**(6-5) = 2 shares the ratio 0.5
    assert threshold_ratio(T, c, "bitshift", start=6).tolist() == [0.5, 0.5, 0.5, 0.5, 0.25]
    n, steps = bitshift_exponent(c, start=6)
    assert n.tolist() == [6, 6, 6, 6, 7] and steps.tolist() == [0, 0, 0, 0, 1]


def test_bitmask_values_and_edges():
    T = torch.tensor([1.0, 3.0, 0.0, 3e38, 1e-30])
    c = torch.tensor([1.5, 1.0, 2.0, 1e-10, 1e20])
    # 2**(0-0), 2**(1-0), T=0 -> 0, overflow -> inf, underflow -> smallest normal 2**-126
    assert threshold_ratio(T, c, "bitmask").tolist() == [1.0, 2.0, 0.0, float("inf"), 2.0 ** -126]


def test_tree_with_start_range_equals_bitshift_with_start():
    c = torch.exp(torch.randn(3000, generator=torch.Generator().manual_seed(2)) * 6).float()
    tree = balanced_tree(lo=4, hi=32)
    n_tree, _ = tree_exponent(c, tree)
    n_shift, _ = bitshift_exponent(c, start=4)
    assert torch.equal(n_tree, n_shift)
    assert torch.equal(threshold_ratio(0.3, c, "binary_tree", tree=tree),
                       threshold_ratio(0.3, c, "bitshift", start=4))


def test_calibrated_tree_puts_frequent_exponents_shallower():
    g = torch.Generator().manual_seed(3)
    acts = torch.rand(5000, generator=g) * 2.0          # exponents 0..6 in Q10.5
    tree = calibrate_pivots(acts)
    bal = balanced_tree()
    n, comps = tree_exponent(acts, tree)
    assert tree.average_depth == pytest.approx(float(comps.float().mean()))
    _, comps_bal = tree_exponent(acts, bal)
    assert tree.average_depth < 0.6 * float(comps_bal.float().mean())
    # same n as the shift loop, whatever the tree's shape
    assert torch.equal(n, bitshift_exponent(acts)[0])
    assert torch.equal(threshold_ratio(0.1, acts, "binary_tree", tree=tree),
                       threshold_ratio(0.1, acts, "bitshift"))
    # the most frequent exponent (6: values in [1, 2)) is among the shallowest leaves
    assert tree.comparisons(6) == int(tree.depth.min())
    sca, steps = scalar_threshold_ratio(torch.tensor(0.1), acts, "binary_tree", tree=tree)
    assert np.array_equal(steps, comps.numpy())


def test_unknown_method_and_options_raise():
    with pytest.raises(LayerwiseError, match="exact, bitshift, binary_tree, bitmask"):
        threshold_ratio(torch.tensor(1.0), torch.tensor(2.0), "newton")
    with pytest.raises(LayerwiseError, match="start"):
        threshold_ratio(torch.tensor(1.0), torch.tensor(2.0), "bitmask", start=2)


def test_decision_agreement():
    x = torch.tensor([0.0, 0.5, 1.0, 3.0])
    w = torch.tensor([0.2, 0.3, 0.0, 0.09, 0.4])
    assert decision_agreement(0.1, x[:, None], w[None, :], "exact") == 1.0
    T = torch.tensor(0.1)
    # Worked by hand (Q10.5, c_q = floor(32 c), n = bitlen(c_q), ratio T * 2**(5 - n)); the
    # 12 pairs with both operands nonzero: x in {0.5, 1, 3} x w in {0.2, 0.3, 0.09, 0.4}.
    # control x (Linear, keep iff |w| > T/|x|):
    #   x=0.5: c_q 16, n 5, ratio 0.1 vs exact 0.2: w=0.2 kept by bitshift, skipped by exact (tie)
    #   x=1:   c_q 32, n 6, ratio 0.05 vs exact 0.1: w=0.09 kept by bitshift, skipped by exact
    #   x=3:   c_q 96, n 7, ratio 0.025 vs exact 0.0333: every w kept by both
    # -> 10 of 12 decisions agree
    assert decision_agreement(T, x[:, None], w[None, :], "bitshift") == pytest.approx(10 / 12)
    # control w (Conv, keep iff |x| > T/|w|):
    #   w=0.2:  c_q 6,  n 3, ratio 0.4 vs exact 0.5: x=0.5 kept by bitshift, skipped by exact (tie)
    #   w=0.3:  c_q 9,  n 4, ratio 0.2 vs exact 0.333: every x kept by both
    #   w=0.09: c_q 2,  n 2, ratio 0.8 vs exact 1.11: x=1 kept by bitshift, skipped by exact
    #   w=0.4:  c_q 12, n 4, ratio 0.2 vs exact 0.25: every x kept by both
    # -> 10 of 12
    assert decision_agreement(T, x[:, None], w[None, :], "bitshift", control="w") == pytest.approx(10 / 12)
    with pytest.raises(LayerwiseError):
        decision_agreement(T, x, x, "exact", control="z")
