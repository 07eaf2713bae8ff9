"""Timing of the compiled kernels: per-thread CPU time first, wall time beside it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerwise.unit import convert, unit_layers
from layerwise.unit import kernel_timing


class _FakeClocks:
    """A thread clock that advances 2 us per reading and a wall clock that advances 5 us."""

    def __init__(self):
        self.thread, self.wall = 0, 0

    def thread_time_ns(self):
        self.thread += 2000
        return self.thread

    def perf_counter_ns(self):
        self.wall += 5000
        return self.wall


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    convert(m)
    for _, layer in unit_layers(m):
        layer.set_threshold(0.05)
    return m


def test_thread_time_is_the_primary_figure_and_wall_time_is_beside_it(monkeypatch):
    m, x = _model(), torch.randn(1, 6)
    kernel_timing.time_model_kernels(m, x, reps=2, warmup=1)         # compile outside the fake
    monkeypatch.setattr(kernel_timing, "time", _FakeClocks())
    t = kernel_timing.time_model_kernels(m, x, reps=7, warmup=1)
    names = {"dense-kernel", "skip-exact", "skip-bitshift", "skip-binary_tree", "skip-bitmask"}
    assert set(t.median_us) == set(t.wall_median_us) == names
    # one reading before and one after each timed call: 2 us of thread time, 5 us of wall time
    assert all(v == pytest.approx(2.0) for v in t.median_us.values())
    assert all(v == pytest.approx(5.0) for v in t.wall_median_us.values())
    assert all(v == 0.0 for v in (*t.iqr_us.values(), *t.wall_iqr_us.values()))
    j = t.to_json()
    assert j["clock"] == "time.thread_time_ns" and j["wall_clock"] == "time.perf_counter_ns"
    assert j["wall_median_us"] == t.wall_median_us and j["wall_iqr_us"] == t.wall_iqr_us
    assert j["skip_vs_dense"] == pytest.approx(t.median_us["skip-exact"] / t.median_us["dense-kernel"])
    assert j["wall_skip_vs_dense"] == pytest.approx(1.0)


def test_real_clocks_thread_time_never_exceeds_wall_time_by_much():
    t = kernel_timing.time_model_kernels(_model(), torch.randn(1, 6), reps=15, warmup=2)
    for k in t.median_us:
        assert 0 < t.median_us[k] <= t.wall_median_us[k] + 50.0      # us; clock granularity
    assert t.skip_vs_dense == pytest.approx(t.median_us["skip-exact"] / t.median_us["dense-kernel"])
