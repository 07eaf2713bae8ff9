"""The budget-sweep figure (bench/adalayer_budget_sweep.py) writes a non-empty PNG."""

from layerwise.viz.adalayer import budget_sweep


def test_budget_sweep_figure(tmp_path):
    rows = [{"budget": b, "ada_size_frac": b * 0.95, "ada_accuracy": 0.9 + b, "uni_size_frac": b * 0.94,
             "uni_accuracy": 0.88 + b} for b in (0.15, 0.05)]
    path = budget_sweep(rows, tmp_path / "sweep.png", dense_accuracy=0.98)
    assert path == tmp_path / "sweep.png" and path.stat().st_size > 1000
