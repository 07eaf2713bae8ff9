"""The level controller: an absolute budget held by choosing among measured depths.

Hand-worked cases of its rule (the held level's latency, scaled by the running median slowdown,
is the one nearest the budget), its laws (a slower machine or a tighter budget never picks a
slower level), and :func:`measure_levels` on a small ResNet: distinct depths, slowest first."""

import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.lwac import LWACConfig, LWACError, attach
from layerwise.lwac.levels import Level, LevelController, measure_levels


def _levels(*ms):
    return [Level(lam=float(i), ms=m, bypassed_per_input=float(i), lams=(float(i), float(i))) for i, m in enumerate(ms)]


def test_it_starts_at_the_level_nearest_the_budget_and_follows_a_slowdown():
    ctl = LevelController(2.1, _levels(3.0, 2.0, 1.0), window=3, hysteresis=0.0)
    assert ctl.level.ms == 2.0 and ctl.lam == 1.0  # |2.0 - 2.1| = 0.1 is the nearest
    # every inference 1.5x slower than expected: predictions 4.5, 3.0, 1.5 -> 1.5 is nearest 2.1 (0.6 < 0.9)
    lams = [ctl.update(1.5 * ctl.level.ms) for _ in range(3)]
    assert ctl.slowdown == pytest.approx(1.5)
    assert lams == [2.0, 2.0, 2.0]  # one ratio (1.5) already predicts 3.0 for the 2 ms level: it moves at once
    assert ctl.level.ms == 1.0


def test_the_slowdown_is_the_median_of_the_last_window_ratios():
    ctl = LevelController(2.0, _levels(2.0), window=3)
    for ms in (2.0, 4.0, 2.2):  # ratios 1.0, 2.0, 1.1: median 1.1 (mean 1.37, min 1.0, first 1.0)
        ctl.update(ms)
    assert ctl.slowdown == pytest.approx(1.1)
    ctl.update(3.0)  # the window drops the oldest ratio: 2.0, 1.1, 1.5 -> 1.5
    assert ctl.slowdown == pytest.approx(1.5)


def test_one_preempted_inference_does_not_move_it():
    ctl = LevelController(2.0, _levels(3.0, 2.0, 1.0), window=5)
    for _ in range(4):
        ctl.update(2.0)
    ctl.update(40.0)  # one inference that waited for the CPU
    assert ctl.slowdown == pytest.approx(1.0) and ctl.level.ms == 2.0


def test_hysteresis_keeps_it_from_alternating_between_two_equal_levels():
    ctl = LevelController(1.5, _levels(2.0, 1.0), window=1, hysteresis=0.05)
    first = ctl.level.ms
    seen = set()
    for m in (first * 1.01, first * 0.99, first * 1.02, first * 0.98):  # noise around the held level
        ctl.update(m)
        seen.add(ctl.level.ms)
    assert seen == {first}


def test_ceiling_holds_the_slowest_level_at_or_under_the_budget():
    ctl = LevelController(2.1, _levels(3.0, 2.2, 2.0, 1.0), ceiling=True, window=1)
    assert ctl.level.ms == 2.0  # 2.2 is nearer 2.1, but over it
    ctl.update(2.0 * 1.2)  # 20 % slower: 2.0 -> 2.4, over; 1.0 -> 1.2 is the slowest under
    assert ctl.level.ms == 1.0
    nothing = LevelController(0.5, _levels(3.0, 1.0), ceiling=True)
    assert nothing.level.ms == 1.0  # none fits: the fastest


@settings(max_examples=200, deadline=None)
@given(ms=st.lists(st.floats(0.1, 10.0), min_size=1, max_size=8, unique=True),
       target=st.floats(0.1, 10.0), s1=st.floats(0.5, 3.0), s2=st.floats(0.5, 3.0), ceiling=st.booleans())
def test_a_slower_machine_never_holds_a_slower_level(ms, target, s1, s2, ceiling):
    lo, hi = sorted((s1, s2))

    def held(s, t=target):
        ctl = LevelController(t, _levels(*ms), window=1, hysteresis=0.0, ceiling=ceiling)
        for _ in range(3):
            ctl.update(s * ctl.level.ms)  # the machine slows every level by s
        return ctl.level.ms, ctl

    calm, ctl = held(lo)
    assert held(hi)[0] <= calm + 1e-12
    assert held(lo, 0.8 * target)[0] <= calm + 1e-12  # a tighter budget: never a slower level either
    if not ceiling:  # the held level is the nearest to the budget at this slowdown (hand-computed over all levels)
        assert abs(lo * calm - target) <= min(abs(lo * m - target) for m in ms) + 1e-9


def test_bad_levels_are_refused():
    with pytest.raises(LWACError, match="measure_levels"):
        LevelController(1.0, [])
    with pytest.raises(LWACError, match="positive latency"):
        LevelController(1.0, _levels(0.0))
    with pytest.raises(LWACError, match="milliseconds"):
        LevelController(-1.0, _levels(1.0))
    with pytest.raises(LWACError, match="window"):
        LevelController(1.0, _levels(1.0), window=0)


def _calibrated(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=3)
    lw.state.relevance = [0.5] * len(lw.units)
    top = 1.0 / min(lw.state.cost[i] for i in lw.bypassable)  # at lambda = top everything is bypassed
    lw.lam_range = (0.0, 1.1 * top)
    lw.lam_curve = [(float(v), 1.0) for v in torch.linspace(0, 1.1 * top, 25)]
    return lw


@pytest.fixture
def calibrated(resnet, x16):
    return _calibrated(resnet, x16)


def test_measure_levels_finds_distinct_depths_slowest_first(calibrated, x16):
    torch.manual_seed(3)
    inputs = [torch.randn(1, 3, 16, 16) for _ in range(4)]
    levels = measure_levels(calibrated, inputs, n=5, warmup=1)
    per_input = [lv.bypassed_per_input for lv in sorted(levels, key=lambda lv: lv.lam)]
    assert per_input[0] == 0 and per_input[-1] == len(calibrated.bypassable)  # from nothing to everything bypassed
    assert per_input == sorted(per_input)  # more lambda, more bypassed
    assert len(set(per_input)) == len(levels) >= 3  # the heuristic policy: one path per level, all different
    assert all(lv.lams[0] <= lv.lam <= lv.lams[1] for lv in levels)
    assert [lv.ms for lv in levels] == sorted((lv.ms for lv in levels), reverse=True)  # slowest first
    assert calibrated.budget is None and calibrated.state.lam == 0.0  # measured on clones


def test_a_model_under_the_level_controller_drops_a_level_when_inferences_slow(calibrated, x16):
    # the sleeps stand for the network's time, so that its real compute time (up to 25 ms on a busy
    # machine) cannot decide the outcome
    levels = [Level(lam=0.0, ms=40.0, bypassed_per_input=0, lams=(0, 0)),
              Level(lam=calibrated.lam_range[1], ms=10.0, bypassed_per_input=len(calibrated.bypassable),
                    lams=(0, 0))]
    ctl = calibrated.set_latency_target(40.0, levels=levels, window=3)
    assert isinstance(ctl, LevelController) and calibrated.state.lam == 0.0
    slow = {"ms": 0.0}

    def contention(mod, args):
        time.sleep(slow["ms"] / 1e3)

    h = calibrated.model.stem.register_forward_pre_hook(contention)
    try:
        with torch.no_grad():
            slow["ms"] = 40.0  # about as slow as the slow level says: stays
            for _ in range(3):
                calibrated(x16)
            assert calibrated.state.lam == 0.0 and sum(calibrated.state.bypassed) == 0
            slow["ms"] = 80.0  # twice as slow: 2 x 10 ms is nearer 40 ms than 2 x 40 ms
            for _ in range(3):
                calibrated(x16)
            calibrated.reset_counts()
            calibrated(x16)
    finally:
        h.remove()
    assert calibrated.state.lam == levels[1].lam
    assert sum(calibrated.state.bypassed) == len(calibrated.bypassable)


def test_levels_do_not_depend_on_pressure_smoothing(resnet, x16):
    """With an EMA on the pressure, one set_lambda moves it only part of the way: each level must
    still be what its lambda does once the pressure has settled (the same as without smoothing)."""
    inputs = [x16]
    lw = _calibrated(resnet, x16)
    smoothed = lw.clone()  # the same costs C_i (they hold the latencies measured at attach)
    smoothed.config.smoothing = 0.9
    assert smoothed.state.config.smoothing == 0.9 and lw.config.smoothing == 0.0
    plain = measure_levels(lw, inputs, n=3, warmup=1)
    smooth = measure_levels(smoothed, inputs, n=3, warmup=1)
    def by_lam(levels):  # their order is by measured latency, which noise may swap
        return sorted((lv.lam, lv.bypassed_per_input, lv.lams) for lv in levels)
    assert by_lam(smooth) == by_lam(plain)


def test_hold_lambda_settles_a_smoothed_pressure(resnet, x16):
    lw = _calibrated(resnet, x16)
    lw.config.smoothing = 0.9
    lam = 0.5 * lw.lam_range[1]
    m = lw.resource_multiplier()
    settled = [lam * m * c for c in lw.state.cost]  # eq. (2)'s pressure once the EMA has converged
    lw.set_lambda(lam)
    assert lw.state.pressure != pytest.approx(settled, rel=1e-3)  # one refresh: 10 % of the way
    lw.hold_lambda(lam)
    assert lw.state.lam == lam and lw.state.pressure == pytest.approx(settled, rel=1e-5)
