"""Eq. (1)-(3) on hand-worked numbers."""

import pytest
import torch
from torch import nn

from layerwise.adalayer import AdaLayerConfig, allocate, bit_width, layer_importance, mac_shares, normalise, \
    pruning_ratio, redundancy
from layerwise.adalayer.allocation import saturating_knob


def test_importance_eq1_with_clipping():
    a = normalise({"c1": 0.30, "c2": 0.15, "c3": -0.02, "fc": 0.0})  # drops; negatives are the caller's job
    assert a == {"c1": 1.0, "c2": 0.5, "c3": pytest.approx(-0.02 / 0.30), "fc": 0.0}
    f = mac_shares({"c1": 600, "c2": 300, "c3": 100, "fc": 0})
    assert f == {"c1": 0.6, "c2": 0.3, "c3": 0.1, "fc": 0.0}
    i = layer_importance({"c1": 1.0, "c2": 0.5, "c3": 0.0, "fc": 0.2}, f, alpha=1.0, beta=-1.0)
    assert i["c1"] == pytest.approx(0.4)  # 1.0 - 0.6
    assert i["c2"] == pytest.approx(0.2)  # 0.5 - 0.3
    assert i["c3"] == 0.0  # -0.1 clipped
    assert i["fc"] == pytest.approx(0.2)
    assert layer_importance({"x": 1.0}, {"x": 0.5}, alpha=1.0, beta=1.0)["x"] == 1.0  # 1.5 clipped


def test_pruning_ratio_eq2_and_clip():
    assert pruning_ratio(0.4, 0.5, gamma=0.5, delta=0.2, p_max=0.9) == pytest.approx(0.5 * 0.6 + 0.2 * 0.5)
    assert pruning_ratio(0.0, 1.0, gamma=1.0, delta=0.5, p_max=0.9) == 0.9
    assert pruning_ratio(1.0, 0.0, gamma=1.0, delta=0.5, p_max=0.9) == 0.0


def test_bit_width_eq3_rounds_half_up_and_clips():
    assert bit_width(0.5, lam=3.0, b_min=4, b_max=8) == 7  # 8 - 1.5 = 6.5 -> 7 (half up)
    assert bit_width(0.6, lam=3.0, b_min=4, b_max=8) == 7  # 6.8 -> 7
    assert bit_width(0.2, lam=3.0, b_min=4, b_max=8) == 6  # 5.6 -> 6
    assert bit_width(0.0, lam=10.0, b_min=4, b_max=8) == 4  # -2 -> clipped
    assert bit_width(1.0, lam=10.0, b_min=4, b_max=8) == 8


def test_redundancy_from_weight_variance():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, -1.0] * 2] * 4))  # variance 16/15
        b.weight.copy_(a.weight * 0.5)  # variance a quarter of a's
    r = redundancy([("a", a), ("b", b)])
    assert r["a"] == 0.0 and r["b"] == pytest.approx(0.75)


def test_allocate_knob_scales_gamma_delta_lambda():
    cfg = AdaLayerConfig(gamma=1.0, delta=0.3, lam=4.0, p_max=0.95, b_min=4, b_max=8)
    imp, red = {"x": 0.5, "y": 1.0}, {"x": 0.2, "y": 0.0}
    assert allocate(imp, red, 0.0, cfg).prune_ratio == {"x": 0.0, "y": 0.0}
    assert allocate(imp, red, 0.0, cfg).bits == {"x": 8, "y": 8}
    al = allocate(imp, red, 1.0, cfg)
    assert al.prune_ratio["x"] == pytest.approx(0.5 + 0.06) and al.bits["x"] == 6 and al.bits["y"] == 8
    sat = allocate(imp, red, saturating_knob(imp, cfg), cfg)
    assert sat.prune_ratio["x"] == 0.95 and sat.bits["x"] == 4
