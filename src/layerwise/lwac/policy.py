"""Choosing the control-flow policy (neural controller or heuristic rule) on the VALIDATION split.

The paper offers both a compact neural controller and a heuristic rule for the control-flow
engine and does not say when to use which. ``choose_policy`` takes, per candidate policy, only
numbers measured on validation data (the cross-fitted validation accuracy at its chosen lambda
and a validation latency: the median batch-1 latency measured interleaved on validation inputs,
which, unlike a MAC count, includes the controller's own cost) and returns the candidate with
the lowest validation latency among those whose validation accuracy is within ``tolerance`` of
the dense model's. If none is, the most accurate one. It never sees test data: the caller
builds :class:`PolicyStats` from validation only (``layerwise lwac`` chooses before it reads
the test split).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import LWACError


@dataclass(frozen=True)
class PolicyStats:
    val_accuracy: float  # at the policy's chosen lambda (cross-fitted for the neural controller)
    val_latency_ms: float  # median batch-1 latency on validation inputs (interleaved with the others)
    val_iqr_ms: float = 0.0
    est_latency_ratio: float | None = None  # the sweep's estimate (unit latencies x run shares), for the record

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PolicyChoice:
    policy: str
    reason: str
    candidates: dict[str, PolicyStats]
    dense_val_accuracy: float
    tolerance: float

    def to_json(self) -> dict:
        return {"policy": self.policy, "reason": self.reason, "split": "validation",
                "dense_val_accuracy": self.dense_val_accuracy, "tolerance": self.tolerance,
                "candidates": {k: v.to_json() for k, v in self.candidates.items()}}


def choose_policy(candidates: dict[str, PolicyStats], dense_val_accuracy: float, tolerance: float) -> PolicyChoice:
    """Lowest validation latency among the policies within ``tolerance`` of dense validation accuracy."""
    if not candidates:
        raise LWACError("choose_policy needs at least one candidate policy with its validation numbers")
    ok = {k: v for k, v in candidates.items() if v.val_accuracy >= dense_val_accuracy - tolerance - 1e-9}
    if ok:
        best = min(ok, key=lambda k: (ok[k].val_latency_ms, -ok[k].val_accuracy, k))
        reason = (f"lowest validation latency ({ok[best].val_latency_ms:.3f} ms) among policies within "
                  f"{100 * tolerance:g} pt of dense validation accuracy")
    else:
        best = max(candidates, key=lambda k: (candidates[k].val_accuracy, -candidates[k].val_latency_ms, k))
        reason = f"no policy within {100 * tolerance:g} pt of dense on validation: the most accurate one"
    return PolicyChoice(best, reason, dict(candidates), dense_val_accuracy, tolerance)
