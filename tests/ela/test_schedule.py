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
    # two candidates, gamma 0.5: S_gamma holds one value, no spread: nothing more is removed
    assert ev2.skipped == [] and ev2.rule == "no-spread" and ev2.skipped_total == 1
    assert sched.skipped == ["layer1.1"]
    assert [b.skip_attention for b in (l.block for l in layers)] == [False, True, False, False, False, False]
    # both KLs are recorded; here every candidate has one predecessor (t = 1), so they differ by log 2
    assert ev.kl_norm == "uniform"
    for name, value in ev.kl.items():
        assert ev.kl_uniform[name] == pytest.approx(value / (np.log(2) + 1e-8 * np.log(2e-8)))


def test_the_uniform_norm_removes_an_early_layer_that_the_paper_kl_keeps():
    """Stage of 6 layers: every layer attends uniformly except layer 3, which repeats layer 2 closely.
    The paper's KL is smallest at the LAST position (uniform attention one layer apart at t = 5);
    normalised, the redundant layer 3 has the smallest value."""
    model = build_model("resnet56-ela", (3, 8, 8), 10)
    layers = find_attention_layers(model)
    dists = {}
    for layer in layers:
        n = layer.position + 1
        dists[layer.name] = np.full(n, 1.0 / n)
    # closer to layer1.2's [1/3, 1/3, 1/3] than uniform attention over 4 layers: KL 0.21 against 0.29
    dists["layer1.3"] = np.array([0.27, 0.27, 0.27, 0.19])
    kw = dict(windows=((1, 1),), gamma=0.3, mu=0.3)
    paper = SkipSchedule(layers, ElaConfig(kl_norm="paper", **kw), epochs=1).end_epoch(1, dists)
    assert {"layer1.5", "layer2.5", "layer3.5"} <= set(paper.skipped)  # uniform attention, last position
    for layer in layers:
        layer.block.skip_attention = False
    uniform = SkipSchedule(layers, ElaConfig(kl_norm="uniform", **kw), epochs=1).end_epoch(1, dists)
    assert uniform.skipped == ["layer1.3"]
