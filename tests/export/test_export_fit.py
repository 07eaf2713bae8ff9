"""The cycle-model fit (layerwise.export.fit): recovers known costs, and its held-out check.

What a user would notice: fitted costs that do not reproduce the measurements they came from, or a
held-out check that silently uses the held-out model's own records.
"""

from __future__ import annotations

import numpy as np
import pytest

from layerwise.errors import LayerwiseError
from layerwise.export.fit import errors, fit_all, leave_one_model_out

# hardware-multiplier costs (multiples of 1/8 cycle: the fit rounds to eighths)
TRUE = {"macs_executed": 41.75, "compares_keep": 12.5, "compares_skip": 9.0, "rows": 3.0,
        "segments": 10.5, "outputs": 92.625, "elementwise": 13.625}


def _records(model: str, seed: int, scale: float = 1.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    recs = []
    for v in range(6):
        per, work = {}, {}
        for layer in range(4):
            w = {k: int(rng.integers(100, 5000)) for k in TRUE}
            w.update(division="exact", divisions=0, division_steps=0, multiply_steps=None)
            # cycles by hand: sum of count x cost (scale: a model whose MAC costs differ)
            cyc = sum(w[k] * c * (scale if k == "macs_executed" else 1.0) for k, c in TRUE.items())
            per[f"l{layer}"], work[f"l{layer}"] = cyc, w
        recs.append({"model": model, "variant": f"v{v}", "multiplier": "hwmul",
                     "cycles": sum(per.values()), "per_layer": per, "work": work})
    return recs


def test_fit_recovers_the_costs_the_cycles_were_made_from():
    recs = _records("a", 0) + _records("b", 1)
    costs = fit_all(recs)["hwmul"]
    assert costs["mac"] == pytest.approx(TRUE["macs_executed"])
    assert costs["compare_branch_skip"] == pytest.approx(TRUE["compares_skip"])
    assert costs["output"] == pytest.approx(TRUE["outputs"])
    assert all(abs(e["error"]) < 1e-9 for e in errors(recs, {"hwmul": costs}))
    # consistent models: holding one out changes nothing
    assert all(abs(e["error"]) < 1e-9 for e in leave_one_model_out(recs))


def test_held_out_check_fits_without_the_held_out_model():
    # model b's MACs cost 30 % more: in the fit the error is shared out, held out b is predicted
    # with a's costs alone, so its MAC-heavy layers come out about 30 % low
    recs = _records("a", 0) + _records("b", 1, scale=1.3)
    held = {e["model"]: e for e in leave_one_model_out(recs) if e["variant"] == "v0"}
    assert set(held) == {"a", "b"} and held["b"]["held_out"] == "b"
    b0 = next(r for r in recs if r["model"] == "b" and r["variant"] == "v0")
    by_hand = sum(w[k] * c for w in b0["work"].values() for k, c in TRUE.items())
    assert held["b"]["predicted"] == pytest.approx(by_hand)
    assert held["b"]["error"] < -0.05


def test_one_model_cannot_be_held_out():
    with pytest.raises(LayerwiseError, match="at least two models"):
        leave_one_model_out(_records("a", 0))
