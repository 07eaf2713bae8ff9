import time

import pytest
import torch
import torch.nn as nn

from layerwise.errors import LayerwiseError
from layerwise.measure import Latency, compare_latency, measure_latency, per_layer_latency, speedup


class Sleep(nn.Module):
    def __init__(self, seconds, log=None, tag=""):
        super().__init__()
        self.seconds, self.log, self.tag = seconds, log, tag

    def forward(self, x):
        if self.log is not None:
            self.log.append(self.tag)
        if self.seconds:
            time.sleep(self.seconds)
        return x


class Shapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        return x * 2


def test_measure_latency_reports_how_and_restores_threads():
    before = torch.get_num_threads()
    lat = measure_latency(nn.Linear(16, 16), torch.randn(1, 16), n=20, warmup=3, threads=1)
    assert isinstance(lat, Latency)
    assert (lat.n, lat.batch, lat.threads, lat.warmup) == (20, 1, 1, 3)
    assert lat.min_ms <= lat.median_ms <= lat.max_ms and lat.iqr_ms >= 0
    assert len(lat.samples_ms) == 20
    assert torch.get_num_threads() == before
    assert set(lat.to_json()) == {"median", "iqr", "n", "batch", "threads", "warmup", "source",
                                  "thread_cpu"}


def test_thread_cpu_time_leaves_out_time_the_thread_did_not_run():
    # a call that sleeps 20 ms: wall time sees the sleep, the thread's CPU time does not
    import time

    lat = measure_latency(lambda x: time.sleep(0.02), torch.zeros(1), n=5, warmup=0, threads=1)
    assert lat.median_ms >= 19.0
    assert lat.cpu_median_ms is not None and lat.cpu_median_ms < 5.0
    assert len(lat.cpu_samples_ms) == 5
    assert lat.to_json()["thread_cpu"]["median"] == lat.cpu_median_ms


def test_thread_cpu_time_is_not_reported_with_several_threads():
    # the workers' CPU time is invisible to time.thread_time, so the figure would mislead
    lat = measure_latency(nn.Linear(8, 8), torch.randn(1, 8), n=3, warmup=0, threads=2)
    assert lat.cpu_median_ms is None and "thread_cpu" not in lat.to_json()


def test_measure_latency_batch_repeats_example_and_warms_up():
    m = Shapes()
    lat = measure_latency(m, torch.randn(1, 3), n=5, warmup=2, batch=8)
    assert lat.batch == 8
    assert m.seen == [(8, 3)] * 7  # warm-up on the same shape, then the timed calls


def test_measure_latency_restores_threads_after_error():
    before = torch.get_num_threads()

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        measure_latency(boom, torch.randn(1), n=2, warmup=0, threads=1)
    assert torch.get_num_threads() == before


def test_compare_latency_interleaves_and_orders():
    log = []
    fast, slow = Sleep(0, log, "fast"), Sleep(0.002, log, "slow")
    x = torch.randn(1, 4)
    res = compare_latency({"fast": (fast, x), "slow": (slow, x)}, n=20, warmup=2, threads=1)
    assert set(res) == {"fast", "slow"}
    assert res["slow"].median_ms > res["fast"].median_ms + 1.5
    assert res["slow"].n == res["fast"].n == 20
    assert "interleaved" in res["slow"].source
    timed = log[4:]  # after 2 warm-up rounds
    assert len(timed) == 40
    # each round runs both, order rotated: round r starts with variant r % 2
    assert [timed[2 * r] for r in range(20)] == ["fast", "slow"] * 10
    assert speedup(res["slow"], res["fast"]) > 1.0


def test_speedup_refuses_mismatched_measurements():
    a = measure_latency(nn.Identity(), torch.randn(1, 2), n=3, warmup=0, threads=1)
    b = measure_latency(nn.Identity(), torch.randn(1, 2), n=3, warmup=0, threads=2)
    with pytest.raises(LayerwiseError, match="compare_latency"):
        speedup(a, b)


def test_per_layer_latency_hooks_time_each_leaf_and_are_removed():
    model = nn.Sequential(nn.Linear(8, 8), Sleep(0.001), nn.ReLU())
    res = per_layer_latency(model, torch.randn(1, 8), n=10, warmup=2, threads=1)
    assert set(res) == {"0", "1", "2"}
    assert res["1"].median_ms >= 1.0
    assert res["1"].median_ms > res["0"].median_ms
    assert all(r.n == 10 and "approximate" in r.source for r in res.values())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    only = per_layer_latency(model, torch.randn(1, 8), ["0"], n=3, warmup=0)
    assert set(only) == {"0"}
    with pytest.raises(LayerwiseError, match="no module named 'nope'"):
        per_layer_latency(model, torch.randn(1, 8), ["nope"], n=1)
