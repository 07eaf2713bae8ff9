"""Confidence intervals and paired tests, against hand-worked values and explicit loops."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from layerwise.errors import LayerwiseError
from layerwise.stats import (accuracy_ci, mcnemar_exact, paired_difference, seed_summary,
                             wilson_interval)


def test_wilson_hand_worked_values():
    # 5 of 10, z = 1.959964: (0.5 + 0.19207) / 1.38415 -+ 1.959964 * sqrt(0.025 + 0.0096036) / 1.38415
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    # 0 of 10: the lower end is 0 and the upper end is z^2 / (n + z^2) = 3.8415 / 13.8415
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(3.841459 / 13.841459, abs=1e-6)
    # 10,000 images at 90 %: about +-0.59 pt
    lo, hi = wilson_interval(9000, 10000)
    assert (hi - lo) / 2 == pytest.approx(0.00588, abs=5e-5)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1))
def test_wilson_holds_the_estimate_and_stays_in_unit_interval(n, frac):
    k = int(round(frac * n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo99, hi99 = wilson_interval(k, n, level=0.99)
    assert lo99 <= lo + 1e-12 and hi99 >= hi - 1e-12      # a higher level is never narrower


def test_accuracy_ci_from_hits_equals_from_counts():
    hits = [True] * 81 + [False] * 19
    a, b = accuracy_ci(hits), accuracy_ci(correct=81, n=100)
    assert a == b and a.accuracy == 0.81 and a.n == 100
    assert "81.00 %" in a.text()


def test_mcnemar_hand_worked():
    # 1 vs 9 discordant: 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # 0 vs 6: 2 / 64
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_mcnemar_matches_an_explicit_sum():
    for a, b in [(3, 11), (0, 1), (20, 35)]:
        m = a + b
        tail = sum(math.comb(m, i) for i in range(min(a, b) + 1)) / 2 ** m
        assert mcnemar_exact(a, b) == pytest.approx(min(1.0, 2 * tail))


def test_paired_difference_counts_and_verdicts():
    rng = np.random.default_rng(0)
    base = rng.random(2000) < 0.9
    same = paired_difference(base, base.copy(), a="unit", b="dense")
    assert same.difference == 0 and same.only_a == same.only_b == 0
    assert not same.measurable and "no measurable difference" in same.verdict()
    better = base.copy()
    flip = np.flatnonzero(~base)[:120]                  # 120 more images right with A
    better[flip] = True
    d = paired_difference(better, base, a="ela", b="mrla-l")
    assert d.only_a == 120 and d.only_b == 0
    assert d.difference == pytest.approx(120 / 2000)
    assert d.low > 0 and d.measurable and "ela ahead" in d.verdict()
    assert d.low <= d.difference <= d.high


def test_few_discordant_images_are_not_a_measurable_difference():
    # 0 vs 4 discordant images of 40: the bootstrap interval excludes 0, exact McNemar p = 2/16
    a = np.zeros(40, dtype=bool)
    b = a.copy()
    b[:4] = True
    d = paired_difference(a, b, a="ela", b="mrla-b")
    assert d.high < 0 and d.mcnemar_p == pytest.approx(0.125)
    assert not d.measurable and "no measurable difference" in d.verdict()


def test_paired_interval_is_seeded():
    rng = np.random.default_rng(1)
    a, b = rng.random(500) < 0.8, rng.random(500) < 0.8
    assert paired_difference(a, b, seed=3) == paired_difference(a, b, seed=3)


def test_seed_summary_uses_the_sample_std():
    s = seed_summary([0.90, 0.92, 0.94], seeds=[0, 1, 2])
    assert s.mean == pytest.approx(0.92)
    assert s.std == pytest.approx(math.sqrt(((0.02) ** 2 * 2) / 2))
    assert s.values == (0.90, 0.92, 0.94) and s.seeds == (0, 1, 2)
    assert "92.00 ± 2.00 %" in s.text()
    assert seed_summary([0.5]).std == 0.0


def test_bad_input_names_the_fix():
    with pytest.raises(LayerwiseError, match="n >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(LayerwiseError, match="same images"):
        paired_difference([1, 0], [1, 0, 1])
    with pytest.raises(LayerwiseError, match="between 0 and 1"):
        accuracy_ci([True], level=95)
    with pytest.raises(LayerwiseError, match="0/1"):
        accuracy_ci([0, 2, 1])
