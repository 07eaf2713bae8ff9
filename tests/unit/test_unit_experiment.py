"""``layerwise unit`` end to end on a tiny setting, its bad-input errors, shifts and curves."""

from __future__ import annotations

import json

import pytest
import torch

from layerwise.cli import main
from layerwise.errors import LayerwiseError
from layerwise.experiments.unit_run import VARIANTS, UnitRunConfig
from layerwise.results import validate
from layerwise.unit.curves import compare_at_equal_macs, interpolate
from layerwise.unit.shift import ShiftSpec, rotate, shift_tensor, shifted_dataset


def test_quick_run_writes_the_variants_and_three_figures(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["unit", "--model", "tiny-cnn", "--dataset", "digits", "--size", "16", "--quick",
                 "--limit", "40", "--sweep", "20,60", "--out", str(out), "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "done-when checks" in printed and "equal-MAC comparison vs fatrelu" in printed
    doc = json.loads((out / "results.json").read_text())
    validate(doc)
    assert [v["name"] for v in doc["variants"]] == list(VARIANTS)
    assert sorted(doc["figures"]) == ["accuracy_vs_macs.png", "mcu_energy.png", "mcu_time.png"]
    for f in doc["figures"]:
        assert (out / f).stat().st_size > 1000
    v = {x["name"]: x for x in doc["variants"]}
    assert v["dense"]["macs_executed"] == v["dense"]["macs"]
    assert v["unit"]["macs_executed"] < v["dense"]["macs"]
    # UnIT skips zero inputs and the threshold; with T > 0 it executes no more than zero skipping
    assert v["unit"]["macs_executed"] <= v["fatrelu"]["macs"]
    assert v["unit"]["latency_ms"] is None and "SIMULATION" in v["unit"]["extra"]["latency_ms"]
    assert v["dense"]["latency_ms"]["n"] >= 1
    assert all(x["energy_j"]["estimated"] for x in doc["variants"])
    run = v["unit"]["extra"]
    assert all(a["ok"] for a in run["execution_agreement"])
    assert set(run["division_agreement"]["overall"]) == {"bitshift", "binary_tree", "bitmask"}
    assert run["kernel_timing"]["skip_vs_dense"] > 0
    assert len(run["domain_shift"]) == 3
    assert [p["percentile"] for p in run["sweep"]] == [0.0, 20.0, 60.0]
    # --percentile auto (the default): chosen from the val curve, p20 reported beside it
    assert run["config"]["percentile"] is None and "percentile auto" in printed
    ch = run["percentile_choice"]
    assert ch["split"] == "val" and run["percentile"] == ch["percentile"] in (20.0, 60.0)
    assert ch["val_curve"] == [{"percentile": p["percentile"], "val_accuracy": p["val_accuracy"]}
                               for p in run["sweep"] if p["percentile"] > 0]
    assert v["unit@p20"]["extra"]["percentile"] == 20.0
    # MCU cost per division method with measured loop steps
    mbd = run["mcu_by_division"]
    assert set(mbd) == {"exact", "bitshift", "binary_tree", "bitmask"}
    assert mbd["bitshift"]["steps"]["average_steps"] > 0 and mbd["exact"]["steps"]["steps"] == 0
    # (division counts differ between methods: their decisions change later layers' inputs)
    assert mbd["bitshift"]["steps"]["divisions"] > 0
    assert "measured" in mbd["bitshift"]["mcu"]["msp430-swmul"]["source"]
    # the magnitude curve records every step of its schedule, val and test
    mc = run["curves"]["magnitude"]
    assert [round(c["sparsity"], 2) for c in mc] == [0.0, 0.05, 0.1]
    assert all("val_accuracy" in c and "macs_executed" in c for c in mc[1:])


@pytest.mark.parametrize("kw, match", [
    ({"percentile": 100.0}, "strictly between 0 and 100"),
    ({"percentile": 0.0}, "strictly between 0 and 100"),
    ({"max_drop": -1.0}, "--max-drop"),
    ({"sweep": (10.0, 120.0)}, "--sweep"),
    ({"division": "newton"}, "--division"),
    ({"mcu_profile": "avr"}, "--mcu-profile"),
    ({"groups": 0}, "--groups"),
    ({"limit": 1}, "--limit"),
])
def test_bad_config_is_one_clear_error(kw, match):
    with pytest.raises(LayerwiseError, match=match):
        UnitRunConfig(**kw).validate()


def test_cli_bad_percentile_exits_2(capsys):
    code = main(["unit", "--model", "tiny-cnn", "--dataset", "digits", "--percentile", "150"])
    assert code == 2
    assert "percentile" in capsys.readouterr().err


def test_rotation_by_zero_is_identity_and_shifts_are_seeded():
    x = torch.randn(3, 1, 12, 12)
    assert torch.allclose(rotate(x, torch.zeros(3)), x, atol=1e-5)
    s = ShiftSpec("both", degrees=10, noise=0.2)
    a = shift_tensor(x, s, torch.Generator().manual_seed(1))
    b = shift_tensor(x, s, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    series = torch.ones(200, 2, 50)
    scaled = shift_tensor(series, ShiftSpec("s", scale=0.3), torch.Generator().manual_seed(0))
    assert float(scaled.min()) >= 0.7 - 1e-6 and float(scaled.max()) <= 1.3 + 1e-6
    assert bool((scaled == scaled[:, :, :1]).all())      # one gain per sample and channel
    with pytest.raises(LayerwiseError, match="rotates images"):
        shift_tensor(series, ShiftSpec("r", degrees=5), torch.Generator())
    ds = shifted_dataset([(torch.zeros(1, 4, 4), 1)] * 2, ShiftSpec("n", noise=1.0), seed=3)
    assert len(ds) == 2 and ds[1][1] == 1


def test_equal_mac_interpolation():
    unit = [(0.2, 0.90), (0.4, 0.96), (0.6, 0.98)]
    assert interpolate(unit, 0.3) == pytest.approx(0.93)
    assert interpolate(unit, 0.7) is None
    comp = compare_at_equal_macs(unit, [(0.3, 0.92), (0.5, 0.99), (0.9, 0.99)], "magnitude")
    assert comp.compared == 2 and comp.unit_at_least == 1
    assert comp.min_margin == pytest.approx(0.97 - 0.99)
