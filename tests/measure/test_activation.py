"""Peak activation memory: liveness of activation storages over the traced graph (hand-worked cases)."""

from __future__ import annotations

import torch
from torch import nn

from layerwise.measure.activation import activation_memory


def test_sequential_peak_is_the_largest_input_plus_output_pair_worked_by_hand():
    # input 1x1x8x8 float32 = 256 B; conv out 1x4x8x8 = 1024 B; in-place ReLU and Flatten (a view)
    # add nothing; Linear out 10 floats = 40 B. Alive at the conv: 256 + 1024 = 1280 (the peak);
    # at the Linear: its input (the conv's storage, 1024) + 40 = 1064.
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(256, 10))
    r = activation_memory(m, torch.randn(1, 1, 8, 8))
    assert r.exact and r.peak_bytes == 1280
    live = {row["name"]: row for row in r.per_node}
    assert live["_0"]["live_bytes"] == 1280 and live["_0"]["new_bytes"] == 1024
    assert live["_1"]["new_bytes"] == 0 and live["_2"]["new_bytes"] == 0
    assert live["_3"]["live_bytes"] == 1064


class _Skip(nn.Module):
    """y = relu(conv(x)) + x: the input stays alive across the branch (a residual buffer)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return torch.relu(self.conv(x)) + x


def test_a_residual_input_stays_alive_until_the_add():
    # x: 2x4x4 floats = 128 B; conv out 128 B; relu (not in place) 128 B; add out 128 B.
    # At the relu: x (used by the add later) + conv out (its input) + relu out = 384.
    # At the add: x + relu out + add out = 384; conv out is dead by then.
    r = activation_memory(_Skip(), torch.randn(1, 2, 4, 4))
    assert r.peak_bytes == 384
    rows = {row["name"]: row["live_bytes"] for row in r.per_node}
    assert rows["conv"] == 256 and rows["relu"] == 384 and rows["add"] == 384


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, x):
        h = self.a(x)
        if h.sum() > 0:          # data-dependent: torch.fx cannot trace it
            h = h * 2
        return self.b(h)


def test_untraceable_model_falls_back_to_a_labelled_lower_bound():
    r = activation_memory(_Branchy(), torch.randn(1, 4))
    assert not r.exact and "lower bound" in r.source
    assert r.peak_bytes == 16 + 32     # the Linear a: input 4 floats + output 8 floats
