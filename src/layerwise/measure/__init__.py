"""Measurements that say how they were obtained: MACs, parameters, artifact size, latency,
peak memory and energy. Each function returns a small frozen dataclass with a ``source`` (and
``estimated``, ``n``, ``threads``, ... where they apply) and a ``to_json()`` for results files.
"""

from .energy import (
    DEFAULT_WATTS_PER_CORE,
    WATTS_PER_CORE_ENV,
    BatteryState,
    Energy,
    RaplDomain,
    battery,
    counter_delta,
    measure_energy,
    rapl_package_domains,
)
from .latency import Latency, compare_latency, measure_latency, per_layer_latency, speedup
from .macs import MacCount, count_macs
from .memory import PeakMemory, peak_memory
from .params import count_params
from .profile import ModelProfile, profile_model
from .size import Size, artifact_size
from ._util import make_batch

__all__ = [
    "DEFAULT_WATTS_PER_CORE",
    "WATTS_PER_CORE_ENV",
    "BatteryState",
    "Energy",
    "Latency",
    "MacCount",
    "ModelProfile",
    "PeakMemory",
    "RaplDomain",
    "Size",
    "artifact_size",
    "battery",
    "compare_latency",
    "count_macs",
    "count_params",
    "counter_delta",
    "make_batch",
    "measure_energy",
    "measure_latency",
    "peak_memory",
    "per_layer_latency",
    "profile_model",
    "rapl_package_domains",
    "speedup",
]
