"""The resource monitor (section 4.3, part 2) and the shared buffer the ACUs read.

:class:`ResourceMonitor` runs beside inference in a daemon thread: every ``interval_s`` it reads
the process CPU load and resident memory (psutil), the battery when the machine has one, and
the energy counter (RAPL package domains when readable, else an ESTIMATE: this process's CPU
time times an assumed power per busy core, the rule of :mod:`layerwise.measure.energy`), and
publishes a :class:`ResourceState` to the :class:`SharedBuffer`. The ACUs write their per-unit
latency samples to the same buffer, which keeps a moving average per unit.

A counter that cannot be read does not stop anything: the value becomes ``None``, the monitor
falls back (energy: RAPL -> estimate; battery: pressure off), logs one warning and records the
reason in ``ResourceState.notes``.

:class:`SimulatedMonitor` replaces it with a replayed trace (a draining battery, CPU
contention), one entry per inference: deterministic, for tests and demonstrations.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil

from ..measure.energy import rapl_package_domains, resolve_watts_per_core

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResourceState:
    """One reading of the device's resources; ``None`` where a counter was not readable."""

    time_s: float = 0.0
    cpu_percent: float | None = None  # this process, % of one core
    rss_bytes: int | None = None
    memory_percent: float | None = None  # system memory in use, % (psutil.virtual_memory)
    power_w: float | None = None  # mean power draw since the previous reading (energy delta / time delta)
    battery_percent: float | None = None
    power_plugged: bool | None = None
    energy_j: float | None = None  # cumulative since the monitor started
    energy_source: str = "none"
    energy_estimated: bool = True
    latency_scale: float = 1.0  # simulated CPU contention: measured latency is multiplied by this
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class SharedBuffer:
    """What the monitor publishes and the ACUs read: the latest state + per-unit latency EMAs."""

    def __init__(self, num_units: int, ema: float = 0.2):
        self._lock = threading.Lock()
        self.state = ResourceState()
        self.ema = ema
        self.unit_latency_s: list[float | None] = [None] * num_units

    def __deepcopy__(self, memo) -> "SharedBuffer":
        new = SharedBuffer(len(self.unit_latency_s), self.ema)
        new.state = self.state
        new.unit_latency_s = list(self.unit_latency_s)
        return new

    def publish(self, state: ResourceState) -> None:
        self.state = state  # one reference swap: readers see the old or the new state, never half

    def record_unit_latency(self, unit: int, seconds: float) -> None:
        with self._lock:
            old = self.unit_latency_s[unit]
            self.unit_latency_s[unit] = seconds if old is None else (1 - self.ema) * old + self.ema * seconds

    def latencies(self) -> list[float | None]:
        with self._lock:
            return list(self.unit_latency_s)


@dataclass
class _Counter:
    name: str
    read: Callable[[], object]
    fallback: str
    failed: str | None = None


class ResourceMonitor:
    """Samples counters in a thread every ``interval_s`` and publishes to ``buffer``.

    ``readers`` replaces individual counters (``cpu``, ``memory``, ``battery``, ``energy``) by
    callables, e.g. to test a counter that cannot be read.
    """

    def __init__(self, buffer: SharedBuffer, interval_s: float = 0.1,
                 readers: dict[str, Callable[[], object]] | None = None,
                 watts_per_core: float | None = None, powercap_root: str = "/sys/class/powercap"):
        self.buffer = buffer
        self.interval_s = interval_s
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watts, _ = resolve_watts_per_core(watts_per_core)
        self._rapl = rapl_package_domains(powercap_root)
        self._rapl_start = [d.read_uj() for d in self._rapl] if self._rapl else []
        self._cpu_start = self._cpu_seconds()
        self.energy_source = ("rapl:" + "+".join(d.name for d in self._rapl)) if self._rapl else \
            f"estimate:process_cpu_time*W_per_core(W={self._watts:g})"
        self.energy_estimated = not self._rapl
        readers = readers or {}
        self.counters = [
            _Counter("cpu", readers.get("cpu", lambda: self._proc.cpu_percent(None)), "cpu load unknown"),
            _Counter("memory", readers.get("memory", lambda: self._proc.memory_info().rss), "memory unknown"),
            _Counter("memory_percent", readers.get("memory_percent", lambda: psutil.virtual_memory().percent),
                     "memory pressure off"),
            _Counter("battery", readers.get("battery", psutil.sensors_battery), "battery pressure off"),
            _Counter("energy", readers.get("energy", self._energy), "energy unknown"),
        ]
        self.notes: list[str] = []
        self._last_energy: tuple[float, float] | None = None
        if not self._rapl:
            self.notes.append("energy: no readable RAPL counter; using the process-CPU-time estimate")

    def _cpu_seconds(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def _energy(self) -> float:
        if self._rapl:
            from ..measure.energy import counter_delta
            return sum(counter_delta(s, d.read_uj(), d.max_energy_range_uj)
                       for s, d in zip(self._rapl_start, self._rapl)) / 1e6
        return (self._cpu_seconds() - self._cpu_start) * self._watts

    def _read(self, counter: _Counter):
        try:
            return counter.read()
        except Exception as exc:  # any counter may be missing, permission-denied, unsupported
            if counter.failed is None:
                counter.failed = f"{counter.name}: cannot read ({type(exc).__name__}: {exc}); {counter.fallback}"
                self.notes.append(counter.failed)
                log.warning("resource monitor: %s", counter.failed)
            return None

    def sample_once(self) -> ResourceState:
        cpu, mem, mem_pct, batt, energy = (self._read(c) for c in self.counters)
        notes = list(self.notes)
        if batt is None and self.counters[3].failed is None:
            notes.append("battery: none on this machine; battery pressure off")
        now = time.perf_counter()
        power = None
        if energy is not None:
            if self._last_energy is not None and now > self._last_energy[0]:
                power = max(0.0, (float(energy) - self._last_energy[1]) / (now - self._last_energy[0]))
            self._last_energy = (now, float(energy))
        state = ResourceState(
            time_s=time.perf_counter() - self._t0,
            cpu_percent=float(cpu) if cpu is not None else None,
            rss_bytes=int(mem) if mem is not None else None,
            memory_percent=float(mem_pct) if mem_pct is not None else None,
            power_w=power,
            battery_percent=float(batt.percent) if batt is not None else None,
            power_plugged=batt.power_plugged if batt is not None else None,
            energy_j=float(energy) if energy is not None else None,
            energy_source=self.energy_source if energy is not None else "none",
            energy_estimated=self.energy_estimated, notes=tuple(notes))
        self.buffer.publish(state)
        return state

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample_once()

    def start(self) -> "ResourceMonitor":
        if self._thread is None:
            self.sample_once()
            self._thread = threading.Thread(target=self._loop, name="lwac-resource-monitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s + 1)
            self._thread = None

    def on_inference(self, step: int) -> None:
        """Nothing to do: the thread samples on its own clock."""

    def __enter__(self) -> "ResourceMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class SimulatedMonitor:
    """Replays ``trace`` (one dict of :class:`ResourceState` fields per inference; the last repeats)."""

    def __init__(self, buffer: SharedBuffer, trace: Sequence[dict]):
        if not trace:
            raise ValueError("a simulated monitor needs a non-empty trace")
        names = {f.name for f in dataclasses.fields(ResourceState)}
        for entry in trace:
            unknown = set(entry) - names
            if unknown:
                raise ValueError(f"unknown resource field(s) {sorted(unknown)} in trace; use {sorted(names)}")
        self.buffer = buffer
        self.trace = list(trace)
        self.on_inference(0)

    def on_inference(self, step: int) -> None:
        entry = self.trace[min(step, len(self.trace) - 1)]
        self.buffer.publish(ResourceState(time_s=float(step), energy_source="simulated", notes=("simulated",),
                                          **entry))

    def start(self) -> "SimulatedMonitor":
        return self

    def stop(self) -> None:
        pass

    def __enter__(self) -> "SimulatedMonitor":
        return self

    def __exit__(self, *exc) -> None:
        pass


def draining_battery(steps: int, start: float = 100.0, end: float = 5.0) -> list[dict]:
    """A battery (unplugged) draining linearly from ``start`` % to ``end`` % over ``steps`` inferences."""
    return [{"battery_percent": start + (end - start) * i / max(1, steps - 1), "power_plugged": False}
            for i in range(steps)]


def cpu_contention(steps: int, begin: int, end: int, factor: float = 1.5) -> list[dict]:
    """Latency multiplied by ``factor`` from inference ``begin`` to ``end`` (another process competing)."""
    return [{"latency_scale": factor if begin <= i < end else 1.0,
             "cpu_percent": 100.0 / factor if begin <= i < end else 100.0} for i in range(steps)]


def merge_traces(*traces: Sequence[dict]) -> list[dict]:
    """Entry-wise union of traces of equal length."""
    n = len(traces[0])
    if any(len(t) != n for t in traces):
        raise ValueError("traces to merge must have the same length")
    return [{k: v for t in traces for k, v in t[i].items()} for i in range(n)]
