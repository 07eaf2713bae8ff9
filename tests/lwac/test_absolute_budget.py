"""Absolute budgets (ms per input) and a controller that reacts to the wall-clock latency it
measures: when every inference gets slower (here: a pre-hook on the stem that sleeps, a stand-in
for a competing process that the runtime cannot tell apart from one), lambda rises and more is
bypassed; a relative budget could not see the difference, an absolute one must."""

import time

import pytest
import torch

from layerwise.lwac import LWACConfig, LWACError, attach


def test_dense_latency_is_measured_as_a_whole(resnet, x16):
    lw = attach(resnet, x16, latency_n=3)
    assert lw.dense_ms is not None and lw.dense_ms > 0


def test_bad_absolute_budget_is_refused(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=1)
    for bad in (0, -1.0, float("nan"), "fast"):
        with pytest.raises(LWACError, match="milliseconds"):
            lw.set_latency_target(bad)


def test_absolute_budget_controller_reacts_to_slower_inferences(resnet, x16):
    lw = attach(resnet, x16, LWACConfig(policy="heuristic"), latency_n=3)
    lw.state.relevance = [0.5] * len(lw.units)
    top = 1.0 / min(lw.state.cost[i] for i in lw.bypassable)  # at lambda = top everything is bypassed
    lw.lam_range = (0.0, top)
    target = 3.0 * lw.dense_ms + 5.0  # comfortably met while nothing slows the model down
    pi = lw.set_latency_target(target)
    assert pi.target_ms == pytest.approx(target)
    slow = {"on": False}

    def contention(mod, args):
        if slow["on"]:
            time.sleep(max(0.05, 3e-3 * target))  # every inference over 3x the target, however loaded the machine

    h = lw.model.stem.register_forward_pre_hook(contention)
    try:
        with torch.no_grad():
            for _ in range(8):
                lw(x16)
            quiet_lam = lw.state.lam
            slow["on"] = True
            lams = []
            for _ in range(8):
                lw(x16)
                lams.append(lw.state.lam)
    finally:
        h.remove()
    assert lams[-1] > quiet_lam, (quiet_lam, lams)
    assert all(b >= a - 1e-12 for a, b in zip(lams, lams[1:])), lams  # it keeps pushing while over the target
