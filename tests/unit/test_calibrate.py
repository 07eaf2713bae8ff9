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
    with pytest.raises(LayerwiseError, match="'unused' saw no MAC.*pass a validation split"):
        calibrate(branchy, [torch.randn(4, 3)])

    def broken():
        yield torch.randn(2, 1, 8, 8)
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        calibrate(model, broken())
    assert all(m.enabled and not m._forward_pre_hooks for _, m in unit_layers(model))


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
