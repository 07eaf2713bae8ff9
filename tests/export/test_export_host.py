"""The exported C, compiled with the system C compiler, against the Python int16 reference.

What a user would notice: the C build gives other logits than the reference (any build, any
division), UnIT decisions that are not eq. 1-3, a fixed-point network much less accurate than
float, or an unsupported layer exported silently.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from layerwise.data import load_dataset
from layerwise.errors import LayerwiseError
from layerwise.export import c_codegen, host
from layerwise.export.fixed import (DIVISIONS, bitlen, linear_ratio, quantize_model, requant,
                                    run_fixed)
from layerwise.unit import calibrate, convert, unit_layers

BUILDS = [("dense", None), ("zero_skip", None)] + [("unit", d) for d in DIVISIONS]


def _cc_or_skip():
    cc = host.find_cc()
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler in CI")
        pytest.skip("no C compiler (cc, gcc or clang): apt-get install gcc")
    return cc


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits", seed=0)
    xv = torch.stack([data.val[i][0] for i in range(len(data.val))])
    xt = torch.stack([data.test[i][0] for i in range(len(data.test))])
    yt = torch.as_tensor([data.test[i][1] for i in range(len(data.test))])
    xtr = torch.stack([data.train[i][0] for i in range(len(data.train))])
    ytr = torch.as_tensor([data.train[i][1] for i in range(len(data.train))])
    return xtr, ytr, xv, xt, yt


def _small_cnn() -> nn.Module:
    # padding, stride and dilation all exercised; average and max pooling; 8x8 digits
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=1, padding=2, dilation=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


def _train(model, x, y, epochs=30):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for i in range(0, len(x), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
            opt.step()
    return model.eval()


def _thresholds(model, xv, percentile):
    conv = convert(_copy(model), groups=1).model
    calibrate(conv, [xv], percentile=percentile)
    return {n: m.unit_threshold.clone() for n, m in unit_layers(conv)}


def _copy(m):
    import copy
    return copy.deepcopy(m)


@pytest.fixture(scope="module")
def trained(digits):
    xtr, ytr, xv, xt, yt = digits
    torch.manual_seed(0)
    return _train(_small_cnn(), xtr, ytr)


def _write(tmp_path, qnet, name="net"):
    h, c = c_codegen.emit(qnet, name)
    (tmp_path / f"{name}.h").write_text(h)
    (tmp_path / f"{name}.c").write_text(c)
    return tmp_path / f"{name}.c", tmp_path / f"{name}.h"


def test_host_c_equals_python_int16_on_the_whole_test_split(tmp_path, digits, trained):
    _cc_or_skip()
    _, _, xv, xt, _ = digits
    qnet = quantize_model(trained, xv, thresholds=_thresholds(trained, xv, 40))
    c_file, h_file = _write(tmp_path, qnet)
    xq = qnet.quantize_input(xt)
    skipped = {}
    for mode, div in BUILDS:
        exe = host.build_host(c_file, h_file, tmp_path / "b", mode=mode,
                              division=None if div is None else DIVISIONS.index(div))
        y_c = host.run_host(exe, xq, qnet.num_classes)
        y_p, works = run_fixed(qnet, xq, mode, div)
        assert y_c.shape == (len(xt), 10)
        np.testing.assert_array_equal(y_c, y_p, err_msg=f"{mode} {div}")
        skipped[(mode, div)] = sum(w.executed for w in works.values())
    # the builds really differ: UnIT runs fewer MACs than zero skipping, which runs fewer than dense
    assert skipped[("unit", "exact")] < skipped[("zero_skip", None)] < skipped[("dense", None)]


def test_conv1d_network_bit_exact(tmp_path):
    _cc_or_skip()
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(3, 5, 5, padding=2, stride=2), nn.ReLU(), nn.MaxPool1d(2),
                        nn.Conv1d(5, 4, 3), nn.ReLU(), nn.AvgPool1d(2), nn.Flatten(),
                        nn.Linear(16, 4)).eval()
    x = torch.randn(40, 3, 40)
    qnet = quantize_model(net, x[:20], thresholds={"0": torch.tensor([0.05]),
                                                   "7": torch.tensor([0.02, 0.1])})
    c_file, h_file = _write(tmp_path, qnet, "series")
    xq = qnet.quantize_input(x[20:])
    for mode, div in BUILDS:
        exe = host.build_host(c_file, h_file, tmp_path / "b", mode=mode,
                              division=None if div is None else DIVISIONS.index(div))
        np.testing.assert_array_equal(host.run_host(exe, xq, 4), run_fixed(qnet, xq, mode, div)[0])


def test_fixed_point_accuracy_within_one_point_of_float(digits, trained):
    _, _, xv, xt, yt = digits
    with torch.no_grad():
        acc_float = float((trained(xt).argmax(1) == yt).float().mean())
    qnet = quantize_model(trained, xv)
    y, _ = run_fixed(qnet, qnet.quantize_input(xt), "dense")
    acc_fixed = float((torch.as_tensor(y.argmax(1)) == yt).float().mean())
    assert acc_float > 0.85
    assert abs(acc_fixed - acc_float) <= 0.01


def test_unit_linear_decisions_are_eq1_on_the_integers():
    # one Linear, exact division: MAC (i, j) runs iff |x_i| * |w_ij| > T_w (eq. 1), by explicit loops
    torch.manual_seed(2)
    lin = nn.Linear(6, 3).eval()
    x = torch.randn(5, 6)
    qnet = quantize_model(lin, x, thresholds={"": torch.tensor([0.3])})
    q = qnet.layers[0]
    xq = qnet.quantize_input(x)
    y, works = run_fixed(qnet, xq, "unit", "exact")
    t_w = int(q.threshold[0])
    assert t_w == round(float(torch.tensor(0.3)) * 2 ** (q.f_in + q.f_w))   # T is float32
    kept = 0
    for b in range(5):
        for j in range(3):
            acc = int(q.bias[j])
            for i in range(6):
                xi, wij = int(xq[b, i]), int(q.weight[j, i])
                if xi != 0 and abs(xi) * abs(wij) > t_w:
                    acc += xi * wij
                    kept += 1
            s = q.shift
            v = (acc + (1 << (s - 1))) // (1 << s) if s > 0 else acc
            assert y[b, j] == max(-32768, min(32767, v))
    assert works[""].executed == kept


def test_ratio_approximations_by_hand():
    a = np.array([1, 3, 4, 255, 256, 32768])
    t_w = 1000
    # bitshift: T >> bitlen(a); bitlen 1, 2, 3, 8, 9, 16
    assert bitlen(a).tolist() == [1, 2, 3, 8, 9, 16]
    assert linear_ratio(t_w, a, "bitshift")[0].tolist() == [500, 250, 125, 3, 1, 0]
    # exact: floor division, clamped to 16 bits
    assert linear_ratio(t_w, a, "exact")[0].tolist() == [1000, 333, 250, 3, 3, 0]
    assert linear_ratio(10 ** 7, np.array([1]), "exact")[0].tolist() == [0xFFFF]
    # bitmask (eq. 6): 2**(E_T - E_a), E_T = 9 for 1000; E_a = 0, 1, 2, 7, 8, 15
    assert linear_ratio(t_w, a, "bitmask")[0].tolist() == [512, 256, 128, 4, 2, 0]
    # the shift approximations never exceed the exact ratio (never skip more)
    assert all(linear_ratio(t_w, a, "bitshift")[0] <= linear_ratio(t_w, a, "exact")[0])


def test_requant_rounds_half_up_and_saturates():
    acc = np.array([5, 6, 7, -5, -6, -7, 10 ** 9, -10 ** 9])
    # s = 2: floor((acc + 2) / 4)
    assert requant(acc, 2)[0].tolist() == [1, 2, 2, -1, -1, -2, 32767, -32768]
    assert requant(acc, 2)[1] == 2


def test_unsupported_layer_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 2))
    with pytest.raises(LayerwiseError, match="BatchNorm2d.*fold BatchNorm"):
        quantize_model(net, torch.randn(4, 1, 8, 8))


def test_footprint_counts_weights_tables_and_buffers(digits, trained):
    qnet = quantize_model(trained, digits[2])
    fp = c_codegen.footprint(qnet)
    n_w = sum(q.weight.size for q in qnet.mac_layers())
    n_b = sum(q.bias.size for q in qnet.mac_layers())
    n_conv_w = sum(q.weight.size for q in qnet.mac_layers() if q.kind == "conv")
    assert fp.rom_weights == 2 * n_w + 4 * n_b
    assert fp.rom_tables == 2 * n_conv_w + 4 * 2          # conv T/|w| tables, one T per Linear
    assert fp.ram_activations == 2 * 2 * 6 * 8 * 8        # two buffers of the largest: 6x8x8
    assert fp.input_bytes == 2 * 64


def test_unit_skip_test_at_the_int16_edges(tmp_path):
    # the C tests |z| <= t as (uint16_t)(z + t) <= 2t and skips a whole conv tap / Linear row
    # when t >= 0x8000; check it where the two forms could part (z = -32768, 32767, +-t,
    # +-(t + 1), t == 0x8000, t > 0x8000, a zero weight) against eq. 2-3 by explicit loops
    _cc_or_skip()
    rng = np.random.default_rng(0)
    conv_net = nn.Sequential(nn.Conv2d(1, 1, (1, 4)), nn.Flatten()).eval()
    qc = quantize_model(conv_net, torch.randn(4, 1, 3, 9))
    conv = qc.layers[0]
    ws = [3, -2, 0, 9]
    conv.weight = np.array(ws, np.int16).reshape(1, 1, 1, 4)
    conv.threshold = np.array([65536])              # t = 21845, 0x8000, 0xFFFF (w = 0), 7281
    conv.bias = np.zeros(1, np.int64)
    conv.f_out = qc.layers[1].f_in = qc.layers[1].f_out = conv.f_in + conv.f_w - 4
    edges = [-32768, 32767, 21845, 21846, -21845, -21846, 7281, -7282, 0, 1, -1, 2]
    xc = np.stack([rng.permutation(edges * 3)[:27].reshape(1, 3, 9) for _ in range(6)]).astype(np.int16)

    lin_net = nn.Linear(6, 2).eval()
    ql = quantize_model(lin_net, torch.randn(4, 6))
    lin = ql.layers[0]
    lw = np.array([[300, -300, 5, -5, 1, 0], [-1, 2, -3, 4, 200, -32768]], np.int16)
    lin.weight, lin.bias = lw, np.zeros(2, np.int64)
    lin.threshold = np.array([2 ** 20, 2 ** 20])   # t = 2**20 // |x|: 0x8000 at |x| = 32
    lin.f_out = lin.f_in + lin.f_w - 10
    xl = np.stack([rng.permutation([-32768, 32767, 32, -32, 33, 2, -3495, 3496, 0, 1])[:6]
                   for _ in range(8)]).astype(np.int16)

    kept = {}
    for name, qnet, xq in (("conv", qc, xc), ("lin", ql, xl)):
        c_file, h_file = _write(tmp_path, qnet, name)
        exe = host.build_host(c_file, h_file, tmp_path / name, mode="unit", division=0)
        y_p, works = run_fixed(qnet, xq, "unit", "exact")
        np.testing.assert_array_equal(host.run_host(exe, xq, qnet.num_classes), y_p)
        kept[name] = sum(w.executed for w in works.values())
    n = 0                                            # eq. 3: keep iff w != 0 and |x| > T_w // |w|
    for b in range(len(xc)):
        for r in range(3):
            for p in range(6):
                for k, w in enumerate(ws):
                    n += w != 0 and abs(int(xc[b, 0, r, p + k])) > 65536 // abs(w)
    assert kept["conv"] == n
    n = 0                                            # eq. 2: keep iff x != 0 and |w| > T_w // |x|
    for b in range(len(xl)):
        for i in range(6):
            for j in range(2):
                x = abs(int(xl[b, i]))
                n += x != 0 and abs(int(lw[j, i])) > 2 ** 20 // x
    assert kept["lin"] == n
