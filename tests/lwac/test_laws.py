"""Law LWAC relies on: with every alpha = 1 (nothing scaled, nothing bypassed) the attached model
computes the base model's function, whichever way alpha = 1 comes about:

* ``pinned()``: every ACU decides, then runs its unit at alpha = 1 (any lambda, any policy);
* hard mode, every bypassable unit forced to run (``forced({i: False})``), even under a lambda
  that would otherwise bypass everything;
* hard mode, heuristic policy, lambda = 0 and relevance 1: alpha = sigmoid(gamma) >= threshold,
  so every unit runs unscaled;
* soft mode, heuristic policy, gamma so large that sigmoid(gamma * R) == 1.0 in floating point:
  h~ = 1.0 * h.

Model: the zoo's resnet20 on a 3x32x32 input with 10 classes, eval mode, random BN statistics.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.lwac import LWACConfig, attach
from layerwise.models import build_model

LAW = settings(max_examples=30, deadline=None)
SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    m = build_model("resnet20", SHAPE, 10)
    for mod in m.modules():  # non-trivial BN statistics so that every residual branch matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def attached(base):
    x1 = torch.zeros(1, *SHAPE)
    with torch.no_grad():
        return {
            "hard-neural": attach(base, x1, LWACConfig(mode="hard"), latency_n=1),
            "hard-heuristic": attach(base, x1, LWACConfig(mode="hard", policy="heuristic"), latency_n=1),
            "soft-neural": attach(base, x1, LWACConfig(mode="soft"), latency_n=1),
            "soft-heuristic": attach(base, x1, LWACConfig(mode="soft", policy="heuristic", gamma=1e3),
                                     latency_n=1),
        }


inputs = st.tuples(st.integers(1, 3), st.integers(0, 2**31 - 1), st.sampled_from([0.1, 1.0, 10.0]))


def _x(spec):
    b, seed, scale = spec
    return torch.randn(b, *SHAPE, generator=torch.Generator().manual_seed(seed)) * scale


def _same(lw, base, x):
    lw.reset_counts()
    with torch.no_grad():
        y, ref = lw(x), base(x)
    assert y.shape == (x.shape[0], 10)
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5), float((y - ref).abs().max())
    assert sum(lw.state.bypassed) == 0
    assert all(e == x.shape[0] for e in lw.state.executed)  # every unit ran on every sample


@LAW
@given(spec=inputs, kind=st.sampled_from(["hard-neural", "hard-heuristic", "soft-neural", "soft-heuristic"]),
       lam=st.floats(0.0, 1e3))
def test_pinned_alpha_one_equals_base(attached, base, spec, kind, lam):
    lw = attached[kind]
    lw.set_lambda(lam)  # whatever lambda would decide, pinned runs every unit at alpha = 1
    with lw.pinned():
        _same(lw, base, _x(spec))


@LAW
@given(spec=inputs, lam=st.floats(0.0, 1e3), kind=st.sampled_from(["hard-neural", "hard-heuristic"]))
def test_hard_mode_forced_to_run_everything_equals_base(attached, base, spec, lam, kind):
    lw = attached[kind]
    lw.set_lambda(lam)
    assert lw.bypassable  # resnet20 has identity-shortcut blocks that could be bypassed
    with lw.forced({i: False for i in lw.bypassable}):
        _same(lw, base, _x(spec))


@LAW
@given(spec=inputs)
def test_hard_heuristic_with_zero_pressure_runs_every_unit_unscaled(attached, base, spec):
    lw = attached["hard-heuristic"]
    lw.state.relevance = [1.0] * len(lw.units)  # z = gamma * 1 - 0 >= logit(0.5) = 0
    lw.set_lambda(0.0)
    _same(lw, base, _x(spec))


@LAW
@given(spec=inputs)
def test_soft_gate_at_alpha_one_equals_base(attached, base, spec):
    lw = attached["soft-heuristic"]
    lw.state.relevance = [1.0] * len(lw.units)
    lw.set_lambda(0.0)
    z = lw.config.gamma * 1.0
    assert 1.0 / (1.0 + torch.exp(torch.tensor(-z, dtype=torch.float64)).item()) == 1.0  # alpha is exactly 1
    _same(lw, base, _x(spec))
