import random
import statistics

import pytest

from layerwise.lwac import LWACError, PIController, budget_controller, check_budget


def test_pi_controller_converges_on_a_simulated_plant():
    # plant: latency falls linearly with u (more bypass), with +-10 % noise; target 0.7 of dense
    rng = random.Random(0)
    dense = 10.0
    pi = budget_controller(0.7, dense, lam_max=1.0)
    seen = []
    for _ in range(600):
        y = dense * (1.0 - 0.6 * pi.u) * (1 + rng.uniform(-0.1, 0.1))
        pi.update(y)
        seen.append(y)
    steady = statistics.median(seen[300:])
    assert steady == pytest.approx(7.0, rel=0.03)
    assert 0.4 < pi.u < 0.6  # the plant needs u = 0.5


def test_pi_controller_saturates_without_windup():
    pi = PIController(target_ms=1.0, lam_max=2.0)
    for _ in range(1000):
        pi.update(10.0)  # unreachable target: u pinned at 1
    assert pi.lam == pytest.approx(2.0, rel=0.01)
    for _ in range(5):
        pi.update(0.1)  # far below target: leaves saturation at once (no wound-up integral)
    assert pi.u < 0.95


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan"), "x"])
def test_budget_outside_0_1_is_refused(bad):
    with pytest.raises(LWACError, match=r"outside \(0, 1\]|must be a number"):
        check_budget(bad)


def test_budget_1_is_allowed():
    assert check_budget(1) == 1.0
