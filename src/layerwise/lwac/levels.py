"""Depth levels and the level controller: an absolute budget held by choosing among measured depths.

The PI controller (:mod:`layerwise.lwac.budget`) moves lambda continuously. With the heuristic
policy a lambda gives one execution path, and the paths' latencies come in steps: on the
Fashion-MNIST ResNet-20 of ``docs/lwac.md`` neighbouring depths are 0.21-0.30 ms apart, 14-20 % of
a 1.5 ms budget, as wide as the whole +-10 % band. A continuous lambda that settles between two
steps makes consecutive inferences alternate between the depths on either side of the budget,
and few of them land inside the band.

The level controller holds ONE level instead:

1. :func:`measure_levels` runs every lambda of a grid (the calibration grid by default) on a set
   of inputs, in increasing order, and cuts the grid into runs of consecutive lambdas that do the
   same thing there (per unit, the share of inputs on which it is bypassed). Each run is one
   level, represented by its middle lambda in grid order (away from the run's ends, where a small
   change of the costs C_i would flip a decision); the levels are timed side by side
   (interleaved medians at batch 1): a list of :class:`Level` (lambda, median ms), slowest first.
2. :class:`LevelController` keeps a running median ``s`` of measured / expected latency over the
   last ``window`` inferences: the slowdown the machine imposes now (under a competing process
   every level slows by about the same factor; a median of 3 ignores one preempted inference).
   It predicts every level's latency as ``s * level.ms`` and holds the level whose prediction is
   nearest the budget (``ceiling=True``: the slowest level predicted at or under it), moving to
   another only when that one's predicted distance from the budget is smaller by more than
   ``hysteresis`` x the budget, so that noise does not make it alternate. The window is short
   because the machine's speed drifts: on the 2-core test machine identical batch-1 inferences
   vary by tens of percent, slowly (``bench/latency_drift.py`` measures the spread and its
   autocorrelation and replays the series through this controller for several windows).

It has the PI controller's interface (``update(measured_ms, dense_equivalent_ms)`` returns lambda,
``target_ms``), so ``LWACModel.set_latency_target(ms, levels=...)`` swaps one for the other, and the
model settles the pressure at each new level (:meth:`LWACModel.hold_lambda`).
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .config import LWACError, check_latency_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Level:
    """One depth: the lambda that gives it and its median batch-1 latency when measured."""

    lam: float
    ms: float
    bypassed_per_input: float  # units bypassed per input at this lambda, on the measuring inputs
    lams: tuple[float, float]  # the lowest and highest lambda of its run of the grid (all behaved alike)

    def to_json(self) -> dict:
        return asdict(self)


def held_at(lwac, lam: float):
    """A clone of ``lwac`` with no budget, held at ``lam`` (its pressure settled): one fixed depth."""
    c = lwac.clone()
    c.clear_budget()
    c.hold_lambda(lam)
    return c


def _signature(lwac, inputs: Sequence[torch.Tensor]) -> tuple[tuple[float, ...], float]:
    """Per unit, the share of ``inputs`` on which it was bypassed (rounded), and units bypassed per input."""
    lwac.reset_counts()
    with torch.no_grad():
        for x in inputs:
            lwac(x)
    shares = [round(1.0 - s, 3) for s in lwac.run_share()]
    n = max(1, len(inputs))
    return tuple(shares), sum(lwac.state.bypassed) / n


def measure_levels(lwac, inputs: Sequence[torch.Tensor], *, lams: Sequence[float] | None = None, n: int = 100,
                   warmup: int = 5, threads: int | None = None) -> list[Level]:
    """The distinct depths of a calibrated ``lwac`` (never changed: clones are measured) on
    ``inputs`` (batch-1 tensors), slowest first (module docstring). ``lams``: the lambdas to try
    (default: the calibration curve's grid, 0 and the top of ``lam_range``); ``n`` timed calls per
    level, interleaved."""
    from ..measure import compare_latency
    from .calibrate import _Cycle
    if not inputs:
        raise LWACError("measure_levels needs at least one batch-1 input")
    if lams is None:
        lams = [lam for lam, _ in lwac.lam_curve] + [0.0, float(lwac.lam_range[1])]
    grid = sorted({float(v) for v in lams})
    if not grid or grid[0] < 0:
        raise LWACError(f"measure_levels needs lambdas >= 0, not {grid[:3]}: pass lams=[...] or calibrate first")
    probe = held_at(lwac, grid[0])
    runs: list[tuple[tuple, list[tuple[float, float]]]] = []  # consecutive lambdas that behave alike
    for lam in grid:
        probe.hold_lambda(lam)
        sig, per_input = _signature(probe, inputs)
        if runs and runs[-1][0] == sig:
            runs[-1][1].append((lam, per_input))
        else:
            runs.append((sig, [(lam, per_input)]))
    clones, meta = {}, {}
    for k, (_, members) in enumerate(runs):
        lam, per_input = members[len(members) // 2]
        clones[f"level-{k}"] = held_at(lwac, lam)
        meta[f"level-{k}"] = (lam, per_input, (members[0][0], members[-1][0]))
    cycles = {name: (_Cycle(c, list(inputs)), inputs[0]) for name, c in clones.items()}
    timed = compare_latency(cycles, n=max(3, n), warmup=warmup, threads=threads)
    levels = [Level(lam=m[0], ms=float(timed[name].median_ms), bypassed_per_input=m[1], lams=m[2])
              for name, m in meta.items()]
    levels.sort(key=lambda lv: -lv.ms)
    log.info("levels: %s", ", ".join(f"lambda {lv.lam:.3g} {lv.ms:.3f} ms" for lv in levels))
    return levels


class LevelController:
    """Hold the measured depth level whose latency, scaled by the machine's current slowdown, is
    nearest ``target_ms`` (module docstring)."""

    def __init__(self, target_ms: float, levels: Sequence[Level], *, window: int = 3, hysteresis: float = 0.04,
                 ceiling: bool = False):
        self.target_ms = check_latency_ms(target_ms)
        if not levels:
            raise LWACError("the level controller needs at least one measured level: call measure_levels(lwac, inputs)")
        for lv in levels:
            if not lv.ms > 0 or not lv.lam >= 0:
                raise LWACError(f"a level needs a positive latency and lambda >= 0, not {lv}")
        if window < 1 or not 0 <= hysteresis < 1:
            raise LWACError(f"window >= 1 and hysteresis in [0, 1) are needed, not window={window}, "
                            f"hysteresis={hysteresis}")
        self.levels = sorted(levels, key=lambda lv: -lv.ms)
        self.hysteresis, self.ceiling = hysteresis, ceiling
        self.ratios: deque[float] = deque(maxlen=window)
        self.k = self._best(1.0)

    @property
    def level(self) -> Level:
        return self.levels[self.k]

    @property
    def lam(self) -> float:
        return self.level.lam

    @property
    def slowdown(self) -> float:
        """The running median of measured / expected latency (1.0 before the first inference)."""
        return statistics.median(self.ratios) if self.ratios else 1.0

    def _distance(self, k: int, s: float) -> float:
        return abs(s * self.levels[k].ms - self.target_ms)

    def _best(self, s: float) -> int:
        if self.ceiling:  # the slowest level predicted at or under the budget; the fastest if none is
            under = [k for k, lv in enumerate(self.levels) if s * lv.ms <= self.target_ms]
            return under[0] if under else len(self.levels) - 1
        return min(range(len(self.levels)), key=lambda k: self._distance(k, s))

    def update(self, measured_ms: float, dense_equivalent_ms: float | None = None) -> float:
        """After one inference at the held level: update the slowdown, maybe change level; returns lambda."""
        self.ratios.append(float(measured_ms) / self.level.ms)
        s = self.slowdown
        best = self._best(s)
        if best != self.k:
            if self.ceiling and s * self.level.ms > self.target_ms:
                self.k = best  # over the ceiling: move at once
            elif self._distance(best, s) < self._distance(self.k, s) - self.hysteresis * self.target_ms:
                self.k = best
        return self.lam
