import math
import sys
import types
from collections import namedtuple

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerwise.errors import LayerwiseError
from layerwise.measure import DEFAULT_WATTS_PER_CORE, Energy, RaplDomain, battery, counter_delta, measure_energy


def _busy():
    s = 0
    for i in range(20_000):
        s += i * i
    return s


def test_estimate_when_no_counter(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYERWISE_WATTS_PER_CORE", raising=False)
    e = measure_energy(_busy, n=5, min_window_s=0.2, powercap_root=tmp_path / "none")
    assert isinstance(e, Energy)
    assert e.estimated is True
    assert e.source == f"estimate:process_cpu_time*W_per_core(W={DEFAULT_WATTS_PER_CORE:g})"
    assert e.value_j > 0 and math.isfinite(e.value_j)
    d = e.details
    assert d["calls"] >= 5 and d["window_s"] >= 0.2
    assert e.value_j * d["calls"] == pytest.approx(d["cpu_s"] * DEFAULT_WATTS_PER_CORE)
    assert e.to_json()["estimated"] is True and e.to_json()["value"] == e.value_j


def test_this_machine_default_root_is_estimated_or_real():
    e = measure_energy(_busy, n=3, min_window_s=0.1)
    assert e.value_j > 0 and math.isfinite(e.value_j)
    assert e.estimated == e.source.startswith("estimate:")


def test_watts_per_core_from_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_WATTS_PER_CORE", "7")
    e = measure_energy(_busy, n=2, min_window_s=0.05, powercap_root=tmp_path)
    assert "W=7" in e.source and e.details["watts_per_core_from"].startswith("env")
    e = measure_energy(_busy, n=2, min_window_s=0.05, powercap_root=tmp_path, watts_per_core=3.5)
    assert "W=3.5" in e.source
    monkeypatch.setenv("LAYERWISE_WATTS_PER_CORE", "lots")
    with pytest.raises(LayerwiseError, match="LAYERWISE_WATTS_PER_CORE"):
        measure_energy(_busy, n=1, min_window_s=0, powercap_root=tmp_path)


def _domain(root, dirname, name, energy_uj, max_uj):
    d = root / dirname
    d.mkdir()
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_rapl_with_wraparound_exact(tmp_path):
    p0 = _domain(tmp_path, "intel-rapl:0", "package-0", 900_000, 1_000_000)
    p1 = _domain(tmp_path, "intel-rapl:1", "package-1", 5_000, 10**12)
    core = _domain(tmp_path, "intel-rapl:0:0", "core", 0, 10**12)  # inside package-0: not summed
    psys = _domain(tmp_path, "intel-rapl:2", "psys", 0, 10**12)  # overlaps packages: not summed

    def step():  # each call: package-0 +300000 uJ (wraps at 1e6), package-1 +100 uJ
        v0 = int((p0 / "energy_uj").read_text()) + 300_000
        (p0 / "energy_uj").write_text(str(v0 % 1_000_000 if v0 > 1_000_000 else v0))
        (p1 / "energy_uj").write_text(str(int((p1 / "energy_uj").read_text()) + 100))
        for d in (core, psys):
            (d / "energy_uj").write_text(str(int((d / "energy_uj").read_text()) + 10**9))

    e = measure_energy(step, n=3, min_window_s=0, powercap_root=tmp_path)
    # package-0: 900000 -> 200000 -> 500000 -> 800000 (wrapped): 1e6 - 9e5 + 8e5 = 900000 uJ
    # package-1: 5000 -> 5300: 300 uJ; total 900300 uJ = 0.9003 J over 3 calls
    assert (p0 / "energy_uj").read_text() == "800000"
    assert e.estimated is False
    assert e.source == "rapl:package-0+package-1"
    assert e.details["calls"] == 3
    assert e.details["domains"] == {"package-0": 0.9, "package-1": 0.0003}
    assert e.details["total_j"] == 900_300 / 1e6
    assert e.value_j == 900_300 / 1e6 / 3


def test_rapl_unreadable_falls_back(tmp_path, monkeypatch):
    _domain(tmp_path, "intel-rapl:0", "package-0", 0, 100)

    def denied(self):  # what a non-root user gets on most kernels
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(RaplDomain, "read_uj", denied)
    e = measure_energy(_busy, n=1, min_window_s=0, powercap_root=tmp_path)
    assert e.estimated and "not readable" in e.details["why_estimated"]


@given(max_range=st.integers(1, 2**40), data=st.data())
def test_counter_delta_recovers_increase_across_one_wrap(max_range, data):
    start = data.draw(st.integers(0, max_range))
    inc = data.draw(st.integers(0, max_range - 1))
    end = start + inc if start + inc <= max_range else start + inc - max_range
    assert counter_delta(start, end, max_range) == inc


def test_nvml_path_with_fake_pynvml(monkeypatch):
    calls = {"n": 0}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: ("gpu", i),
        nvmlDeviceGetTotalEnergyConsumption=lambda h: 1_000 + 2_500 * calls["n"],  # mJ
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)

    def fn():
        calls["n"] += 1

    e = measure_energy(fn, n=4, device="cuda:0", min_window_s=0)
    assert e.estimated is False and e.source.startswith("nvml:")
    assert e.details["calls"] == 4 and e.value_j == 2.5


def test_battery(monkeypatch):
    B = namedtuple("B", "percent secsleft power_plugged")
    monkeypatch.setattr(psutil, "sensors_battery", lambda: B(55.0, psutil.POWER_TIME_UNLIMITED, True))
    b = battery()
    assert (b.percent, b.plugged, b.secs_left) == (55.0, True, None)
    monkeypatch.setattr(psutil, "sensors_battery", lambda: B(20.0, 3600, False))
    assert battery().to_json() == {"percent": 20.0, "plugged": False, "secs_left": 3600,
                                   "source": "psutil.sensors_battery"}
    monkeypatch.setattr(psutil, "sensors_battery", lambda: None)
    assert battery() is None
