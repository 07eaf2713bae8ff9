"""Peak memory of one call.

CPU (process level; ``tracemalloc`` does not see torch's allocations and
``ru_maxrss`` cannot be reset):

1. Linux: write ``5`` to ``/proc/self/clear_refs``, which resets the process's resident-set
   high-water mark ``VmHWM`` to the current RSS; run the call; read ``VmHWM`` from
   ``/proc/self/status``. Exact for the whole process, every thread included.
2. Otherwise (no ``/proc``, or ``clear_refs`` not writable): a thread samples the RSS with
   ``psutil`` every ``interval_s`` (1 ms) during the call; a peak shorter than the interval can
   be missed, and ``source`` says this method was used.

Both see resident pages only: memory that is allocated but never touched does not count.

CUDA: ``torch.cuda.reset_peak_memory_stats`` then ``torch.cuda.max_memory_allocated``: the
peak of torch's caching allocator on that device (not other processes, not the CUDA context).
"""

from __future__ import annotations

import gc
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from ..errors import LayerwiseError
from ..malloc import allocator_defaults
from ._util import device_of


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory during one call: ``bytes`` is the peak, ``baseline_bytes`` what was in use
    just before the call, both for ``scope``."""

    bytes: int
    baseline_bytes: int
    source: str
    scope: str = "process"

    @property
    def delta_bytes(self) -> int:
        """How far the call raised the peak above what was in use before it."""
        return max(0, self.bytes - self.baseline_bytes)

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "baseline_bytes": self.baseline_bytes,
                "delta_bytes": self.delta_bytes, "source": self.source, "scope": self.scope}


def _status_kb(status_text: str, key: str) -> int | None:
    m = re.search(rf"^{key}:\s+(\d+)\s*kB", status_text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def _vmhwm_available(proc_root: Path) -> bool:
    try:
        status = (proc_root / "self" / "status").read_text()
        if _status_kb(status, "VmHWM") is None:
            return False
        with open(proc_root / "self" / "clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_vmhwm(fn: Callable, args: tuple, proc_root: Path) -> PeakMemory:
    status_path = proc_root / "self" / "status"
    clear_refs = proc_root / "self" / "clear_refs"
    baseline = _status_kb(status_path.read_text(), "VmRSS") or 0
    with open(clear_refs, "w") as f:
        f.write("5")
    fn(*args)
    status = status_path.read_text()
    peak = _status_kb(status, "VmHWM") or 0
    return PeakMemory(bytes=max(peak, baseline), baseline_bytes=baseline,
                      source=f"linux:{status_path} VmHWM after writing 5 to {clear_refs}")


def _peak_sampled(fn: Callable, args: tuple, interval_s: float) -> PeakMemory:
    proc = psutil.Process(os.getpid())
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(interval_s)

    t = threading.Thread(target=sample, name="layerwise-rss-sampler", daemon=True)
    t.start()
    try:
        fn(*args)
        peak[0] = max(peak[0], proc.memory_info().rss)
    finally:
        stop.set()
        t.join()
    return PeakMemory(bytes=peak[0], baseline_bytes=baseline,
                      source=f"psutil RSS sampled every {interval_s * 1e3:g} ms (short peaks can be missed)")


def _peak_cuda(fn: Callable, args: tuple, device: torch.device) -> PeakMemory:
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn(*args)
    torch.cuda.synchronize(device)
    return PeakMemory(bytes=torch.cuda.max_memory_allocated(device), baseline_bytes=baseline,
                      source="torch.cuda.max_memory_allocated after reset_peak_memory_stats",
                      scope=f"torch caching allocator on {device}")


def peak_memory(fn: Callable, *args: Any, device: str | torch.device | None = None, method: str = "auto",
                interval_s: float = 0.001, proc_root: str | os.PathLike = "/proc") -> PeakMemory:
    """Peak memory while ``fn(*args)`` runs (the return value is discarded).

    ``device``: where to measure; ``None`` picks cuda when a tensor argument is on cuda, else
    cpu. ``method`` (cpu only): ``"auto"`` (VmHWM when possible, else sampling), ``"vmhwm"``
    or ``"sampled"``. Wrap keyword arguments with ``functools.partial``.
    """
    dev = torch.device(device) if device is not None else device_of(args)
    if dev.type == "cuda":
        return _peak_cuda(fn, args, dev)
    if method not in ("auto", "vmhwm", "sampled"):
        raise LayerwiseError(f"unknown memory method {method!r}: use 'auto', 'vmhwm' or 'sampled'")
    root = Path(proc_root)
    use_vmhwm = method != "sampled" and _vmhwm_available(root)
    if method == "vmhwm" and not use_vmhwm:
        raise LayerwiseError(f"cannot reset the peak RSS: {root}/self/clear_refs is missing or not writable "
                             "(use method='auto' to fall back to sampling)")
    # resident pages only count when fresh: garbage from before the call is collected now (not while
    # it runs, which would lower the peak it reports), and memory the process kept after earlier
    # frees (layerwise.malloc) is handed back, so the call's own pages are all seen
    gc.collect()
    with allocator_defaults():
        return _peak_vmhwm(fn, args, root) if use_vmhwm else _peak_sampled(fn, args, interval_s)
