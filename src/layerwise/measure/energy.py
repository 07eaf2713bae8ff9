"""Energy per call, from a real counter when one is readable, otherwise a flagged estimate.

In order:

1. ``device`` cuda and NVML readable (``pynvml`` installed, GPU supports it):
   ``nvmlDeviceGetTotalEnergyConsumption`` (mJ, whole board) before and after the window. NVML
   updates every 20-100 ms, so the window is at least ``min_window_s`` (default 1 s on cuda).
   The device index is passed to NVML as is (NVML ignores ``CUDA_VISIBLE_DEVICES``).
2. cpu and Linux RAPL readable: the package domains
   ``<powercap_root>/intel-rapl:N/energy_uj`` (µJ; whole CPU socket, every process on it, idle
   power included), wraparound handled with ``max_energy_range_uj``. On most kernels these
   files are readable by root only.
3. Neither: an ESTIMATE, ``estimated=True``: the CPU time this process consumed during the calls
   (``psutil.Process().cpu_times()`` user + system, all threads) times an assumed active power
   per busy core, ``DEFAULT_WATTS_PER_CORE`` = 10 W unless the ``watts_per_core`` argument or the
   ``LAYERWISE_WATTS_PER_CORE`` environment variable says otherwise. The 10 W assumption: a
   desktop/server x86 package under full load spread over its cores (65 W / 6 cores ≈ 11 W,
   125 W / 12 cores ≈ 10 W; a laptop core is nearer 3-5 W). It ignores idle/uncore power,
   memory and GPU, and frequency differences: use it to compare variants on one machine, never
   as an absolute figure.

The calls run ``n`` times and then on until the window lasts ``min_window_s``; the value is the
energy of the window divided by the number of calls. Nothing here returns a bare number.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from ..errors import LayerwiseError
from ._util import synchronize

DEFAULT_WATTS_PER_CORE = 10.0
"""Assumed power (W) of one fully busy CPU core, used only by the estimate (see module doc)."""
WATTS_PER_CORE_ENV = "LAYERWISE_WATTS_PER_CORE"
POWERCAP_ROOT = "/sys/class/powercap"

_PACKAGE_DIR = re.compile(r"^intel-rapl:\d+$")


@dataclass(frozen=True)
class Energy:
    """Energy of one call in joules, where it came from, and whether it is an estimate."""

    value_j: float
    source: str
    estimated: bool
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"value": self.value_j, "source": self.source, "estimated": self.estimated,
                "details": dict(self.details)}


@dataclass(frozen=True)
class RaplDomain:
    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


@dataclass(frozen=True)
class BatteryState:
    percent: float
    plugged: bool | None
    secs_left: int | None
    source: str = "psutil.sensors_battery"

    def to_json(self) -> dict:
        return {"percent": self.percent, "plugged": self.plugged, "secs_left": self.secs_left,
                "source": self.source}


def counter_delta(start: int, end: int, max_range: int) -> int:
    """Increase of a RAPL counter that wraps to 0 after ``max_range`` (at most one wrap).

    ``end >= start``: ``end - start``; otherwise the counter wrapped: ``max_range - start + end``
    (the convention of the kernel's powercap users; ``max_range`` and 0 are the same reading).
    """
    if end >= start:
        return end - start
    return max_range - start + end


def rapl_package_domains(powercap_root: str | os.PathLike = POWERCAP_ROOT) -> list[RaplDomain]:
    """The readable RAPL package domains under ``powercap_root`` (sub-domains such as core/dram
    are inside the package figure and ``psys`` overlaps it, so only packages are summed)."""
    root = Path(powercap_root)
    found = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for d in entries:
        if not _PACKAGE_DIR.match(d.name):
            continue
        try:
            name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
            if not name.startswith("package") and (d / "name").exists():
                continue
            max_range = int((d / "max_energy_range_uj").read_text().strip())
            dom = RaplDomain(path=d, name=name, max_energy_range_uj=max_range)
            dom.read_uj()  # permission check: root-only on most kernels
        except (OSError, ValueError):
            continue
        found.append(dom)
    return found


def _rapl_present_but_unreadable(powercap_root: str | os.PathLike) -> bool:
    try:
        return any(_PACKAGE_DIR.match(d.name) for d in Path(powercap_root).iterdir())
    except OSError:
        return False


def resolve_watts_per_core(watts_per_core: float | None = None) -> tuple[float, str]:
    """The assumed W per busy core and where it came from (argument, env var or default)."""
    if watts_per_core is not None:
        w, origin = float(watts_per_core), "argument"
    elif os.environ.get(WATTS_PER_CORE_ENV):
        raw = os.environ[WATTS_PER_CORE_ENV]
        try:
            w = float(raw)
        except ValueError:
            raise LayerwiseError(f"{WATTS_PER_CORE_ENV}={raw!r} is not a number of watts, e.g. 10") from None
        origin = f"env {WATTS_PER_CORE_ENV}"
    else:
        w, origin = DEFAULT_WATTS_PER_CORE, "DEFAULT_WATTS_PER_CORE"
    if not (math.isfinite(w) and w > 0):
        raise LayerwiseError(f"watts per core must be a positive number, got {w}")
    return w, origin


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _run_window(fn: Callable[[], Any], n: int, min_window_s: float, device: torch.device) -> tuple[int, float]:
    """Call ``fn`` at least ``n`` times and until ``min_window_s`` has passed."""
    calls = 0
    synchronize(device)
    t0 = time.perf_counter()
    while True:
        fn()
        calls += 1
        if calls >= n:
            synchronize(device)
            if time.perf_counter() - t0 >= min_window_s:
                break
    return calls, time.perf_counter() - t0


def _nvml_energy(fn: Callable[[], Any], n: int, min_window_s: float, device: torch.device) -> Energy | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError: no driver, no permission
        return None
    try:
        index = device.index if device.index is not None else (
            torch.cuda.current_device() if torch.cuda.is_available() else 0)
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # mJ since driver load
        calls, window = _run_window(fn, n, min_window_s, device)
        e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # NVMLError_NotSupported on older GPUs
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    total_j = (e1 - e0) / 1e3
    return Energy(value_j=total_j / calls, source=f"nvml:nvmlDeviceGetTotalEnergyConsumption(gpu {index})",
                  estimated=False,
                  details={"calls": calls, "window_s": window, "total_j": total_j,
                           "scope": "whole GPU board, every process on it"})


def _rapl_energy(fn: Callable[[], Any], n: int, min_window_s: float, domains: list[RaplDomain],
                 device: torch.device) -> Energy:
    start = [d.read_uj() for d in domains]
    calls, window = _run_window(fn, n, min_window_s, device)
    end = [d.read_uj() for d in domains]
    deltas = [counter_delta(s, e, d.max_energy_range_uj) for s, e, d in zip(start, end, domains)]
    total_j = sum(deltas) / 1e6
    names = "+".join(d.name for d in domains)
    return Energy(value_j=total_j / calls, source=f"rapl:{names}", estimated=False,
                  details={"calls": calls, "window_s": window, "total_j": total_j,
                           "domains": {d.name: delta / 1e6 for d, delta in zip(domains, deltas)},
                           "scope": "whole CPU package(s), every process on it, idle power included"})


def _estimate_energy(fn: Callable[[], Any], n: int, min_window_s: float, device: torch.device,
                     watts_per_core: float | None, why: str) -> Energy:
    w, origin = resolve_watts_per_core(watts_per_core)
    proc = psutil.Process(os.getpid())
    c0 = _cpu_seconds(proc)
    calls, window = _run_window(fn, n, min_window_s, device)
    cpu_s = _cpu_seconds(proc) - c0
    total_j = cpu_s * w
    source = f"estimate:process_cpu_time*W_per_core(W={w:g})"
    details = {"calls": calls, "window_s": window, "cpu_s": cpu_s, "watts_per_core": w,
               "watts_per_core_from": origin, "total_j": total_j, "why_estimated": why,
               "scope": "this process's CPU time only (no idle, uncore, memory or GPU power)"}
    if device.type == "cuda":
        details["gpu"] = "GPU energy not counted: NVML not readable"
    return Energy(value_j=total_j / calls, source=source, estimated=True, details=details)


def measure_energy(fn: Callable[[], Any], *, n: int = 10, device: str | torch.device = "cpu",
                   min_window_s: float | None = None, watts_per_core: float | None = None,
                   powercap_root: str | os.PathLike = POWERCAP_ROOT) -> Energy:
    """Energy per call of ``fn()`` in joules: NVML (cuda), RAPL (cpu), else a flagged estimate.

    ``n``: the least number of calls; more are made until the window lasts ``min_window_s``
    (default 0.5 s on cpu, 1 s on cuda, long enough for the counters' update periods).
    ``watts_per_core`` overrides the estimate's assumed power (see the module docstring);
    ``powercap_root`` is where RAPL lives (``/sys/class/powercap``; tests point it elsewhere).
    """
    if n < 1:
        raise LayerwiseError(f"n must be >= 1, got {n}")
    dev = torch.device(device)
    if min_window_s is None:
        min_window_s = 1.0 if dev.type == "cuda" else 0.5
    if dev.type == "cuda":
        got = _nvml_energy(fn, n, min_window_s, dev)
        if got is not None:
            return got
        why = "NVML not readable (pynvml missing, no driver, or GPU without energy counter)"
    else:
        domains = rapl_package_domains(powercap_root)
        if domains:
            return _rapl_energy(fn, n, min_window_s, domains, dev)
        why = ("RAPL present but not readable (root only on most kernels)"
               if _rapl_present_but_unreadable(powercap_root) else f"no RAPL under {powercap_root}")
    return _estimate_energy(fn, n, min_window_s, dev, watts_per_core, why)


def battery() -> BatteryState | None:
    """The battery's charge and state from ``psutil.sensors_battery()``, or ``None`` without one."""
    probe = getattr(psutil, "sensors_battery", None)
    if probe is None:
        return None
    try:
        b = probe()
    except Exception:  # platform backends can raise on odd firmware
        return None
    if b is None:
        return None
    secs = b.secsleft
    secs_left = int(secs) if isinstance(secs, (int, float)) and secs >= 0 and math.isfinite(secs) else None
    plugged = b.power_plugged if isinstance(b.power_plugged, bool) else None
    return BatteryState(percent=float(b.percent), plugged=plugged, secs_left=secs_left)
