import torch

from layerwise.measure import PeakMemory, peak_memory

MB = 1_000_000


def _alloc_200mb(hold_s=0.0):
    x = torch.ones(50_000_000)  # 200 MB of float32, every page touched
    if hold_s:
        import time

        time.sleep(hold_s)
    return float(x[0])


def test_peak_memory_vmhwm_sees_200mb():
    pm = peak_memory(_alloc_200mb)
    assert isinstance(pm, PeakMemory)
    assert pm.delta_bytes >= 190 * MB
    assert pm.bytes >= pm.baseline_bytes + 190 * MB
    assert "VmHWM" in pm.source and pm.scope == "process"


def test_peak_memory_sampled_fallback(tmp_path):
    # the peak is held 0.3 s: the 1 ms sampler thread must get a core while it lasts (with 50 ms, a
    # run beside two busy processes on 2 cores saw 176 of the 200 MB)
    pm = peak_memory(_alloc_200mb, 0.3, proc_root=tmp_path / "no-proc")  # no /proc: falls back
    assert pm.delta_bytes >= 190 * MB
    assert "psutil" in pm.source
    forced = peak_memory(_alloc_200mb, 0.3, method="sampled")
    assert "psutil" in forced.source and forced.delta_bytes >= 190 * MB


def test_peak_memory_small_call_small_delta():
    pm = peak_memory(lambda: torch.ones(10).sum())
    assert pm.delta_bytes < 50 * MB
    assert set(pm.to_json()) == {"bytes", "baseline_bytes", "delta_bytes", "source", "scope"}
