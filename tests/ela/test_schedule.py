"""The staged schedule: KL averaged over a window, skipping at its end, cumulative."""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.ela import ElaConfig, SkipSchedule, find_attention_layers
from layerwise.models import build_model


def _dists(names_lengths, first):
    # layer i of a stage puts weight `first` on its first entry, the rest spread evenly
    out = {}
    for name, n in names_lengths.items():
        if n == 1:
            out[name] = np.array([1.0])
        else:
            out[name] = np.array([first[name]] + [(1 - first[name]) / (n - 1)] * (n - 1))
    return out


def test_window_mean_then_ebqm_then_cumulative():
    model = build_model("resnet20-ela", (3, 8, 8), 10)
    layers = find_attention_layers(model)
    sched = SkipSchedule(layers, ElaConfig(windows=((1, 2), (4, 4)), gamma=0.5), epochs=5)
    assert [sched.captures(e) for e in range(1, 6)] == [True, True, False, True, False]
    lengths = {"layer1.0": 1, "layer1.1": 2, "layer2.0": 1, "layer2.1": 2, "layer3.0": 1, "layer3.1": 2}
    # KL(second layer) = -log(first weight) (+ ~0): the higher the weight on the first layer, the lower the KL
    e1 = _dists(lengths, {"layer1.1": 0.9, "layer2.1": 0.5, "layer3.1": 0.2})
    e2 = _dists(lengths, {"layer1.1": 0.7, "layer2.1": 0.5, "layer3.1": 0.2})
    assert sched.end_epoch(1, e1) is None  # inside the window: nothing yet
    ev = sched.end_epoch(2, e2)
    assert ev.kl["layer1.1"] == pytest.approx(np.mean([-np.log(0.9), -np.log(0.7)]), abs=1e-6)
    assert ev.skipped == ["layer1.1"] and sched.skipped == ["layer1.1"]
    assert sched.end_epoch(3, e2) is None  # outside any window
    ev2 = sched.end_epoch(4, {k: v for k, v in e2.items() if k != "layer1.1"})
    assert set(ev2.kl) == {"layer2.1", "layer3.1"}  # the skipped layer is no longer a candidate
    assert ev2.skipped == ["layer2.1"] and ev2.skipped_total == 2
    assert sched.skipped == ["layer1.1", "layer2.1"]
    assert [b.skip_attention for b in (l.block for l in layers)] == [False, True, False, True, False, False]
