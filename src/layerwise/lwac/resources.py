"""Eq. (4)'s cost and the resource pressure, with the sign of every term fixed by construction.

Cost (eq. 4), each term divided by a FIXED reference, never by the other units' values::

    C_i = theta_1 * MACs_i / MACs_dense
        + theta_2 * Latency_i / Latency_dense
        + theta_3 * Power_i / Power_ref,       Power_i = P_now * Latency_i / Latency_dense

``Power_i`` is the share of the current power draw ``P_now`` (watts, from the monitor: RAPL or
the process-CPU-time estimate) attributable to unit i (its share of the dense latency);
``Power_ref`` is the draw the costs were calibrated at (``power_ref_w``; without a reading,
P_now = Power_ref). Dividing by the maximum over units, as a first version did, made the power
term a copy of the latency term and cancelled every reading of the monitor; with fixed
references a doubled power draw doubles the power term, so an energy reading moves decisions.

Resource multiplier (ours: the paper names battery level and memory among the monitor's
readings without saying how they enter eq. 2)::

    m = (1 + w_b * (1 - battery / 100)) * (1 + w_m * max(0, (mem% - floor) / (100 - floor)))

(the battery factor only on battery power; the memory factor only above ``memory_floor`` % of
system memory in use). Both factors are >= 1 and never decrease as the battery drains or memory
fills.

Pressure and decision (eq. 2's argument)::

    p_i = lambda * m * C_i >= 0,   z_i = gamma * R_i - p_i,   bypass  <=>  z_i < logit(threshold)

with R_i in [0, 1] (a probability or a max-normalised relevance), gamma >= 0 and lambda >= 0
(:class:`~layerwise.lwac.config.LWACConfig` and ``LWACModel.set_lambda`` reject negatives). So
more cost, a larger lambda, a lower battery, fuller memory or a higher power draw can only raise
p_i, lower z_i and never un-bypass a unit.
"""

from __future__ import annotations

from collections.abc import Sequence

from .equations import cost


def unit_costs(macs: Sequence[float], latency_ms: Sequence[float], dense_macs: float, dense_ms: float,
               theta: Sequence[float], power_w: float | None = None, power_ref_w: float | None = None) -> list[float]:
    """C_i of eq. (4) per unit, with fixed references (see the module docstring); all >= 0."""
    f_ref = float(dense_macs) if dense_macs and dense_macs > 0 else (max(macs) if macs and max(macs) > 0 else 1.0)
    l_ref = float(dense_ms) if dense_ms and dense_ms > 0 else (sum(latency_ms) or 1.0)
    p_ratio = 1.0
    if power_w is not None and power_ref_w is not None and power_ref_w > 0:
        p_ratio = max(0.0, float(power_w)) / float(power_ref_w)
    out = []
    for m, lat in zip(macs, latency_ms):
        f = max(0.0, float(m)) / f_ref
        lt = max(0.0, float(lat)) / l_ref
        out.append(cost(f, lt, lt * p_ratio, theta))  # eq. (4)
    return out


def battery_factor(battery_percent: float | None, power_plugged: bool | None, weight: float) -> float:
    """1 + w (1 - battery/100) on battery power; 1 on mains or without a battery."""
    if battery_percent is None or power_plugged is not False:
        return 1.0
    b = min(100.0, max(0.0, float(battery_percent)))
    return 1.0 + weight * (1.0 - b / 100.0)


def memory_factor(memory_percent: float | None, weight: float, floor: float) -> float:
    """1 + w * max(0, (mem% - floor) / (100 - floor)); 1 without a reading."""
    if memory_percent is None or weight == 0:
        return 1.0
    m = min(100.0, max(0.0, float(memory_percent)))
    return 1.0 + weight * max(0.0, (m - floor) / max(1e-9, 100.0 - floor))


def multiplier(battery_percent: float | None, power_plugged: bool | None, memory_percent: float | None, *,
               battery_weight: float, memory_weight: float, memory_floor: float) -> float:
    """m >= 1: the battery factor times the memory factor."""
    return (battery_factor(battery_percent, power_plugged, battery_weight)
            * memory_factor(memory_percent, memory_weight, memory_floor))


def pressure(lam: float, mult: float, unit_cost: float) -> float:
    """Eq. (2)'s cost term lambda * m * C_i (>= 0 for lambda, m, C_i >= 0)."""
    return lam * mult * unit_cost


def bypassed(relevance: float, press: float, gamma: float, z_threshold: float) -> bool:
    """Hard gate: alpha = sigmoid(gamma R - p) < threshold  <=>  gamma R - p < logit(threshold) (eq. 2)."""
    return gamma * relevance - press < z_threshold
