"""Algorithm 1 (EBQM) on hand-worked cases, and the ablations' selections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from layerwise.ela import (ElaConfig, ebqm, fixed_selection, position_selection, random_selection, select,
                           threshold_selection)
from layerwise.ela.ebqm import beta_moments


def test_reference_threshold_beta_5_1_mu_03_skips_below_0786():
    # y = x^5 < 0.3  <=>  x < 0.3 ** 0.2 = 0.7860
    assert 0.3 ** 0.2 == pytest.approx(0.786, abs=5e-4)
    cfg = ElaConfig(gamma=1.0, alpha=5, beta=1, mu=0.3)
    sel = ebqm([0.0, 0.785, 0.787, 1.0], cfg)
    assert sel.skip == [True, True, False, False]
    assert sel.mapped[1] == pytest.approx(0.785 ** 5)


def test_reference_threshold_beta_2_5_mu_025_skips_below_0161():
    boundary = stats.beta.ppf(0.25, 2, 5)
    assert boundary == pytest.approx(0.161, abs=5e-4)
    cfg = ElaConfig(gamma=1.0, alpha=2, beta=5, mu=0.25)
    sel = ebqm([10.0, 10.16, 10.162, 11.0], cfg)  # min-max: 0, .16, .162, 1
    assert sel.skip == [True, True, False, False]


def test_gamma_quantile_then_minmax_by_hand():
    # Q_0.5 of [5,1,4,2,3] = 3, S = {1,2,3}, x' = {0, .5, 1}, y = x'^5 = {0, .03125, 1}
    cfg = ElaConfig(gamma=0.5, alpha=5, beta=1, mu=0.3)
    sel = ebqm([5.0, 1.0, 4.0, 2.0, 3.0], cfg)
    assert sel.quantile == 3.0
    assert sel.in_subset == [False, True, False, True, True]
    assert sel.normalised == [None, 0.0, None, 0.5, 1.0]
    assert sel.mapped[3] == pytest.approx(0.03125)
    assert sel.skip == [False, True, False, True, False]


def test_one_value_in_the_subset_skips_nothing():
    # min-max of one value is 0/0: the rule "no-spread" skips nothing (it used to skip it)
    sel = ebqm([0.4, 0.9, 2.0], ElaConfig(gamma=0.2))
    assert sel.in_subset == [True, False, False]
    assert sel.skip == [False, False, False] and sel.rule == "no-spread"


def test_three_candidates_over_three_windows_never_lose_everything():
    # the case: [0.9, 2.0, 3.0] -> the smallest goes; then [2.0, 3.0] -> S = {2.0}: nothing
    cfg = ElaConfig(gamma=0.5)
    assert ebqm([0.9, 2.0, 3.0], cfg).skip == [True, False, False]
    assert ebqm([2.0, 3.0], cfg).skip == [False, False]
    assert ebqm([2.0], cfg).skip == [False]


def test_ties_skip_nothing_and_a_decision_never_skips_every_candidate():
    assert ebqm([0.5, 0.5, 0.5], ElaConfig(gamma=1.0)).skip == [False] * 3
    # the Normal mapping with mu near 1 maps every value below mu: the largest KL is kept
    sel = ebqm([0.1, 0.2, 0.3], ElaConfig(gamma=1.0, mapping="normal", mu=0.99))
    assert sel.skip == [True, True, False] and sel.rule == "keep-one"


def test_mu_zero_skips_nothing_and_empty_input_is_fine():
    assert ebqm([1.0, 2.0, 3.0], ElaConfig(gamma=1.0, mu=0.0)).skip == [False] * 3
    assert ebqm([], ElaConfig()).skip == []


def test_threshold_and_fixed_ablations():
    assert threshold_selection([0.01, 0.2, 0.04], 0.05).skip == [True, False, True]
    assert fixed_selection([0.3, 0.1, 0.2, 0.1], 2).skip == [False, True, False, True]
    cfg = ElaConfig(strategy="fixed", fixed_counts=(1, 2))
    assert select([3.0, 1.0, 2.0], cfg, 0).skip == [False, True, False]
    assert select([3.0, 1.0, 2.0], cfg, 5).skip == [False, True, True]


def test_normal_and_gamma_mappings_are_moment_matched_to_the_beta():
    mean, var = beta_moments(5, 1)
    assert mean == pytest.approx(5 / 6) and var == pytest.approx(5 / (36 * 7))
    kl = [0.0, 0.5, 1.0]
    y_norm = ebqm(kl, ElaConfig(gamma=1.0, mapping="normal")).mapped
    assert y_norm[1] == pytest.approx(stats.norm.cdf(0.5, mean, math.sqrt(var)))
    y_gamma = ebqm(kl, ElaConfig(gamma=1.0, mapping="gamma")).mapped
    assert y_gamma[1] == pytest.approx(stats.gamma.cdf(0.5, mean ** 2 / var, scale=var / mean))


def test_gqm_and_eqm_quantile_mapping_by_hand():
    # ranks 1..4 -> Hazen p = .125 .375 .625 .875 -> Exp^-1(p) = -log(1-p), min-max normalised
    q = -np.log(1 - np.array([0.125, 0.375, 0.625, 0.875]))
    expected = (q - q[0]) / (q[-1] - q[0])
    sel = ebqm([0.4, 0.1, 0.3, 0.2], ElaConfig(gamma=1.0, mapping="eqm", mu=0.3))
    assert sel.mapped == pytest.approx(list(expected[[3, 0, 2, 1]]))
    assert sel.skip == [False, True, False, True]  # expected = 0, .18, .41, 1
    g = ebqm([0.4, 0.1, 0.3, 0.2], ElaConfig(gamma=1.0, mapping="gqm", gqm_shape=2.0)).mapped
    qg = stats.gamma.ppf([0.125, 0.375, 0.625, 0.875], 2.0)
    assert g[2] == pytest.approx((qg[2] - qg[0]) / (qg[3] - qg[0]))


kls = st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=2, max_size=20)


@settings(max_examples=80, deadline=None)
@given(kls, st.floats(0.05, 1.0))
def test_ebqm_laws(kl, gamma):
    sel = ebqm(kl, ElaConfig(gamma=gamma))
    x = np.array(kl)
    skipped = x[np.array(sel.skip)]
    assert all(sel.in_subset[i] for i, s in enumerate(sel.skip) if s)  # only S_gamma is ever skipped
    if len(np.unique(x[np.array(sel.in_subset)])) > 1:  # a spread in S_gamma: the smallest is skipped
        assert sel.skip[int(np.argmin(x))]  # (x' = 0, y = 0 < mu)
    else:
        assert not any(sel.skip)  # no spread: nothing
    assert not all(sel.skip)
    if len(skipped) and not all(sel.skip):  # monotone: everything skipped is below everything kept in S
        kept_in_s = x[np.array(sel.in_subset) & ~np.array(sel.skip)]
        assert len(kept_in_s) == 0 or skipped.max() <= kept_in_s.min()


def test_controls_remove_the_requested_count_without_looking_at_the_kl():
    assert position_selection(10, 2).skip == [i in (2, 7) for i in range(10)]
    assert position_selection(3, 3).skip == [True] * 3 and position_selection(4, 0).skip == [False] * 4
    a = random_selection(12, 4, seed=1, window_index=0).skip
    assert sum(a) == 4 and a == random_selection(12, 4, seed=1, window_index=0).skip
    draws = {tuple(random_selection(12, 4, seed=s).skip) for s in range(20)}
    assert len(draws) > 10  # the seed changes the draw
    cfg = ElaConfig(strategy="random", fixed_counts=(1, 2), random_seed=3)
    assert sum(select([9.0, 0.1, 5.0, 7.0], cfg, 1).skip) == 2
    pos = ElaConfig(strategy="position", fixed_counts=(2,))
    assert select([0.0, 9.0, 9.0, 0.0], pos, 0).skip == select([9.0, 0.0, 0.0, 9.0], pos, 0).skip
