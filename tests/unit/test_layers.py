"""UnIT layers, state_dict persistence and model conversion."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from layerwise.errors import LayerwiseError
from layerwise.unit import (
    UnITConv1d,
    UnITConv2d,
    UnITLinear,
    convert,
    reset_counts,
    set_division,
    set_enabled,
    total_counts,
    unit_layers,
)


class SmallNet(nn.Module):
    """A CNN with parts UnIT cannot convert (an LSTM, a transposed conv, a Conv3d)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(4, 4, (3, 2), stride=2, padding_mode="reflect",
                                                padding=1))
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.vol = nn.Conv3d(1, 1, 1)
        self.seq = nn.Conv1d(2, 4, 3, padding=1)
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x):                          # x [B, 1, 8, 8]
        f = self.features(x)                       # [B, 4, 4, 5]
        u = self.up(f)                             # [B, 2, 8, 10]
        s = self.seq(u.mean(2))                    # [B, 4, 10]
        out, _ = self.lstm(s.transpose(1, 2))      # [B, 10, 6]
        return self.head(out[:, -1])


def _save_load(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("make,x", [
    (lambda: nn.Linear(5, 4), torch.randn(3, 5)),
    (lambda: nn.Conv1d(2, 4, 3, stride=2, padding=1), torch.randn(2, 2, 9)),
    (lambda: nn.Conv2d(4, 6, (3, 2), dilation=2, groups=2, padding="same"),
     torch.randn(2, 4, 7, 6)),
])
def test_from_module_same_state_and_dense_output_at_zero(make, x):
    torch.manual_seed(0)
    layer = make()
    unit_type = {nn.Linear: UnITLinear, nn.Conv1d: UnITConv1d, nn.Conv2d: UnITConv2d}[type(layer)]
    u = unit_type.from_module(layer, groups=2)
    assert set(u.state_dict()) == set(layer.state_dict()) | {"unit_threshold"}
    assert u.unit_threshold.shape == (2,) and u.unit_threshold.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(u(x), layer(x), rtol=1e-5, atol=1e-5)
    assert u.counts.total > 0 and u.counts.executed == u.counts.total - u.counts.skipped
    assert u.counts.threshold == 0


def test_threshold_state_dict_round_trip_and_group_count():
    torch.manual_seed(0)
    u = UnITConv2d(2, 4, 3, padding=1, threshold_groups=2)
    u.set_threshold(torch.tensor([0.25, 0.5]))
    state = _save_load(u.state_dict())
    torch.testing.assert_close(state["unit_threshold"], torch.tensor([0.25, 0.5]))
    fresh = UnITConv2d(2, 4, 3, padding=1)          # one group: the loaded [2] replaces it
    fresh.load_state_dict(state)
    assert fresh.threshold_groups == 2
    torch.testing.assert_close(fresh.unit_threshold, torch.tensor([0.25, 0.5]))
    x = torch.randn(1, 2, 5, 5)
    torch.testing.assert_close(fresh(x), u(x))
    assert fresh.counts == u.counts and u.counts.threshold > 0


def test_enabled_false_is_dense_and_uncounted():
    torch.manual_seed(0)
    u = UnITLinear(8, 4)
    u.set_threshold(10.0)                          # skips everything
    x = torch.randn(2, 8)
    torch.testing.assert_close(u(x), u.bias.expand(2, 4))
    assert u.counts.executed == 0 and u.counts.threshold == 64
    u.enabled = False
    torch.testing.assert_close(u(x), nn.functional.linear(x, u.weight, u.bias))
    assert u.counts.total == 64                    # unchanged by the dense call
    u.enabled, u.counting = True, False
    u(x)
    assert u.counts.total == 64
    u.reset_counts()
    assert u.counts.total == 0


def test_bad_threshold_values():
    u = UnITLinear(4, 6)
    with pytest.raises(LayerwiseError, match="do not divide"):
        u.set_threshold(torch.ones(4))
    with pytest.raises(LayerwiseError, match=">= 0"):
        u.set_threshold(-0.5)
    with pytest.raises(LayerwiseError, match="divide"):
        UnITLinear(4, 6, threshold_groups=4)


def test_convert_small_cnn_reports_and_keeps_output():
    torch.manual_seed(0)
    model = SmallNet().eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)
    report = convert(model)
    assert report.converted == ["features.0", "features.2", "seq", "head"]
    left = dict(report.left_alone)
    assert left["lstm"] == "nn.LSTM: no UnIT kernel for recurrent layers"
    assert left["up"] == "nn.ConvTranspose2d: transposed convolution: not supported"
    assert left["vol"] == "nn.Conv3d: Conv3d: not supported"
    assert isinstance(model.features[2], UnITConv2d) and model.features[2].padding_mode == "reflect"
    assert isinstance(model.seq, UnITConv1d) and isinstance(model.head, UnITLinear)
    assert isinstance(model.lstm, nn.LSTM) and report.model is model
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-5)
    counts = total_counts(model)
    # dense MACs: conv0 2*4*64*9, conv2 2*4*20*4*6, seq 2*4*10*2*3, head 2*3*6
    assert counts.total == 2 * 4 * 64 * 9 + 2 * 4 * 20 * 24 + 2 * 4 * 10 * 6 + 2 * 18
    assert counts.threshold == 0
    reset_counts(model)
    assert total_counts(model).total == 0
    assert [n for n, _ in unit_layers(model)] == report.converted


def test_convert_skip_groups_copy_and_subclasses():
    class Custom(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    class Plain(nn.Linear):
        pass

    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 4), Custom(4, 4), Plain(4, 4), shared,
                          shared, nn.Linear(4, 5))
    report = convert(model, groups=2, skip=["1"], inplace=False)
    new = report.model
    assert new is not model and not isinstance(model[0], UnITLinear)  # original untouched
    assert report.converted == ["0", "3", "4"]
    left = dict(report.left_alone)
    assert left["1"] == "nn.Linear: name in skip"
    assert "overrides forward()" in left["2"]
    assert left["6"] == "nn.Linear: 2 threshold groups do not divide 5 outputs"
    assert new[4] is new[5] and isinstance(new[4], UnITLinear)   # shared module swapped once
    assert new[0].threshold_groups == 2
    again = convert(new, groups=2, skip=["1"])      # already converted: nothing new, no error
    assert again.converted == [] and [n for n, _ in again.left_alone] == ["1", "2", "6"]


def test_convert_without_supported_layers_raises():
    with pytest.raises(LayerwiseError, match="no nn.Linear, nn.Conv1d or nn.Conv2d"):
        convert(nn.Sequential(nn.LSTM(3, 3), nn.ReLU()))
    with pytest.raises(LayerwiseError, match="remove their names from skip"):
        convert(nn.Sequential(nn.Linear(3, 3)), skip=["0"])
    mha = nn.Sequential(nn.MultiheadAttention(4, 2))
    with pytest.raises(LayerwiseError, match="MultiheadAttention"):
        convert(mha)


def test_set_division_and_enabled():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    convert(model)
    set_division(model, "bitmask")
    assert all(m.division == "bitmask" for _, m in unit_layers(model))
    with pytest.raises(LayerwiseError, match="unknown division method"):
        set_division(model, "magic")
    set_enabled(model, False)
    model(torch.randn(3, 6))
    assert total_counts(model).total == 0
    set_enabled(model, True)
    model(torch.randn(3, 6))
    assert total_counts(model).total == 3 * (6 * 4 + 4 * 2)


def test_gradients_flow_through_kept_macs():
    torch.manual_seed(0)
    u = UnITLinear(3, 2)
    u.set_threshold(0.0)
    x = torch.randn(4, 3, requires_grad=True)
    u(x).sum().backward()
    torch.testing.assert_close(x.grad, u.weight.sum(0).expand(4, 3).detach())


def test_convert_with_division_method():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(LayerwiseError, match="unknown division method"):
        convert(model, division="magic")
    assert not isinstance(model[0], UnITLinear)
    convert(model, division="bitshift", division_opts={"frac_bits": 3})
    assert model[0].division == "bitshift" and model[0].division_opts == {"frac_bits": 3}
