"""The ``uniform`` baseline: ONE pruning ratio and ONE bit width for every layer, at the same packed
size as AdaLayerNet (the paper's "uniform compression", Table 2).

For each bit width in ``bits_options`` the smallest common ratio whose packed file fits the target
is found by bisection on the real packed size. "Tuned to the same packed size" is enforced by
:func:`same_size`: only the candidates whose size is within ``band`` (default 1 %) of the LARGEST
fitting size compete (a bit width that fits unpruned, e.g. 4 bits at 0 % when the target is 3 %
larger, is smaller than the target and drops out unless nothing else fits); among those the
ranking is by validation accuracy (before fine-tuning), the best ``finetune_top`` are fine-tuned
with the same recipe as AdaLayerNet, and the best validation accuracy after fine-tuning wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class UniformCandidate:
    bits: int
    prune_ratio: float
    packed_bytes: int
    val_accuracy: float | None = None
    val_accuracy_finetuned: float | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)


def uniform_candidates(size_of: Callable[[float, int], int], target_bytes: int, bits_options: list[int],
                       p_max: float, iterations: int = 20) -> list[UniformCandidate]:
    """For each bit width, the least common pruning ratio in [0, p_max] that fits ``target_bytes``."""
    found = []
    for bits in bits_options:
        s0 = size_of(0.0, bits)
        if s0 <= target_bytes:
            found.append(UniformCandidate(bits, 0.0, s0))
            continue
        s_hi = size_of(p_max, bits)
        if s_hi > target_bytes:
            continue
        lo, hi = 0.0, p_max
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            s = size_of(mid, bits)
            if s <= target_bytes:
                hi, s_hi = mid, s
            else:
                lo = mid
        found.append(UniformCandidate(bits, hi, s_hi))
    return found


def same_size(candidates: list[UniformCandidate], band: float = 0.01) -> list[UniformCandidate]:
    """The candidates whose packed size is within ``band`` of the largest one (all fit the target)."""
    if not candidates:
        return []
    top = max(c.packed_bytes for c in candidates)
    return [c for c in candidates if c.packed_bytes >= (1.0 - band) * top]
