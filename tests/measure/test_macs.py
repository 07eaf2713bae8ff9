"""MAC counts against hand arithmetic (conventions in layerwise.measure.macs)."""

import pytest
import torch
import torch.nn as nn
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layerwise.measure import count_macs


def test_conv2d_stride_padding_groups_by_hand():
    conv = nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1, groups=2)
    # H_out = W_out = floor((9 + 2*1 - 3) / 2) + 1 = 5; out elements = 1 * 8 * 5 * 5 = 200
    # MACs per output element = (C_in / groups) * k * k = (4 / 2) * 3 * 3 = 18 -> 200 * 18 = 3600
    mc = count_macs(conv, torch.randn(1, 4, 9, 9))
    assert mc.total == 3600
    assert mc.per_module == {"": 3600}
    assert mc.by_op == {"convolution": 3600}


def test_conv1d_stride_padding_groups_by_hand():
    conv = nn.Conv1d(6, 9, kernel_size=4, stride=3, padding=2, groups=3)
    # L_out = floor((20 + 2*2 - 4) / 3) + 1 = 7; out elements = 2 * 9 * 7 = 126
    # MACs per output element = (6 / 3) * 4 = 8 -> 126 * 8 = 1008
    assert count_macs(conv, torch.randn(2, 6, 20)).total == 1008


def test_linear_by_hand_2d_and_3d_input():
    lin = nn.Linear(7, 3)
    assert count_macs(lin, torch.randn(5, 7)).total == 5 * 7 * 3  # 105, bias not counted
    assert count_macs(lin, torch.randn(2, 5, 7)).total == 2 * 5 * 7 * 3  # leading dims are batch


def test_lstm_one_layer_by_hand():
    lstm = nn.LSTM(5, 7)
    # T=3, B=2: 4 * H * (I + H) = 4 * 7 * 12 = 336 per step and sequence -> 336 * 6 = 2016
    mc = count_macs(lstm, torch.randn(3, 2, 5))
    assert mc.total == 2016
    assert mc.per_module == {"": 2016}


def test_lstm_two_layers_bidirectional_batch_first_by_hand():
    lstm = nn.LSTM(5, 7, num_layers=2, bidirectional=True, batch_first=True)
    # B=2, T=3 -> 6 (step, sequence) pairs per direction
    # layer 1: 2 directions * 4*7*(5+7)  = 2 * 336 = 672
    # layer 2: input is 2H = 14: 2 * 4*7*(14+7) = 2 * 588 = 1176
    # (672 + 1176) * 6 = 11088
    assert count_macs(lstm, torch.randn(2, 3, 5)).total == 11088


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_with_projection_by_hand():
    lstm = nn.LSTM(5, 7, proj_size=3)
    # per step: 4*H*(I + P) + H*P = 4*7*(5+3) + 7*3 = 224 + 21 = 245; T*B = 6 -> 1470
    assert count_macs(lstm, torch.randn(3, 2, 5)).total == 1470


def test_gru_by_hand():
    # 1 layer, T=2, B=3: 3 * H * (I + H) = 3 * 7 * 12 = 252 -> 252 * 6 = 1512
    assert count_macs(nn.GRU(5, 7), torch.randn(2, 3, 5)).total == 1512
    # 2 layers, bidirectional: (2 * 3*7*(5+7) + 2 * 3*7*(14+7)) * 6 = (504 + 882) * 6 = 8316
    gru = nn.GRU(5, 7, num_layers=2, bidirectional=True)
    assert count_macs(gru, torch.randn(2, 3, 5)).total == 8316


class CnnLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ReLU())
        self.rnn = nn.LSTM(4, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x):  # x: [B, C, T]
        h, _ = self.rnn(self.features(x).transpose(1, 2))
        return self.head(h[:, -1]) @ torch.ones(2, 2)  # root does a matmul of its own


def test_model_per_module_by_name_and_sum():
    mc = count_macs(CnnLstm(), torch.randn(1, 3, 10))
    conv = 1 * 4 * 10 * 3 * 3  # out elements 40 * (3 * 3) = 360
    lstm = 4 * 5 * (4 + 5) * 10  # 180 per step * 10 steps = 1800
    head = 5 * 2  # 10
    root = 1 * 2 * 2  # [1,2] @ [2,2] = 4
    assert mc.per_module == {"features.0": conv, "features.1": 0, "rnn": lstm, "head": head, "": root}
    assert mc.total == conv + lstm + head + root == sum(mc.per_module.values())


def test_sequential_total_is_sum_of_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    mc = count_macs(model, torch.randn(1, 1, 8, 8))
    assert mc.per_module["0"] == 2 * 6 * 6 * 1 * 9  # 648
    assert mc.per_module["3"] == 72 * 4  # 288
    assert mc.total == 648 + 288 == sum(mc.per_module.values())
    assert set(mc.per_module) == {"0", "1", "2", "3"}


def test_shared_module_credited_to_one_name_per_call():
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)  # same module twice
    mc = count_macs(model, torch.randn(1, 4))
    assert mc.per_module == {"0": 32, "1": 0}
    assert mc.total == 32


def test_tuple_and_dict_inputs_and_mode_restored():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    m = Two().train()
    m.b.eval()
    assert count_macs(m, (torch.randn(1, 3), torch.randn(1, 5))).total == 6 + 10
    assert count_macs(m, {"x": torch.randn(2, 3), "y": torch.randn(2, 5)}).total == 2 * (6 + 10)
    assert m.training and m.a.training and not m.b.training


def test_dynamic_quantized_counts_zero_and_says_so():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(4, 4)), {nn.Linear}, dtype=torch.qint8)
    mc = count_macs(q, torch.randn(1, 4))
    assert mc.total == 0
    assert "quantized" in mc.source


def _out_len(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@settings(max_examples=30, deadline=None)
@given(groups=st.integers(1, 3), cin_per=st.integers(1, 3), cout_per=st.integers(1, 3),
       k=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
       dilation=st.integers(1, 2), h=st.integers(6, 12), w=st.integers(6, 12), batch=st.integers(1, 2))
def test_conv2d_macs_law(groups, cin_per, cout_per, k, stride, padding, dilation, h, w, batch):
    cin, cout = groups * cin_per, groups * cout_per
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ho, wo = _out_len(h, k, stride, padding, dilation), _out_len(w, k, stride, padding, dilation)
    assume(ho >= 1 and wo >= 1)
    expected = batch * cout * ho * wo * (cin // groups) * k * k
    assert count_macs(conv, torch.randn(batch, cin, h, w)).total == expected


@settings(max_examples=15, deadline=None)
@given(i=st.integers(1, 6), h=st.integers(1, 6), layers=st.integers(1, 2), bi=st.booleans(),
       t=st.integers(1, 4), b=st.integers(1, 3), kind=st.sampled_from(["lstm", "gru"]))
def test_rnn_macs_law(i, h, layers, bi, t, b, kind):
    gates = 4 if kind == "lstm" else 3
    rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(i, h, num_layers=layers, bidirectional=bi)
    dirs = 2 if bi else 1
    per_step = sum(dirs * gates * h * ((i if layer == 0 else dirs * h) + h) for layer in range(layers))
    assert count_macs(rnn, torch.randn(t, b, i)).total == per_step * t * b
