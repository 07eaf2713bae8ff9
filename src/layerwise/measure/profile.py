"""Everything ``measure`` knows about one model, gathered in one call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._util import call, device_of, eval_mode, num_threads
from .energy import Energy, measure_energy
from .latency import Latency, measure_latency
from .macs import MacCount, count_macs
from .memory import PeakMemory, peak_memory
from .params import count_params
from .size import Size, artifact_size


@dataclass(frozen=True)
class ModelProfile:
    """Params, artifact size, MACs, latency (batch 1 and batched), peak memory and energy of a
    model, each with how it was measured."""

    params: int
    size: Size
    macs: MacCount
    latency: Latency
    latency_batched: Latency | None
    memory: PeakMemory
    energy: Energy

    def to_variant_fields(self) -> dict:
        """The ``layerwise.results/1`` variant fields (all but ``name`` and ``accuracy``).

        ``macs_executed`` equals ``macs``: a plain model executes every MAC it defines.
        ``peak_mem_bytes`` is the process-level peak during one batch-1 forward; its rise over
        the baseline before the call is in ``extra["peak_mem_delta_bytes"]``.
        """
        extra: dict[str, Any] = {
            "latency_batched_ms": self.latency_batched.to_json() if self.latency_batched else None,
            "memory_source": self.memory.source,
            "memory_scope": self.memory.scope,
            "peak_mem_delta_bytes": self.memory.delta_bytes,
            "macs_source": self.macs.source,
            "macs_per_module": dict(self.macs.per_module),
            "size_source": self.size.source,
        }
        if self.latency_batched is None:
            extra["latency_batched_ms_reason"] = "batched case not requested (batched=None)"
        return {
            "macs": self.macs.total,
            "macs_executed": self.macs.total,
            "params": self.params,
            "size_bytes": self.size.bytes,
            "latency_ms": self.latency.to_json(),
            "peak_mem_bytes": self.memory.bytes,
            "energy_j": self.energy.to_json(),
            "extra": extra,
        }


def profile_model(model: torch.nn.Module, example_input: Any, *, threads: int | None = None, n: int = 100,
                  warmup: int = 10, batched: int | None = 32, energy_n: int | None = None,
                  energy_window_s: float | None = None, batch_dim: int = 0) -> ModelProfile:
    """Profile ``model`` on a batch-1 ``example_input``.

    MACs, latency, peak memory and energy are per batch-1 forward; ``batched`` adds a latency
    measurement with the example repeated to that batch size (``None`` skips it). Everything runs
    with ``threads`` torch threads (restored afterwards) and in eval mode.
    """
    device = device_of(example_input, model)

    def forward() -> None:
        with torch.inference_mode():
            call(model, example_input)

    with num_threads(threads) as used, eval_mode(model):
        params = count_params(model)
        size = artifact_size(model)
        macs = count_macs(model, example_input)
        latency = measure_latency(model, example_input, n=n, warmup=warmup, threads=used, batch_dim=batch_dim)
        latency_batched = None
        if batched is not None:
            latency_batched = measure_latency(model, example_input, n=n, warmup=warmup, threads=used,
                                              batch=batched, batch_dim=batch_dim)
        forward()  # warm, so the peak is the forward's, not first-call kernel building
        memory = peak_memory(forward, device=device)
        energy = measure_energy(forward, n=energy_n if energy_n is not None else max(1, n // 10),
                                device=device, min_window_s=energy_window_s)
    return ModelProfile(params=params, size=size, macs=macs, latency=latency,
                        latency_batched=latency_batched, memory=memory, energy=energy)
