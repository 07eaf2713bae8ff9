"""Eq. (6): maximise accuracy subject to the size of the compressed model staying within budget.

The paper states the constraint on parameters; here it is on the real artifact, the bytes of
the packed file: packed_bytes <= F * dense_bytes, with dense_bytes the size of the fp32 model
saved with ``torch.save(state_dict)``. Accuracy is maximised the way eq. (2)-(3) allow: among
the allocations given by one knob t that scales gamma, delta and lambda together (t = 0: no
compression), the smallest t whose packed file fits is chosen, by bisection on the real packed
size (size falls monotonically as t grows). Infeasible budgets say what the smallest one is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import LayerwiseError

log = logging.getLogger(__name__)


class BudgetError(LayerwiseError):
    """A size budget that cannot be met."""


@dataclass
class BudgetResult:
    knob: float
    packed_bytes: int
    target_bytes: int
    dense_bytes: int
    floor_bytes: int  # smallest reachable packed size (p_max and B_min in every layer)
    evaluations: int

    @property
    def fraction(self) -> float:
        return self.packed_bytes / self.dense_bytes

    def to_json(self) -> dict:
        return {"knob": self.knob, "packed_bytes": self.packed_bytes, "target_bytes": self.target_bytes,
                "dense_bytes": self.dense_bytes, "floor_bytes": self.floor_bytes, "evaluations": self.evaluations,
                "fraction": self.fraction, "smallest_feasible_budget": self.floor_bytes / self.dense_bytes}


def _suggest(nbytes: int, dense_bytes: int) -> float:
    """The smallest 4-decimal budget whose byte target holds ``nbytes``."""
    b = math.ceil(nbytes / dense_bytes * 1e4) / 1e4
    while int(b * dense_bytes) < nbytes:
        b += 1e-4
    return b


def check_budget(budget: float) -> float:
    if not 0.0 < budget <= 1.0:
        raise BudgetError(f"--budget {budget} is not a fraction of the dense file: use a value in (0, 1], e.g. 0.15")
    return budget


def fit_budget(size_at: Callable[[float], int], *, budget: float, dense_bytes: int, floor_bytes: int,
               knob_max: float, iterations: int = 30) -> BudgetResult:
    """Smallest knob t in [0, knob_max] with size_at(t) <= budget * dense_bytes (bisection)."""
    check_budget(budget)
    target = int(budget * dense_bytes)
    if floor_bytes > target:
        smallest = _suggest(floor_bytes, dense_bytes)
        raise BudgetError(
            f"budget {budget:g} ({target:,} bytes) is below the smallest feasible budget {smallest:.4f} "
            f"({floor_bytes:,} bytes with maximum pruning and B_min bits in every layer): pass "
            f"--budget {smallest:.4f} or more, or lower --b-min / raise --p-max")
    evals = 0
    lo_size = size_at(0.0)
    evals += 1
    if lo_size <= target:
        return BudgetResult(0.0, lo_size, target, dense_bytes, floor_bytes, evals)
    hi, hi_size = knob_max, size_at(knob_max)
    evals += 1
    if hi_size > target:
        reach = _suggest(hi_size, dense_bytes)
        raise BudgetError(
            f"budget {budget:g} ({target:,} bytes) cannot be reached by eq. 2-3: layers with importance 1 are "
            f"never compressed, so the smallest reachable budget is {reach:.4f}: pass --budget {reach:.4f} "
            "or more, or lower --alpha")
    lo = 0.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        s = size_at(mid)
        evals += 1
        if s <= target:
            hi, hi_size = mid, s
        else:
            lo = mid
        if hi - lo <= 1e-4 * max(hi, 1e-9):
            break
    log.info("budget %.4f: knob %.4f, %d bytes (%.4f of dense) after %d packings", budget, hi, hi_size,
             hi_size / dense_bytes, evals)
    return BudgetResult(hi, hi_size, target, dense_bytes, floor_bytes, evals)
