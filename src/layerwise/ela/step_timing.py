"""Training-step time of several models, measured side by side (interleaved round-robin).

Epoch times of models trained one after another see different machine load; this measures one
optimizer step (forward, backward, SGD update) of every model on the same batches, rotating the
order every round, so load drift falls on all models alike and their ratio is fair. Round r uses
batch r mod len(batches), the same for every model. Beside wall time each step records the CPU
time of the calling thread (``time.thread_time``) and of the whole process (``time.process_time``,
the intra-op threads included; nothing else of ours runs during a step).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import LayerwiseError


@dataclass
class StepTime:
    median_ms: float
    iqr_ms: float
    n: int
    batch: int
    threads: int
    warmup: int
    thread_cpu_ms: float = float("nan")  # median CPU time of the calling thread per step
    process_cpu_ms: float = float("nan")  # median CPU time of the process (all threads) per step
    batches: int = 1  # distinct batches the rounds cycle through
    thread_cpu_iqr_ms: float = float("nan")  # IQR of the calling thread's CPU time per step
    source: str = "time.perf_counter per SGD step (forward + backward + update), interleaved round-robin"

    def to_json(self) -> dict:
        return {"median": self.median_ms, "iqr": self.iqr_ms, "n": self.n, "batch": self.batch,
                "batches": self.batches, "threads": self.threads, "warmup": self.warmup,
                "thread_cpu_median": self.thread_cpu_ms, "thread_cpu_iqr": self.thread_cpu_iqr_ms,
                "process_cpu_median": self.process_cpu_ms,
                "source": self.source}


def compare_train_steps(models: Mapping[str, nn.Module], x: torch.Tensor | list, y: torch.Tensor | None = None, *,
                        rounds: int = 10, warmup: int = 2, threads: int | None = None) -> dict[str, StepTime]:
    """Median and IQR of one training step per model; the models are copied (their weights stay as they are).

    ``x, y``: one batch, or ``x`` a list of ``(inputs, targets)`` batches that the rounds cycle through."""
    batches = list(x) if isinstance(x, (list, tuple)) else [(x, y)]
    if not batches or any(b[1] is None for b in batches):
        raise LayerwiseError("compare_train_steps needs targets: pass x and y, or a list of (x, y) batches")
    if rounds < 1 or warmup < 0:
        raise LayerwiseError(f"rounds must be >= 1 and warmup >= 0, not {rounds} and {warmup}")
    if not models:
        raise LayerwiseError("compare_train_steps needs at least one model")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    try:
        copies = {k: copy.deepcopy(m).train() for k, m in models.items()}
        optims = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in copies.items()}
        loss_fn = nn.CrossEntropyLoss()

        def step(k: str, r: int) -> tuple[float, float, float]:
            bx, by = batches[r % len(batches)]
            t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
            optims[k].zero_grad(set_to_none=True)
            loss_fn(copies[k](bx), by).backward()
            optims[k].step()
            return time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0

        names = list(copies)
        for w in range(warmup):
            for k in names:
                step(k, w)
        samples: dict[str, list[tuple[float, float, float]]] = {k: [] for k in names}
        for r in range(rounds):
            s = r % len(names)
            for k in names[s:] + names[:s]:
                samples[k].append(step(k, r))
    finally:
        torch.set_num_threads(previous)
    out = {}
    for k, v in samples.items():
        ms = np.asarray(v) * 1e3
        q25, q50, q75 = np.percentile(ms[:, 0], [25, 50, 75])
        c25, c75 = np.percentile(ms[:, 1], [25, 75])
        out[k] = StepTime(float(q50), float(q75 - q25), len(v), int(batches[0][0].shape[0]), used, warmup,
                          float(np.median(ms[:, 1])), float(np.median(ms[:, 2])), len(batches), float(c75 - c25))
    return out
