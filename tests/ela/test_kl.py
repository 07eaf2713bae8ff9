"""KL divergence with eq. (8)'s epsilon padding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.ela import adjacent_kl, padded_kl
from layerwise.errors import LayerwiseError


def test_equal_lengths_is_plain_kl_eq5():
    p, q = [0.5, 0.5], [0.25, 0.75]
    assert padded_kl(p, q) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))


def test_padding_by_hand_eq8():
    eps = 1e-3
    p, q = [0.6, 0.4], [0.5, 0.3, 0.2]
    expected = 0.6 * math.log(0.6 / 0.5) + 0.4 * math.log(0.4 / 0.3) + eps * math.log(eps / 0.2)
    assert padded_kl(p, q, eps) == pytest.approx(expected, rel=1e-12)


def test_first_layer_against_second():
    # P = {1} (a stage's first layer attends only to itself), P' = {0.8, 0.2}
    assert padded_kl([1.0], [0.8, 0.2], 1e-8) == pytest.approx(-math.log(0.8) + 1e-8 * math.log(1e-8 / 0.2))


def test_later_distribution_must_not_be_shorter():
    with pytest.raises(LayerwiseError, match="forward order"):
        padded_kl([0.2, 0.3, 0.5], [0.5, 0.5])


def test_adjacent_kl_is_keyed_by_the_later_layer_and_stays_within_stages():
    d = {"a0": np.array([1.0]), "a1": np.array([0.5, 0.5]), "b0": np.array([1.0]), "b1": np.array([0.9, 0.1])}
    kl = adjacent_kl(d, [["a0", "a1"], ["b0", "b1"]])
    assert set(kl) == {"a1", "b1"}
    assert kl["a1"] == pytest.approx(math.log(2), abs=1e-6)
    assert kl["b1"] == pytest.approx(-math.log(0.9), abs=1e-6)


probs = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6).map(lambda v: (np.array(v) / np.sum(v)).tolist())


@settings(max_examples=60, deadline=None)
@given(probs)
def test_kl_of_a_distribution_with_itself_is_zero(p):
    assert padded_kl(p, p) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(probs, probs)
def test_kl_is_non_negative_for_equal_lengths(p, q):
    n = min(len(p), len(q))
    p, q = np.array(p[:n]) / np.sum(p[:n]), np.array(q[:n]) / np.sum(q[:n])
    assert padded_kl(p, q) >= -1e-12


def test_uniform_kl_is_log_t_plus_one_over_t_and_normalises_position():
    from layerwise.ela import normalised_kl, uniform_kl
    for t, expected in zip(range(1, 6), (0.69, 0.41, 0.29, 0.22, 0.18)):
        assert uniform_kl(t) == pytest.approx(math.log((t + 1) / t) + 1e-8 * math.log(1e-8 * (t + 1)), rel=1e-12)
        assert round(uniform_kl(t), 2) == expected
    # a stage whose layers all attend uniformly: eq. (8) falls with position, the normalised KL is 1
    d = {f"l{i}": np.full(i + 1, 1.0 / (i + 1)) for i in range(5)}
    stages = [list(d)]
    kl = adjacent_kl(d, stages)
    assert kl["l1"] > kl["l2"] > kl["l3"] > kl["l4"]
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in normalised_kl(kl, d, stages).values())
