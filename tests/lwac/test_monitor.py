import logging

import pytest
import torch

from layerwise.lwac import (ResourceMonitor, SharedBuffer, SimulatedMonitor, attach, cpu_contention,
                            draining_battery, merge_traces)


def test_simulated_monitor_replays_the_trace_and_holds_the_last_entry():
    buf = SharedBuffer(2)
    mon = SimulatedMonitor(buf, merge_traces(draining_battery(3, 90, 30), cpu_contention(3, 1, 2, 2.0)))
    assert buf.state.battery_percent == 90 and buf.state.latency_scale == 1.0
    mon.on_inference(1)
    assert buf.state.battery_percent == 60 and buf.state.latency_scale == 2.0
    mon.on_inference(10)
    assert buf.state.battery_percent == 30 and buf.state.latency_scale == 1.0


def test_draining_battery_raises_the_pressure(resnet, x16):
    lw = attach(resnet, x16, latency_n=1)
    lw.set_lambda(1.0)
    full = list(lw.state.pressure)
    lw.use_monitor(SimulatedMonitor(lw.buffer, draining_battery(2, 100, 20)))
    with torch.no_grad():
        lw(x16)  # step 1: battery 20 %, unplugged
    assert lw.resource_multiplier() == pytest.approx(1.8)
    assert lw.state.pressure == pytest.approx([1.8 * p for p in full])


def test_unit_latency_moving_average():
    buf = SharedBuffer(1, ema=0.5)
    buf.record_unit_latency(0, 1.0)
    buf.record_unit_latency(0, 3.0)
    assert buf.latencies() == [2.0]


def test_a_counter_that_cannot_be_read_falls_back_and_says_so(caplog):
    def broken():
        raise PermissionError("no access")

    mon = ResourceMonitor(SharedBuffer(1), readers={"battery": broken, "cpu": broken})
    with caplog.at_level(logging.WARNING):
        state = mon.sample_once()
        mon.sample_once()
    assert state.battery_percent is None and state.cpu_percent is None
    assert any("battery: cannot read (PermissionError: no access); battery pressure off" in n for n in state.notes)
    assert sum("cpu: cannot read" in r.message for r in caplog.records) == 1  # warned once
    assert state.rss_bytes > 0


def test_real_monitor_thread_publishes_and_energy_says_its_source():
    buf = SharedBuffer(1)
    with ResourceMonitor(buf, interval_s=0.01) as mon:
        sum(i * i for i in range(200000))
    s = buf.state
    assert s.energy_j is not None and s.energy_source.startswith(("rapl:", "estimate:"))
    assert s.energy_estimated == s.energy_source.startswith("estimate:")
    assert mon._thread is None
