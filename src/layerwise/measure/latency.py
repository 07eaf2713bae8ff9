"""Wall-clock latency, measured the way every command reports it: an explicit thread count (restored
afterwards), warm-up on the measured input shape, ``time.perf_counter`` around each call under
``torch.inference_mode()``, and the median and inter-quartile range over ``n`` calls.

Beside wall time, each call's CPU time of the calling thread (``time.thread_time``) is recorded.
With one thread (the whole call runs on the caller) it is the work the call did without the time
the scheduler gave to other processes, so on a shared machine it is the steadier figure; with
more threads the workers' time is invisible to it, and it is reported as ``None``.

A speed-up is only meaningful between variants measured side by side: use
:func:`compare_latency`, which interleaves them round-robin, and :func:`speedup` on its output.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import LayerwiseError
from ._util import batch_size_of, call, device_of, eval_mode, make_batch, module_hooks, num_threads, synchronize


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds and how it was measured."""

    median_ms: float
    iqr_ms: float
    n: int
    batch: int | None
    threads: int
    warmup: int
    min_ms: float
    max_ms: float
    source: str
    device: str = "cpu"
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    cpu_median_ms: float | None = None   # thread CPU time; None unless one thread on the CPU
    cpu_iqr_ms: float | None = None
    cpu_samples_ms: tuple[float, ...] = field(default=(), repr=False)

    def to_json(self) -> dict:
        out = {"median": self.median_ms, "iqr": self.iqr_ms, "n": self.n, "batch": self.batch,
               "threads": self.threads, "warmup": self.warmup, "source": self.source}
        if self.cpu_median_ms is not None:
            out["thread_cpu"] = {"median": self.cpu_median_ms, "iqr": self.cpu_iqr_ms,
                                 "source": "time.thread_time per call (one thread)"}
        return out


def _summarise(samples_s: list[float], *, batch: int | None, threads: int, warmup: int,
               source: str, device: torch.device, cpu_s: list[float] | None = None) -> Latency:
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    q25, q50, q75 = np.percentile(ms, [25, 50, 75])
    cpu = {}
    if cpu_s and threads == 1 and torch.device(device).type == "cpu":
        cms = np.asarray(cpu_s, dtype=np.float64) * 1e3
        c25, c50, c75 = np.percentile(cms, [25, 50, 75])
        cpu = {"cpu_median_ms": float(c50), "cpu_iqr_ms": float(c75 - c25),
               "cpu_samples_ms": tuple(float(x) for x in cms)}
    return Latency(median_ms=float(q50), iqr_ms=float(q75 - q25), n=int(ms.size), batch=batch,
                   threads=threads, warmup=warmup, min_ms=float(ms.min()), max_ms=float(ms.max()),
                   source=source, device=str(device), samples_ms=tuple(float(x) for x in ms), **cpu)


def _check(n: int, warmup: int) -> None:
    if n < 1:
        raise LayerwiseError(f"n must be >= 1, got {n}")
    if warmup < 0:
        raise LayerwiseError(f"warmup must be >= 0, got {warmup}")


def _timed_call(model: Callable, x: Any, device: torch.device) -> tuple[float, float]:
    """``(wall seconds, calling thread's CPU seconds)`` of one call."""
    synchronize(device)
    c0 = time.thread_time()
    t0 = time.perf_counter()
    call(model, x)
    synchronize(device)
    return time.perf_counter() - t0, time.thread_time() - c0


def measure_latency(model: Callable, example_input: Any, *, n: int = 100, warmup: int = 10,
                    threads: int | None = None, batch: int | None = None,
                    batch_dim: int = 0) -> Latency:
    """Median and IQR of ``n`` timed calls of ``model`` (a module or any callable).

    ``threads``: torch intra-op threads for the measurement (``None``: the current count, still
    reported); the previous count is restored afterwards. ``batch``: when given, every input
    tensor is repeated along ``batch_dim`` to that many rows; when ``None`` the input is used as
    it is and its size along ``batch_dim`` is reported. ``warmup`` untimed calls on the same
    shape come first (oneDNN builds kernels per shape). Modules run in eval mode, restored after.
    """
    _check(n, warmup)
    x = make_batch(example_input, batch, batch_dim) if batch is not None else example_input
    device = device_of(x, model)
    samples: list[float] = []
    cpu: list[float] = []
    with num_threads(threads) as used, eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            call(model, x)
        for _ in range(n):
            wall, c = _timed_call(model, x, device)
            samples.append(wall)
            cpu.append(c)
    return _summarise(samples, batch=batch_size_of(x, batch_dim), threads=used, warmup=warmup,
                      source="time.perf_counter per call, torch.inference_mode", device=device,
                      cpu_s=cpu)


def compare_latency(variants: Mapping[str, tuple[Callable, Any]], *, n: int = 100, warmup: int = 10,
                    threads: int | None = None, batch_dim: int = 0) -> dict[str, Latency]:
    """Measure several variants side by side, interleaved round-robin.

    Each of the ``n`` rounds calls every variant once, the order rotated by one each round, so
    drift in the machine (frequency, other load) falls on all variants alike and the ratio of
    their medians is a fair speed-up. Every variant is warmed up on its own input first.
    ``variants`` maps a name to ``(model_or_callable, example_input)``.
    """
    _check(n, warmup)
    if not variants:
        raise LayerwiseError("compare_latency needs at least one variant")
    names = list(variants)
    samples: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    devices = {k: device_of(variants[k][1], variants[k][0]) for k in names}
    with contextlib.ExitStack() as stack:
        used = stack.enter_context(num_threads(threads))
        for k in names:
            stack.enter_context(eval_mode(variants[k][0]))
        stack.enter_context(torch.inference_mode())
        for _ in range(warmup):
            for k in names:
                call(*variants[k])
        for r in range(n):
            s = r % len(names)
            for k in names[s:] + names[:s]:
                model, x = variants[k]
                wall, c = _timed_call(model, x, devices[k])
                samples[k].append(wall)
                cpu[k].append(c)
    source = f"time.perf_counter per call, torch.inference_mode, interleaved round-robin over {len(names)} variants"
    return {k: _summarise(samples[k], batch=batch_size_of(variants[k][1], batch_dim), threads=used,
                          warmup=warmup, source=source, device=devices[k], cpu_s=cpu[k])
            for k in names}


def speedup(baseline: Latency, candidate: Latency) -> float:
    """How many times faster ``candidate`` is than ``baseline``: ratio of medians (> 1 is faster).

    Only meaningful for two variants measured in the same interleaved run
    (:func:`compare_latency`) with the same threads and batch.
    """
    if baseline.threads != candidate.threads or baseline.batch != candidate.batch:
        raise LayerwiseError(
            f"speed-up between latencies with different threads/batch ({baseline.threads}/{baseline.batch} vs "
            f"{candidate.threads}/{candidate.batch}): measure both with compare_latency")
    if candidate.median_ms <= 0:
        raise LayerwiseError("candidate median latency is 0: increase the work per call")
    return baseline.median_ms / candidate.median_ms


@contextlib.contextmanager
def _layer_timers(modules: Mapping[str, torch.nn.Module], device: torch.device,
                  ) -> Iterator[dict[str, float]]:
    """Forward pre/post hooks accumulating seconds spent in each module; always removed."""
    acc: dict[str, float] = defaultdict(float)
    starts: dict[str, list[float]] = defaultdict(list)

    def pre(name: str):
        def hook(mod, args):
            synchronize(device)
            starts[name].append(time.perf_counter())
        return hook

    def post(name: str):
        def hook(mod, args, out):
            synchronize(device)
            acc[name] += time.perf_counter() - starts[name].pop()
        return hook

    with module_hooks(modules, pre, post):
        yield acc


def per_layer_latency(model: torch.nn.Module, example_input: Any, leaf_names: list[str] | None = None, *,
                      n: int = 100, warmup: int = 10, threads: int | None = None,
                      batch_dim: int = 0) -> dict[str, Latency]:
    """Time each leaf module inside ``n`` whole-model forwards, with forward hooks.

    ``leaf_names``: ``named_modules()`` names to time (default: every leaf module). A module
    called several times in one forward gets the sum of its calls. Modules that never run are
    left out. The hooks' own cost and the work between layers are not in any layer's time, so
    the layer times sum to less than the whole model: they are approximate, say so, and check
    them against ``torch.profiler`` when it matters.
    """
    _check(n, warmup)
    named = dict(model.named_modules())
    if leaf_names is None:
        leaf_names = [k for k, m in named.items() if next(m.children(), None) is None]
    unknown = [k for k in leaf_names if k not in named]
    if unknown:
        raise LayerwiseError(f"no module named {unknown[0]!r} in the model: use names from model.named_modules()")
    device = device_of(example_input, model)
    samples: dict[str, list[float]] = {k: [] for k in leaf_names}
    with num_threads(threads) as used, eval_mode(model), torch.inference_mode(), \
            _layer_timers({k: named[k] for k in leaf_names}, device) as acc:
        for _ in range(warmup):
            call(model, example_input)
        for _ in range(n):
            acc.clear()
            call(model, example_input)
            for k in leaf_names:
                if k in acc:
                    samples[k].append(acc[k])
    batch = batch_size_of(example_input, batch_dim)
    source = "forward hooks (approximate: sums to less than the whole model)"
    return {k: _summarise(v, batch=batch, threads=used, warmup=warmup, source=source, device=device)
            for k, v in samples.items() if v}
