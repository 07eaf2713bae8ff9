"""Laws ELA relies on: eq. (8)'s padded KL is a divergence (>= 0, 0 on equal inputs) for the
adjacent-layer shapes ELA compares (n vs n + 1), and EBQM's skip decision is monotone in KL.

Expected values are computed here independently (the log-sum inequality bound, the order of the
KL values), never by calling the function under test twice.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.ela import ElaConfig, adjacent_kl, ebqm, fixed_selection, padded_kl, threshold_selection
from layerwise.ela.config import MAPPINGS
from layerwise.ela.kl import FLOOR

LAW = settings(max_examples=50, deadline=None)


def prob_vector(n: int, zeros: bool = True):
    """A probability vector of length ``n`` (entries may be exactly 0 when ``zeros``)."""
    lo = 0.0 if zeros else 1e-6
    return (st.lists(st.floats(lo, 1.0, allow_nan=False), min_size=n, max_size=n)
            .filter(lambda v: sum(v) > 1e-9)
            .map(lambda v: (np.asarray(v, dtype=np.float64) / np.sum(v))))


@st.composite
def adjacent_pair(draw, zeros: bool = True):
    """(P, P') with len(P') = len(P) + 1: layer l and layer l + 1 of one MRLA stage."""
    n = draw(st.integers(1, 8))
    return draw(prob_vector(n, zeros)), draw(prob_vector(n + 1, zeros))


epsilons = st.one_of(st.just(1e-8), st.floats(1e-12, 1e-3))


# ------------------------------------------------------------------------------- padded KL

@LAW
@given(pair=adjacent_pair(), eps=epsilons)
def test_padded_kl_is_non_negative_for_adjacent_layers(pair, eps):
    p, q = pair
    kl = padded_kl(p, q, eps)
    assert math.isfinite(kl)
    assert kl >= -1e-12
    # Independent lower bound (log-sum inequality): the padded P sums to 1 + eps and is not
    # renormalised; P' (floored at FLOOR) sums to Q, so KL >= (1 + eps) log((1 + eps) / Q) > 0.
    total_p = float(np.sum(p)) + eps
    total_q = float(np.sum(np.maximum(q, FLOOR)))
    assert kl >= total_p * math.log(total_p / total_q) - 1e-12


@LAW
@given(p=st.integers(1, 9).flatmap(prob_vector))
def test_padded_kl_of_equal_inputs_is_zero(p):
    assert abs(padded_kl(p, p)) <= 1e-6
    assert abs(padded_kl(p.tolist(), list(p))) <= 1e-6


@LAW
@given(p=st.integers(1, 8).flatmap(lambda n: prob_vector(n, zeros=False)))
def test_later_layer_that_adds_a_zero_weight_entry_has_kl_about_zero(p):
    # P' = (P, 0): the later layer attends exactly as the earlier one; eq. (8)'s only extra term
    # is eps * log(eps / FLOOR) = 1e-8 * log(1e4), about 9e-8.
    q = np.concatenate([p, [0.0]])
    expected = 1e-8 * math.log(1e-8 / FLOOR)
    assert abs(padded_kl(p, q) - expected) <= 1e-12
    assert abs(padded_kl(p, q)) <= 1e-6


@LAW
@given(n0=st.integers(1, 4), layers=st.integers(2, 5), data=st.data())
def test_adjacent_kl_over_a_stage_is_non_negative_and_keyed_by_the_later_layer(n0, layers, data):
    dists = {f"l{i}": data.draw(prob_vector(n0 + i)) for i in range(layers)}
    names = list(dists)
    kl = adjacent_kl(dists, [names])
    assert set(kl) == set(names[1:])  # the first layer of a stage has no predecessor
    assert all(v >= -1e-12 for v in kl.values())


# ------------------------------------------------------------------------------------ EBQM

kl_values = st.lists(st.one_of(st.floats(0.0, 50.0, allow_nan=False),
                               st.sampled_from([0.0, 0.1, 0.5, 1.0])),  # ties on purpose
                     min_size=0, max_size=12)


@st.composite
def ebqm_configs(draw):
    return ElaConfig(gamma=draw(st.floats(0.05, 1.0)), alpha=draw(st.floats(0.2, 10.0)),
                     beta=draw(st.floats(0.2, 10.0)), mu=draw(st.floats(0.0, 1.0)),
                     mapping=draw(st.sampled_from(MAPPINGS)), gqm_shape=draw(st.floats(0.5, 5.0)))


def _assert_down_set(x, skip):
    """The skip set is a lower set of the KL values: x_i <= x_j and j skipped => i skipped."""
    for i in range(len(x)):
        for j in range(len(x)):
            if x[i] <= x[j] and skip[j]:
                assert skip[i], (x, skip, i, j)


@LAW
@given(x=kl_values, cfg=ebqm_configs())
def test_ebqm_skip_is_monotone_in_kl(x, cfg):
    sel = ebqm(x, cfg)
    assert len(sel.skip) == len(x)
    _assert_down_set(x, sel.skip)
    # equal KL values always get the same decision
    for i in range(len(x)):
        for j in range(len(x)):
            if x[i] == x[j]:
                assert sel.skip[i] == sel.skip[j]


@LAW
@given(x=kl_values.filter(len), cfg=ebqm_configs())
def test_ebqm_subset_quantile_and_mapping_are_monotone(x, cfg):
    sel = ebqm(x, cfg)
    xs = np.asarray(x)
    # S_gamma = {x_i <= Q_gamma}, Q_gamma = numpy's linear-interpolation quantile (step 3)
    q = float(np.quantile(xs, cfg.gamma))
    assert sel.quantile == q
    assert sel.in_subset == [bool(v <= q) for v in xs]
    # Only members of S_gamma are ever skipped
    assert not any(s and not m for s, m in zip(sel.skip, sel.in_subset))
    members = [i for i, m in enumerate(sel.in_subset) if m]
    assert members  # min(x) <= Q_gamma always
    for i in members:
        assert 0.0 <= sel.normalised[i] <= 1.0
        assert 0.0 <= sel.mapped[i] <= 1.0 + 1e-12
        if sel.rule is None:
            assert sel.skip[i] == (sel.mapped[i] < cfg.mu)  # step 7
    if sel.rule == "no-spread":  # S_gamma has one distinct value: nothing is skipped
        assert len({xs[i] for i in members}) == 1 and not any(sel.skip)
    assert not all(sel.skip)  # never every candidate
    # a larger KL never maps to a smaller normalised value or a smaller mapped value (y_j)
    for i in members:
        for j in members:
            if xs[i] <= xs[j]:
                assert sel.normalised[i] <= sel.normalised[j]
                assert sel.mapped[i] <= sel.mapped[j]
    # the smallest KL is always at x' = 0 (step 5)
    assert sel.normalised[int(np.argmin(xs))] == 0.0


@LAW
@given(x=kl_values, cfg=ebqm_configs(), mu2=st.floats(0.0, 1.0))
def test_ebqm_larger_mu_skips_a_superset(x, cfg, mu2):
    lo_mu, hi_mu = sorted((cfg.mu, mu2))
    cfg.mu = lo_mu
    few = ebqm(x, cfg).skip
    cfg.mu = hi_mu
    many = ebqm(x, cfg).skip
    assert all(m or not f for f, m in zip(few, many))


@LAW
@given(x=kl_values, t=st.floats(0.0, 60.0), count=st.integers(0, 14))
def test_ablation_selections_are_monotone_in_kl(x, t, count):
    thr = threshold_selection(x, t).skip
    assert thr == [v < t for v in x]
    _assert_down_set(x, thr)
    fixed = fixed_selection(x, count).skip
    assert sum(fixed) == min(count, len(x))
    # ties may be broken by position, so only a strictly smaller KL must be skipped first
    for i in range(len(x)):
        for j in range(len(x)):
            if x[i] < x[j] and fixed[j]:
                assert fixed[i]
