"""The knobs of LWAC in one dataclass, with the paper's symbol beside each."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import LayerwiseError

MODES = ("soft", "hard")
POLICIES = ("neural", "heuristic", "learned")


class LWACError(LayerwiseError):
    """Bad input to LWAC (a model with no calibratable unit, a budget outside (0, 1], ...)."""


@dataclass
class LWACConfig:
    mode: str = "hard"  # "soft": h~ = alpha*h (eq. 1); "hard": alpha < threshold -> unit not computed
    # "neural": compact controller on the unit's input, fitted to bypass labels on validation;
    # "heuristic": eq. 2 with tracked R (training-free); "learned": gates trained jointly with the
    # network (straight-through hard gates, eq. 5; :mod:`layerwise.lwac.joint`)
    policy: str = "neural"
    gamma: float = 1.0  # gamma_i of eq. 2 (same for every unit); >= 0
    lam: float = 0.0  # lambda_i of eq. 2 (one global lambda scaled per unit by C_i); >= 0; the PI controller moves it
    eta: float = 0.1  # eta of eq. 3 (weight of the activation entropy)
    theta: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # theta_1..3 of eq. 4 (FLOPs, latency, power)
    window: int = 32  # T of eq. 3: passes in the relevance tracker's sliding window (a ring buffer)
    threshold: float = 0.5  # hard mode: a unit whose alpha is below this is bypassed
    smoothing: float = 0.0  # EMA factor on the resource pressure lambda*C_i between inferences (0 = none)
    track_every: int = 16  # every k-th inference the ACUs time their unit and push H(h) to the tracker
    hidden: int = 0  # hidden width of each unit's neural controller (0: linear, one op at run time)
    summary: str = "mean"  # feature summariser: "mean" (one fused op at batch 1), "mean_rms" or "auto"
    adapt: bool = False  # refresh C_i (monitor latencies) and R_i (entropy proxy) between inferences
    battery_weight: float = 1.0  # pressure multiplier 1 + w * (1 - battery fraction) on battery power
    memory_weight: float = 1.0  # pressure multiplier 1 + w * (memory use above the floor, as a fraction)
    memory_floor: float = 80.0  # % of system memory in use below which memory adds no pressure
    power_ref_w: float | None = None  # eq. 4's power reference (W); None: the first monitor reading

    def validate(self) -> "LWACConfig":
        if self.mode not in MODES:
            raise LWACError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.policy not in POLICIES:
            raise LWACError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if not 0.0 < self.threshold < 1.0:
            raise LWACError(f"threshold must be in (0, 1), not {self.threshold}: e.g. 0.5")
        if not 0.0 <= self.smoothing < 1.0:
            raise LWACError(f"smoothing must be in [0, 1), not {self.smoothing}")
        if self.window < 1 or self.track_every < 1:
            raise LWACError(f"window ({self.window}) and track_every ({self.track_every}) must be >= 1")
        if len(self.theta) != 3 or any(t < 0 for t in self.theta) or sum(self.theta) <= 0:
            raise LWACError(f"theta must be three non-negative weights, not all 0, not {self.theta}")
        if self.summary not in ("auto", "mean", "mean_rms"):
            raise LWACError(f"summary must be 'auto', 'mean' or 'mean_rms', not {self.summary!r}")
        if self.hidden < 0:
            raise LWACError(f"hidden must be >= 0, not {self.hidden}")
        for name in ("gamma", "lam", "eta", "battery_weight", "memory_weight"):
            if not math.isfinite(getattr(self, name)):
                raise LWACError(f"{name} must be a finite number, not {getattr(self, name)}")
        for name in ("gamma", "lam", "battery_weight", "memory_weight"):  # signs fixed: pressure only ever bypasses more
            if getattr(self, name) < 0:
                raise LWACError(f"{name} must be >= 0, not {getattr(self, name)}: a negative value would make more "
                                "cost or less battery bypass LESS")
        if not 0.0 <= self.memory_floor < 100.0:
            raise LWACError(f"memory_floor must be a percentage in [0, 100), not {self.memory_floor}")
        if self.power_ref_w is not None and not (math.isfinite(self.power_ref_w) and self.power_ref_w > 0):
            raise LWACError(f"power_ref_w must be a positive number of watts, not {self.power_ref_w}")
        return self

    @property
    def z_threshold(self) -> float:
        """alpha < threshold  <=>  gamma*R - lambda*C < logit(threshold) (sigmoid is monotone)."""
        return math.log(self.threshold / (1.0 - self.threshold))


def check_budget(fraction: float) -> float:
    """A latency budget is a fraction of dense latency in (0, 1]."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise LWACError(f"latency budget must be a number in (0, 1], not {fraction!r}") from None
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise LWACError(f"latency budget {fraction} is outside (0, 1]: give a fraction of dense latency, e.g. 0.7")
    return f


def check_latency_ms(ms: float) -> float:
    """An absolute latency budget is a positive number of milliseconds per input."""
    try:
        v = float(ms)
    except (TypeError, ValueError):
        raise LWACError(f"latency budget must be a number of milliseconds, not {ms!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise LWACError(f"latency budget {ms} ms is not a positive number of milliseconds: e.g. --latency-budget-ms 2.5")
    return v
