"""Percentile calibration of UnIT thresholds (paper section 2.1) and percentile sweeps."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from layerwise.errors import LayerwiseError
from layerwise.unit import (
    calibrate,
    collect_products,
    convert,
    reset_counts,
    set_enabled,
    sweep,
    total_counts,
    unit_layers,
)


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 6 * 6, 6))
    convert(model)
    return model


def _loader(n=40, batch=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def _skip_fraction_layer_alone(model, name, loader):
    """Threshold skips / nonzero-pair MACs of one layer with UnIT on that layer only, so it sees
    exactly the (dense) inputs it was calibrated on."""
    layers = dict(unit_layers(model))
    set_enabled(model, False)
    layers[name].enabled = True
    reset_counts(model)
    with torch.no_grad():
        for x, _ in loader:
            model(x)
    c = layers[name].counts
    set_enabled(model, True)
    return c.threshold / c.nonzero_pairs


@pytest.mark.parametrize("percentile,groups,max_samples", [
    (20.0, 1, 2_000_000), (60.0, 2, 2_000_000), (20.0, 1, 5000),
])
def test_percentile_sets_skip_fraction(percentile, groups, max_samples):
    model, loader = _model(), _loader()
    thresholds = calibrate(model, loader, percentile=percentile, groups=groups,
                           max_samples_per_layer=max_samples)
    assert list(thresholds) == ["0", "2", "5"]
    for name, layer in unit_layers(model):
        assert layer.unit_threshold.shape == (groups,)
        assert bool((layer.unit_threshold > 0).all())
        torch.testing.assert_close(layer.unit_threshold, thresholds[name])
        frac = _skip_fraction_layer_alone(model, name, loader)
        assert abs(frac - percentile / 100) < 0.02, (name, frac)
        assert not layer._forward_pre_hooks               # calibration hooks removed
    if groups == 2:  # group thresholds differ from each other
        assert any(not torch.equal(t[0], t[1]) for t in thresholds.values())
    # the whole model with every layer pruned skips a comparable share
    reset_counts(model)
    with torch.no_grad():
        for x, _ in loader:
            model(x)
    tot = total_counts(model)
    assert 0.5 * percentile / 100 < tot.threshold / tot.nonzero_pairs < 1.5 * percentile / 100


def test_sampling_is_seeded():
    a = calibrate(_model(), _loader(), max_samples_per_layer=3000, seed=0)
    b = calibrate(_model(), _loader(), max_samples_per_layer=3000, seed=0)
    c = calibrate(_model(), _loader(), max_samples_per_layer=3000, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_thresholds_persist_through_state_dict():
    model, loader = _model(), _loader()
    thresholds = calibrate(model, loader, percentile=30.0, groups=2)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = _model()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    for name, layer in unit_layers(fresh):
        torch.testing.assert_close(layer.unit_threshold, thresholds[name])
    x = next(iter(loader))[0]
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))
    assert total_counts(fresh) == total_counts(model)
    assert total_counts(fresh).threshold > 0


def test_calibration_restores_flags_and_mode():
    model, loader = _model(), _loader()
    model.train()
    layers = unit_layers(model)
    layers[1][1].enabled = False
    calibrate(model, loader)
    assert model.training
    assert [m.enabled for _, m in layers] == [True, False, True]
    assert total_counts(model).total == 0                 # dense calibration counts nothing


def test_calibration_errors():
    model = _model()
    for p in (0, 100, -5, 150):
        with pytest.raises(LayerwiseError, match="strictly between 0 and 100"):
            calibrate(model, _loader(), percentile=p)
    with pytest.raises(LayerwiseError, match="pass a validation split with at least 1 sample"):
        calibrate(model, [])
    with pytest.raises(LayerwiseError, match="convert"):
        calibrate(nn.Sequential(nn.Linear(2, 2)), [torch.randn(1, 2)])
    with pytest.raises(LayerwiseError, match="do not divide"):
        calibrate(model, _loader(), groups=5)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    branchy = Branchy()
    convert(branchy)
    with pytest.raises(LayerwiseError, match="'unused' was never reached.*pass a validation split"):
        calibrate(branchy, [torch.randn(4, 3)])

    def broken():
        yield torch.randn(2, 1, 8, 8)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        calibrate(model, broken())
    assert all(m.enabled and not m._forward_pre_hooks for _, m in unit_layers(model))


def test_a_layer_reached_only_by_zeros_gets_threshold_zero_and_stays_exact(caplog):
    """A layer whose every calibration input is zero (here: a ReLU after a bias of -100, as an
    upstream FATReLU that zeroed everything leaves it) has no nonzero product to take a percentile
    of: it gets threshold 0, so UnIT skips only its zero MACs and its output is the dense one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)        # ReLU output: all zeros for inputs of this scale
    x = torch.randn(16, 5)
    dense = model(x)
    convert(model)
    with caplog.at_level("WARNING"):
        thresholds = calibrate(model, [x], percentile=50)
    assert thresholds["2"].tolist() == [0.0]
    assert thresholds["0"].item() > 0                       # the first layer is calibrated as usual
    assert "'2' saw only zero inputs" in caplog.text
    layers = dict(unit_layers(model))
    set_enabled(model, False)
    layers["2"].enabled = True
    reset_counts(model)
    with torch.no_grad():
        assert torch.equal(model(x), dense)
    c = layers["2"].counts
    assert c.threshold == 0 and c.nonzero_pairs == 0 and c.executed == 0


def test_sweep_points():
    model, loader = _model(), _loader()
    with torch.no_grad():
        dense = torch.cat([model(x) for x, _ in loader]).argmax(1)
    reset_counts(model)

    def agreement(m):  # accuracy against the dense model's predictions
        with torch.no_grad():
            pred = torch.cat([m(x) for x, _ in loader]).argmax(1)
        return float((pred == dense).float().mean())

    points = sweep(model, loader, agreement, [10.0, 50.0, 90.0])
    assert [p.percentile for p in points] == [10.0, 50.0, 90.0]
    assert all(p.macs_total == points[0].macs_total > 0 for p in points)
    executed = [p.macs_executed for p in points]
    assert executed[0] > executed[1] > executed[2]
    assert points[0].accuracy >= points[2].accuracy and points[0].accuracy > 0.5
    assert set(points[0].per_layer) == {"0", "2", "5"}
    # the model is left calibrated at the last percentile, as calibrate would set it
    last = {n: m.unit_threshold.clone() for n, m in unit_layers(model)}
    assert {k: v.tolist() for k, v in last.items()} == points[-1].thresholds
    again = calibrate(_model(), loader, percentile=90.0)
    assert all(torch.equal(again[k], last[k]) for k in last)
    assert points[1].to_json()["per_layer"]["5"]["executed"] == points[1].per_layer["5"].executed
    with pytest.raises(LayerwiseError, match="at least one percentile"):
        sweep(model, loader, agreement, [])


def _products_by_hand(model, x):
    """|x*w| of every MAC with both operands nonzero, per UnIT layer and output unit, by explicit
    loops over the dense forward pass (Conv2d 1->4 3x3 no padding, ReLU, Flatten, Linear)."""
    conv, lin = model[0], model[3]
    wc, wl = conv.weight.detach(), lin.weight.detach()
    with torch.no_grad():
        h = torch.relu(torch.nn.functional.conv2d(x, wc, conv.bias)).flatten(1)
    per_out = {"0": [[] for _ in range(wc.shape[0])], "3": [[] for _ in range(wl.shape[0])]}
    for b in range(x.shape[0]):
        for o in range(wc.shape[0]):
            for i in range(x.shape[2] - 2):
                for j in range(x.shape[3] - 2):
                    for ki in range(3):
                        for kj in range(3):
                            a, w = float(x[b, 0, i + ki, j + kj]), float(wc[o, 0, ki, kj])
                            if a != 0 and w != 0:
                                per_out["0"][o].append(abs(a * w))
        for o in range(wl.shape[0]):
            for i in range(wl.shape[1]):
                a, w = float(h[b, i]), float(wl[o, i])
                if a != 0 and w != 0:
                    per_out["3"][o].append(abs(a * w))
    return per_out


def test_calibrate_keeps_the_groups_convert_gave_each_layer(caplog):
    import logging

    import numpy as np

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 6))
    convert(model, groups=2)
    x = torch.relu(torch.randn(5, 1, 5, 5, generator=torch.Generator().manual_seed(4)))
    loader = DataLoader(TensorDataset(x, torch.zeros(5, dtype=torch.long)), batch_size=2)
    products = _products_by_hand(model, x)
    thresholds = calibrate(model, loader, percentile=30.0)          # groups not given
    for name, layer in unit_layers(model):
        assert layer.threshold_groups == 2, name
        per_o = products[name]
        half = len(per_o) // 2
        expected = [np.percentile(sum(per_o[:half], []), 30.0),
                    np.percentile(sum(per_o[half:], []), 30.0)]
        assert thresholds[name].tolist() == pytest.approx(expected, rel=1e-5), name
    # sweep keeps them too
    pts = sweep(model, loader, lambda m: 0.0, [10.0, 50.0])
    assert all(len(v) == 2 for p in pts for v in p.thresholds.values())
    assert pts[1].thresholds["3"] == pytest.approx(
        [np.percentile(sum(products["3"][:3], []), 50.0),
         np.percentile(sum(products["3"][3:], []), 50.0)], rel=1e-5)
    # an explicit group count re-groups every layer, and says so
    with caplog.at_level(logging.INFO, logger="layerwise.unit.calibrate"):
        thresholds = calibrate(model, loader, percentile=30.0, groups=1)
    assert all(layer.threshold_groups == 1 for _, layer in unit_layers(model))
    assert thresholds["3"].tolist() == pytest.approx([np.percentile(sum(products["3"], []), 30.0)],
                                                     rel=1e-5)
    assert "re-group" in caplog.text and "2 -> 1" in caplog.text


@pytest.mark.parametrize("percentile", [10.0, 35.0, 70.0])
def test_products_collected_once_give_the_thresholds_of_a_fresh_collection(percentile):
    model, loader = _model(), _loader()
    products = collect_products(model, loader, max_samples_per_layer=500)
    for per_group in products.values():           # sorted ascending, as documented
        assert all(bool((v[1:] >= v[:-1]).all()) for v in per_group)
    fresh = calibrate(_model(), loader, percentile=percentile, max_samples_per_layer=500)
    reused = calibrate(model, loader, percentile=percentile, products=products)
    assert all(torch.equal(fresh[k], reused[k]) for k in fresh)
    # the percentile by hand: numpy's linear interpolation between order statistics of the sample
    v = products["2"][0].double()
    pos = percentile / 100 * (v.numel() - 1)
    lo = int(pos)
    expected = v[lo] + (v[lo + 1] - v[lo]) * (pos - lo)
    assert float(reused["2"][0]) == pytest.approx(float(expected), rel=1e-6)


def test_products_of_another_model_are_refused():
    model, loader = _model(), _loader()
    products = collect_products(model, loader)
    other = nn.Sequential(nn.Linear(4, 3))
    convert(other)
    with pytest.raises(LayerwiseError, match="does not fit this model"):
        calibrate(other, loader, products=products)
    with pytest.raises(LayerwiseError, match="wrong threshold groups"):
        calibrate(model, loader, groups=2, products=products)
    with pytest.raises(LayerwiseError, match="does not fit this model"):
        sweep(other, loader, lambda m: 0.0, [20.0], products=products)
