"""Compare trade-off curves at equal executed MACs (the paper's Fig. 5 reading).

A curve is a list of ``(remaining_macs_fraction, accuracy)`` points. Both curves must count
executed MACs on the SAME runtime: ``layerwise unit`` passes the common basis of
:mod:`layerwise.unit.accounting` (a runtime that skips every MAC with a zero operand, plus UnIT's
threshold skips), so that zero activations a baseline leaves are credited to it exactly as
UnIT's are; the basis is recorded in the result (``basis``). UnIT's accuracy at a
baseline point's MAC fraction is read off UnIT's curve by linear interpolation between its two
neighbouring points (sorted by MACs); a baseline point outside UnIT's MAC range is not compared
(no extrapolation).
"""

from __future__ import annotations

from dataclasses import dataclass


def interpolate(curve: list[tuple[float, float]], x: float) -> float | None:
    """Accuracy of ``curve`` at MAC fraction ``x`` (linear), ``None`` outside its range."""
    pts = sorted(curve)
    if not pts or x < pts[0][0] - 1e-12 or x > pts[-1][0] + 1e-12:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 - 1e-12 <= x <= x1 + 1e-12:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1]


@dataclass
class EqualMacComparison:
    """UnIT against one baseline at the baseline's points."""

    baseline: str
    points: list[dict]          # remaining, baseline accuracy, unit accuracy, margin (unit - base)
    compared: int
    unit_at_least: int          # points where UnIT's accuracy >= the baseline's
    basis: str = "common"       # the runtime both curves' MACs are counted on

    @property
    def min_margin(self) -> float | None:
        m = [p["margin"] for p in self.points if p["margin"] is not None]
        return min(m) if m else None

    def to_json(self) -> dict:
        return {"baseline": self.baseline, "points": self.points, "compared": self.compared,
                "unit_at_least": self.unit_at_least, "min_margin": self.min_margin,
                "basis": self.basis}


def compare_at_equal_macs(unit_curve, baseline_curve, baseline: str, *,
                          basis: str = "common") -> EqualMacComparison:
    """UnIT's accuracy read at each baseline point's MAC fraction (module docstring); both curves
    on the runtime ``basis`` names (``"common"``: :data:`layerwise.unit.accounting.COMMON_BASIS`)."""
    pts, n, ok = [], 0, 0
    for x, acc in sorted(baseline_curve):
        u = interpolate(unit_curve, x)
        margin = None if u is None else u - acc
        if margin is not None:
            n += 1
            ok += margin >= -1e-12
        pts.append({"remaining": x, "baseline_accuracy": acc, "unit_accuracy": u, "margin": margin})
    return EqualMacComparison(baseline=baseline, points=pts, compared=n, unit_at_least=ok,
                              basis=basis)
