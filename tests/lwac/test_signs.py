"""Signs fixed by construction: more cost, a larger lambda, a lower battery, fuller memory or a
higher power draw never means LESS bypassing; eq. (4)'s terms are normalised by fixed references,
so the monitor's power and memory readings can change a decision."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.lwac import LWACConfig, LWACError, SimulatedMonitor, attach
from layerwise.lwac.monitor import ResourceState
from layerwise.lwac.resources import multiplier, unit_costs
from layerwise.models import build_model

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    m = build_model("resnet20", SHAPE, 4).eval()
    x1 = torch.randn(1, *SHAPE)
    out = {}
    for pol in ("heuristic", "neural"):
        lw = attach(m, x1, LWACConfig(policy=pol), latency_n=1)
        if pol == "neural":  # non-trivial controllers: R(x) varies with the input
            g = torch.Generator().manual_seed(1)
            for a in lw.acus:
                with torch.no_grad():
                    a.controller.fc2.weight.copy_(torch.randn(a.controller.fc2.weight.shape, generator=g) * 0.2)
                a.controller.fuse()
        out[pol] = lw
    return out


resource = st.fixed_dictionaries({
    "lam": st.floats(0.0, 5.0), "battery": st.floats(0.0, 100.0), "memory": st.floats(0.0, 100.0),
    "power": st.floats(1.0, 50.0)})


def _apply(lw, r):
    lw.power_ref_w = 10.0
    lw.buffer.publish(ResourceState(battery_percent=r["battery"], power_plugged=False,
                                    memory_percent=r["memory"], power_w=r["power"]))
    lw.refresh_resources()
    lw.set_lambda(r["lam"])


@settings(max_examples=40, deadline=None)
@given(a=resource, more=resource, rel=st.lists(st.floats(0.0, 1.0), min_size=6, max_size=6),
       seed=st.integers(0, 2**16))
def test_more_pressure_never_bypasses_less(models, a, more, rel, seed):
    # state b: every reading at least as bad as in state a
    b = {"lam": a["lam"] + more["lam"], "battery": a["battery"] * more["battery"] / 100.0,
         "memory": a["memory"] + (100.0 - a["memory"]) * more["memory"] / 100.0,
         "power": a["power"] + more["power"]}
    x = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(seed))
    # heuristic: the whole model (R is per unit), the set of bypassed units only grows
    lw = models["heuristic"]
    lw.state.relevance = list(rel)
    sets = []
    for r in (a, b):
        _apply(lw, r)
        assert all(p >= 0 for p in lw.state.pressure)
        lw.reset_counts()
        with torch.no_grad():
            lw(x)
        sets.append({i for i, n in enumerate(lw.state.bypassed) if n})
    assert sets[0] <= sets[1], (a, b, sets)
    # neural: per unit on the same input reaching it, z = gamma R(x) - lambda m C_i never rises
    lw = models["neural"]
    seen = {}
    hooks = [acu.register_forward_pre_hook(lambda m, args, i=acu.unit_index: seen.__setitem__(i, args[0]))
             for acu in lw.acus]
    with torch.no_grad(), lw.pinned():
        lw(x)
    for h in hooks:
        h.remove()
    zs = []
    for r in (a, b):
        _apply(lw, r)
        zs.append([lw.acus[i].score(seen[i]) for i in range(len(lw.units))])
    assert all(zb <= za + 1e-9 for za, zb in zip(*zs)), (a, b, zs)
    assert all(0.0 <= lw.acus[i].controller.relevance_one(seen[i]) <= 1.0 for i in range(len(lw.units)))


def test_negative_lambda_gamma_or_weights_are_refused(models):
    with pytest.raises(LWACError, match="lambda must be >= 0"):
        models["heuristic"].set_lambda(-0.1)
    for field in ("gamma", "lam", "battery_weight", "memory_weight"):
        with pytest.raises(LWACError, match=f"{field} must be >= 0"):
            LWACConfig(**{field: -1.0}).validate()


def test_eq4_terms_use_fixed_references_hand_worked():
    # C_i = 0.2 F_i/F + 0.3 L_i/L + 0.5 (L_i/L)(P/P_ref); F = 100, L = 8 ms, P = 20 W, P_ref = 10 W
    c = unit_costs([10, 30], [1.0, 3.0], 100, 8.0, (0.2, 0.3, 0.5), power_w=20.0, power_ref_w=10.0)
    assert c == pytest.approx([0.2 * 0.1 + 0.3 * 0.125 + 0.5 * 0.125 * 2, 0.2 * 0.3 + 0.3 * 0.375 + 0.5 * 0.375 * 2])
    same = unit_costs([10, 30], [1.0, 3.0], 100, 8.0, (0.2, 0.3, 0.5), power_w=10.0, power_ref_w=10.0)
    assert c[0] > same[0] and c[1] > same[1]  # the power term did not cancel
    # battery only on battery power, memory only above the floor
    assert multiplier(50.0, False, None, battery_weight=1.0, memory_weight=1.0, memory_floor=80.0) == 1.5
    assert multiplier(50.0, True, None, battery_weight=1.0, memory_weight=1.0, memory_floor=80.0) == 1.0
    assert multiplier(None, None, 90.0, battery_weight=1.0, memory_weight=1.0, memory_floor=80.0) == 1.5
    assert multiplier(None, None, 70.0, battery_weight=1.0, memory_weight=1.0, memory_floor=80.0) == 1.0


def test_power_and_memory_readings_change_a_decision_in_the_loop():
    """Through the runtime loop (SimulatedMonitor, one reading per inference): a unit that runs at
    the reference power and normal memory is bypassed when power doubles, or memory fills."""
    torch.manual_seed(0)
    m = build_model("resnet20", SHAPE, 4).eval()
    x = torch.randn(1, *SHAPE)
    lw = attach(m, x, LWACConfig(policy="heuristic"), latency_n=1)
    lw.state.relevance = [0.5] * len(lw.units)
    trace = [{"power_w": 10.0, "memory_percent": 50.0},  # the reference reading
             {"power_w": 10.0, "memory_percent": 50.0},
             {"power_w": 20.0, "memory_percent": 50.0},  # power doubles
             {"power_w": 10.0, "memory_percent": 50.0},
             {"power_w": 10.0, "memory_percent": 96.0}]  # memory nearly full
    lw.use_monitor(SimulatedMonitor(lw.buffer, trace))
    u = max(lw.bypassable, key=lambda i: lw.state.cost[i])
    lw.set_lambda(0.95 * 0.5 / lw.state.cost[u])  # just below the bypass point of unit u
    runs = []
    with torch.no_grad():
        for _ in range(len(trace)):
            lw.reset_counts()
            lw(x)  # decides with the current reading, then the monitor publishes the next
            runs.append(lw.state.bypassed[u])
    assert runs == [0, 0, 1, 0, 1], runs
