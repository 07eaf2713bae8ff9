import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from layerwise.lwac import activation_entropy, alpha, cost, normalise, regulariser, relevance


def test_eq2_alpha_on_hand_numbers():
    # sigmoid(2 * 0.5 - 3 * 0.2) = sigmoid(0.4)
    assert alpha(0.5, 0.2, gamma=2.0, lam=3.0) == pytest.approx(1 / (1 + math.exp(-0.4)))
    t = alpha(torch.tensor([0.5, 0.0]), 0.2, gamma=2.0, lam=3.0)
    assert torch.allclose(t, torch.sigmoid(torch.tensor([0.4, -0.6])))


def test_eq3_relevance_on_hand_numbers():
    # mean grad (1 + 3) / 2 = 2, mean entropy (0.5 + 1.5) / 2 = 1, eta 0.1 -> 2.1
    assert relevance([1.0, 3.0], [0.5, 1.5], eta=0.1) == pytest.approx(2.1)


def test_eq4_cost_on_hand_numbers():
    assert cost(0.5, 1.0, 0.25, (0.2, 0.3, 0.5)) == pytest.approx(0.1 + 0.3 + 0.125)


def test_eq5_regulariser_on_hand_numbers():
    a = torch.tensor([[0.9, 0.5, 0.7]])
    c = torch.tensor([1.0, 0.5, 0.2])
    # beta * (0.4 + 0.2) + delta * (0.9 + 0.25 + 0.14) = 0.1 * 0.6 + 2 * 1.29
    assert regulariser(a, c, beta=0.1, delta=2.0).item() == pytest.approx(0.06 + 2.58)


def test_eq5_target_rate_form_on_hand_numbers():
    a = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # batch means 0.5, 0.0, 1.0
    c = torch.tensor([1.0, 0.5, 0.2])
    # smooth: mean of (1 + 1) and (0 + 1) = 1.5; cost: 1 (0.5-0.6)^2 + 0.5 (0-0.6)^2 + 0.2 (1-0.6)^2
    want = 0.1 * 1.5 + 2.0 * (0.01 + 0.5 * 0.36 + 0.2 * 0.16)
    assert regulariser(a, c, beta=0.1, delta=2.0, target=0.6).item() == pytest.approx(want)


def test_entropy_uniform_and_single_channel():
    uniform = torch.ones(1, 8, 4, 4)
    assert activation_entropy(uniform).item() == pytest.approx(math.log(8), rel=1e-5)
    one = torch.zeros(1, 8, 4, 4)
    one[0, 3] = 2.0
    assert activation_entropy(one).item() == pytest.approx(0.0, abs=1e-6)
    assert activation_entropy(torch.zeros(2, 5)).tolist() == [0.0, 0.0]


def test_normalise_divides_by_max():
    assert normalise([1.0, 2.0, 4.0]) == [0.25, 0.5, 1.0]
    assert normalise([0.0, 0.0]) == [0.0, 0.0]


@given(r=st.floats(-5, 5), dr=st.floats(0.01, 5), c=st.floats(0, 1), dc=st.floats(0.01, 1),
       lam=st.floats(0.01, 10))
def test_alpha_rises_with_relevance_and_falls_with_cost(r, dr, c, dc, lam):
    assert alpha(r + dr, c, 1.0, lam) >= alpha(r, c, 1.0, lam)
    assert alpha(r, c + dc, 1.0, lam) <= alpha(r, c, 1.0, lam)
    assert 0.0 <= alpha(r, c, 1.0, lam) <= 1.0


@given(st.lists(st.floats(0, 1), min_size=2, max_size=8), st.floats(0, 1))
def test_regulariser_is_zero_for_flat_alphas_without_cost(costs, value):
    a = torch.full((1, len(costs)), value)
    assert regulariser(a, torch.tensor(costs), beta=1.0, delta=0.0).item() == pytest.approx(0.0, abs=1e-6)
