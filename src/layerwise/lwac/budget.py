"""The latency-budget controller: PI control of lambda so measured latency tracks a target.

The target is ``fraction * dense_ms``. After every inference the measured latency ``y`` gives the
relative error ``e = clip((y - target) / target, -e_max, e_max)`` (clipped so one latency spike
from another process cannot throw lambda about; a symmetric clip also keeps the loop close to
tracking the MEDIAN, which is what the budget is stated in), and

    u = clip(u0 + kp * e + ki * sum(e), 0, 1),   lambda = u * lam_max

(a positional PI law; the integral only accumulates while ``u`` is not saturated in the
direction of the error: anti-windup). More latency than the target raises lambda, which raises
every unit's pressure lambda * C_i in eq. (2) and so bypasses more units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import LWACError, check_budget


@dataclass
class PIController:
    target_ms: float
    lam_max: float
    kp: float = 0.3
    ki: float = 0.02
    u0: float = 0.0
    e_max: float = 0.2
    integral: float = 0.0
    u: float = field(default=0.0, init=False)

    def __post_init__(self):
        if not self.target_ms > 0:
            raise LWACError(f"latency target must be positive, not {self.target_ms} ms")
        if not self.lam_max > 0:
            raise LWACError(f"lam_max must be positive, not {self.lam_max}")
        self.u = min(1.0, max(0.0, self.u0 + self.ki * self.integral))

    @property
    def lam(self) -> float:
        return self.u * self.lam_max

    def update(self, measured_ms: float) -> float:
        e = (measured_ms - self.target_ms) / self.target_ms
        e = max(-self.e_max, min(self.e_max, e))
        candidate = self.u0 + self.kp * e + self.ki * (self.integral + e)
        if not ((candidate > 1.0 and e > 0) or (candidate < 0.0 and e < 0)):
            self.integral += e  # anti-windup: do not integrate into saturation
        self.u = min(1.0, max(0.0, self.u0 + self.kp * e + self.ki * self.integral))
        return self.lam


def budget_controller(fraction: float, dense_ms: float, lam_max: float, **gains) -> PIController:
    """A PI controller for a budget of ``fraction`` (in (0, 1]) of the dense latency ``dense_ms``."""
    f = check_budget(fraction)
    return PIController(target_ms=f * dense_ms, lam_max=lam_max, **gains)
