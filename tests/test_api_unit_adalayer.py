"""``layerwise.unit.apply`` and ``layerwise.adalayer.apply`` on a model the zoo does not have.

The model is written here, the torchvision way (MobileNetV2 inverted-residual blocks with
``self.use_res_connect``), trained for a few epochs on class-dependent 8x8 patterns, and handed to
each method through a DataLoader: a map-style one with tuple batches, one with dict batches read
through ``input_key`` / ``target_key``, and an iterable-style one.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import layerwise.adalayer as ada
import layerwise.unit as unit
from layerwise.errors import LayerwiseError

CLASSES, SIDE = 4, 8


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1, residual when shapes keep."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True)),
            InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 16, 2, 2), InvertedResidual(16, 16, 1, 2))
        self.classifier = nn.Linear(16, classes)

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _patterns(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c: a fixed random 8x8 template of class c (the same for every split), plus noise."""
    templates = torch.randn(CLASSES, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = templates[y] + 0.8 * torch.randn(n, 1, SIDE, SIDE, generator=g)
    return x, y


class DictSet(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "label": self.y[i]}


class Stream(IterableDataset):
    """An iterable-style dataset (no __len__, no indexing): samples one at a time."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.y)):
            yield self.x[i], self.y[i]


@pytest.fixture(scope="module")
def splits():
    return {"train": _patterns(256, 0), "calib": _patterns(96, 1), "val": _patterns(96, 2)}


@pytest.fixture(scope="module")
def trained(splits):
    torch.manual_seed(0)
    model = TinyMobileNet()
    x, y = splits["train"]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def _loaders(kind: str, splits, batch_size: int = 32):
    """(calib, val, keys) of one loader kind: tuple (map-style), dict (map-style), iterable."""
    def make(split):
        x, y = splits[split]
        if kind == "tuple":
            return DataLoader(TensorDataset(x, y), batch_size=batch_size)
        if kind == "dict":
            return DataLoader(DictSet(x, y), batch_size=batch_size)
        return DataLoader(Stream(x, y), batch_size=batch_size)
    keys = {"input_key": "pixels", "target_key": "label"} if kind == "dict" else {}
    return make("calib"), make("val"), keys


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------------------- UnIT

@pytest.mark.parametrize("kind", ["tuple", "dict", "iterable"])
def test_unit_apply_skips_macs_on_a_user_model(kind, splits, trained):
    calib, val, keys = _loaders(kind, splits)
    before = _state(trained)
    module, report = unit.apply(trained, calib, val_loader=val, sweep_percentiles=(10, 30, 60), max_drop_pt=2.0,
                                **keys)
    # the user's model is untouched; the module is a converted copy
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    assert not unit.unit_layers(trained) and unit.unit_layers(module)
    # every Conv2d / Linear converted, each with a positive threshold
    n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in trained.modules())
    assert len(report.thresholds) == n_layers
    assert all(min(t) > 0 for t in report.thresholds.values())
    # MACs: recount independently on the val split with the module's own counters
    xv, yv = splits["val"]
    unit.reset_counts(module)
    with torch.no_grad():
        module(xv)
    counts = unit.total_counts(module)
    assert report.macs_total == counts.total and report.macs_executed == counts.executed
    assert 0 < report.macs_executed < report.macs_total
    assert report.skipped_fraction > 0.05
    # the choice obeys its rule: the largest grid percentile within 2 pt of dense on val
    assert report.choice is not None and report.percentile in (10, 30, 60)
    assert report.val_accuracy_before == pytest.approx(_accuracy(trained, xv, yv))
    assert report.val_accuracy_after == pytest.approx(_accuracy(module, xv, yv))
    ok = [p for p, a in report.choice.val_curve if a >= report.val_accuracy_before - 0.02 - 1e-12]
    assert report.percentile == (max(ok) if ok else 10)
    d = report.to_dict()
    assert d["percentile"] == report.percentile and d["percentile_choice"]["split"] == "val"


def test_unit_apply_fixed_percentile_without_targets(splits, trained):
    x, _ = splits["calib"]
    module, report = unit.apply(trained, DataLoader(x, batch_size=64), percentile=20)
    assert report.choice is None and report.percentile == 20 and report.val_accuracy_after is None
    assert report.val_source == "calib_loader" and report.samples == len(x)
    with pytest.raises(LayerwiseError, match="val_loader"):
        unit.apply(trained, DataLoader(x, batch_size=64))          # auto needs labels
    with pytest.raises(LayerwiseError, match="input_key"):
        calib, _, _ = _loaders("dict", splits)
        unit.apply(trained, calib, percentile=20)                  # dict batches need keys
