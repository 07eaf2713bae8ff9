"""``layerwise unit`` end to end on a tiny setting, its bad-input errors, shifts and curves."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from layerwise.cli import main
from layerwise.errors import LayerwiseError
from layerwise.experiments.unit_run import VARIANTS, UnitRunConfig
from layerwise.results import decode_hits, validate
from layerwise.unit.curves import compare_at_equal_macs, interpolate
from layerwise.unit.shift import ShiftSpec, rotate, shift_tensor, shifted_dataset


def _by_hand_choice(val_curve, dense_val, max_drop_pt):
    """The largest percentile whose val accuracy is within max_drop_pt of dense (explicit loop)."""
    best = None
    for p, a in sorted(val_curve):
        if a >= dense_val - max_drop_pt / 100 - 1e-12:
            best = p
    return best if best is not None else min(p for p, _ in val_curve)


def _check_evidence(doc, names, pairs, printed, n):
    """Each test-accuracy variant carries its hits (mean = accuracy) and a Wilson interval around
    it; each pair is compared on the same images (discordant counts recomputed here)."""
    v = {x["name"]: x for x in doc["variants"]}
    hits = {}
    for name in names:
        h = decode_hits(v[name]["test_hits"])
        assert h.size == n, name
        assert h.mean() == pytest.approx(v[name]["accuracy"], abs=1e-12), name
        ci = v[name]["accuracy_ci"]
        assert ci["low"] <= v[name]["accuracy"] <= ci["high"] and ci["n"] == n, name
        assert ci["correct"] == int(h.sum()), name
        hits[name] = h
    comps = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    assert set(comps) == set(pairs)
    for a, b in pairs:
        c = comps[(a, b)]
        assert c["n"] == n
        assert c["only_a"] == int((hits[a] & ~hits[b]).sum()) and c["only_b"] == int((~hits[a] & hits[b]).sum())
        assert c["difference"] == pytest.approx(hits[a].mean() - hits[b].mean())
        assert c["low"] <= c["difference"] <= c["high"]
        assert c["verdict"] in printed
        assert c["measurable"] == (not c["low"] <= 0 <= c["high"] and c["mcnemar_p"] < 0.05)
        assert ("no measurable difference" in c["verdict"]) == (not c["measurable"])


def test_quick_run_writes_the_variants_and_three_figures(tmp_path, capsys):
    out = tmp_path / "run"
    # --groups 4: conv1 (6 outputs) and fc (10 outputs) cannot be split in 4 groups
    code = main(["unit", "--model", "tiny-cnn", "--dataset", "digits", "--size", "16", "--quick",
                 "--val-limit", "40", "--test-limit", "40", "--sweep", "20,60", "--groups", "4", "--out", str(out),
                 "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "equal-MAC comparison vs fatrelu" in printed
    # the user's own bound, not the project's internal targets
    assert "done-when" not in printed and "MET" not in printed
    assert "of MACs skipped at" in printed and "your --max-drop 0.5 pt applied on val" in printed
    doc = json.loads((out / "results.json").read_text())
    validate(doc)
    assert [v["name"] for v in doc["variants"]] == list(VARIANTS)
    assert "dense+zero-skip" in VARIANTS
    # every variant's accuracy is a test accuracy: hits, Wilson CI, paired comparisons
    assert doc["schema"] == "layerwise.results/2"
    _check_evidence(doc, VARIANTS, [("unit", "dense"), ("unit", "magnitude"), ("unit", "fatrelu"),
                                    ("unit+fatrelu", "fatrelu")], printed, 40)
    assert "95% CI" in printed
    assert sorted(doc["figures"]) == ["accuracy_vs_macs.png", "mcu_energy.png", "mcu_time.png"]
    for f in doc["figures"]:
        assert (out / f).stat().st_size > 1000
    v = {x["name"]: x for x in doc["variants"]}
    run = v["unit"]["extra"]
    # the conversion actually used (groups 4), its left-alone layers listed with the reason
    conv = run["conversion"]
    assert conv["converted"] == ["features.conv2"]
    assert [(d["name"], d["reason"]) for d in conv["left_alone"]] == [
        ("features.conv1", "nn.Conv2d: 4 threshold groups do not divide 6 outputs"),
        ("fc", "nn.Linear: 4 threshold groups do not divide 10 outputs")]
    assert "features.conv1 (nn.Conv2d: 4 threshold groups do not divide 6 outputs)" in printed
    # one MAC count per run: conv1 6*25*12*12 + conv2 16*150*2*2 + fc 16*10 per input
    assert {x["macs"] for x in doc["variants"]} == {21_600 + 9_600 + 160}
    n = 40                                         # --test-limit 40 test samples
    for name, x in v.items():
        e = x["extra"]
        # common basis: everything counted, minus zero-operand (and UnIT threshold) skips
        executed = (e["counts"]["executed"] + e["left_alone_counts"]["executed"]) / n + e["other_macs"]
        assert x["macs_executed"] == round(executed), name
        assert e["runtime"] == ("unit" if name.startswith("unit") else "zero_skip"), name
        assert x["macs_executed"] <= x["macs"]
    assert v["unit"]["extra"]["left_alone_counts"]["total"] == 40 * (21_600 + 160)
    assert v["dense"]["extra"]["left_alone_counts"]["total"] == 0
    # dense on the common basis IS dense+zero-skip; its own runtime executes every MAC
    assert v["dense"]["macs_executed"] == v["dense+zero-skip"]["macs_executed"] < v["dense"]["macs"]
    assert v["dense"]["extra"]["own_runtime"]["runtime"] == "dense"
    assert v["dense"]["extra"]["own_runtime"]["macs_executed"] == v["dense"]["macs"]
    assert v["magnitude"]["extra"]["own_runtime"]["runtime"] == "sparse_weights"
    # UnIT's threshold removes MACs that zero skipping alone runs
    assert run["counts"]["threshold"] > 0
    assert v["unit"]["macs_executed"] < v["dense+zero-skip"]["macs_executed"]
    assert v["unit"]["latency_ms"] is None and "SIMULATION" in v["unit"]["extra"]["latency_ms"]
    assert v["dense"]["latency_ms"]["n"] >= 1
    assert all(x["energy_j"]["estimated"] for x in doc["variants"])
    assert all(a["ok"] for a in run["execution_agreement"])
    assert set(run["division_agreement"]["overall"]) == {"bitshift", "binary_tree", "bitmask"}
    kt = run["kernel_timing"]
    assert kt["skip_vs_dense"] == pytest.approx(kt["median_us"]["skip-exact"] / kt["median_us"]["dense-kernel"])
    assert kt["clock"] == "time.thread_time_ns" and set(kt["wall_median_us"]) == set(kt["median_us"])
    assert len(run["domain_shift"]) == 3
    assert [p["percentile"] for p in run["sweep"]] == [0.0, 20.0, 60.0]
    # --percentile auto (the default): chosen from the val curve, p20 reported beside it
    assert run["config"]["percentile"] is None and "percentile auto" in printed
    ch = run["percentile_choice"]
    assert ch["split"] == "val" and run["percentile"] == ch["percentile"] in (20.0, 60.0)
    assert ch["val_curve"] == [{"percentile": p["percentile"], "val_accuracy": p["val_accuracy"]}
                               for p in run["sweep"] if p["percentile"] > 0]
    dense_val = ch["dense_val_accuracy"]
    assert v["unit@p20"]["extra"]["percentile"] == 20.0
    # the trade-off curves are on the common basis: UnIT's left end is dense+zero-skip
    p0 = run["sweep"][0]
    assert p0["remaining"] == pytest.approx(v["dense+zero-skip"]["extra"]["macs_executed_exact"]
                                            / v["dense"]["macs"])
    # MCU cost per division method, each at the percentile chosen on ITS OWN val curve
    mbd = run["mcu_by_division"]
    assert set(mbd) == {"exact", "bitshift", "binary_tree", "bitmask"}
    for method, d in mbd.items():
        vc = [(p["percentile"], p["val_accuracy"]) for p in d["percentile_choice"]["val_curve"]]
        assert [p for p, _ in vc] == [20.0, 60.0]
        assert d["percentile"] == _by_hand_choice(vc, dense_val, 0.5), method
        assert f"{method} p{d['percentile']:g}" in printed
    assert mbd["exact"]["percentile"] == run["percentile"]
    assert mbd["bitshift"]["steps"]["average_steps"] > 0 and mbd["exact"]["steps"]["steps"] == 0
    # (division counts differ between methods: their decisions change later layers' inputs)
    assert mbd["bitshift"]["steps"]["divisions"] > 0
    assert "measured" in mbd["bitshift"]["mcu"]["msp430-swmul"]["source"]
    # the magnitude curve records every step of its schedule, val and test, on the common basis
    mc = run["curves"]["magnitude"]
    assert [round(c["sparsity"], 2) for c in mc] == [0.0, 0.05, 0.1]
    assert all("val_accuracy" in c and "macs_executed" in c for c in mc[1:])
    assert all(c["remaining"] <= c["remaining_own_runtime"] for c in mc)
    chosen = [c for c in mc if c.get("chosen")]
    if chosen:
        assert chosen[0]["macs_executed"] == pytest.approx(v["magnitude"]["extra"]["macs_executed_exact"])
    # FATReLU: the selected configuration never skips less on val as the bound grows
    fc = run["curves"]["fatrelu"]
    assert [c["bound_pt"] for c in fc] == sorted(c["bound_pt"] for c in fc)
    assert all(a["val_skipped_fraction"] <= b["val_skipped_fraction"] + 1e-12 for a, b in zip(fc, fc[1:]))
    assert all(c["val_drop_pt"] <= c["bound_pt"] + 1e-9 for c in fc)


@pytest.mark.parametrize("kw, match", [
    ({"percentile": 100.0}, "strictly between 0 and 100"),
    ({"percentile": 0.0}, "strictly between 0 and 100"),
    ({"max_drop": -1.0}, "--max-drop"),
    ({"sweep": (10.0, 120.0)}, "--sweep"),
    ({"division": "newton"}, "--division"),
    ({"mcu_profile": "avr"}, "--mcu-profile"),
    ({"groups": 0}, "--groups"),
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


def test_counted_evaluate_keeps_the_hits_of_its_own_pass():
    from torch.utils.data import TensorDataset

    from layerwise.models import build_model
    from layerwise.train import evaluate, predict
    from layerwise.unit import convert
    from layerwise.unit.accounting import counted_evaluate

    torch.manual_seed(0)
    plain = build_model("tiny-cnn", (1, 16, 16), 10).eval()
    ds = TensorDataset(torch.randn(37, 1, 16, 16), torch.randint(0, 10, (37,)))
    run = counted_evaluate(convert(copy.deepcopy(plain)).model, ds, batch_size=16)
    pred = predict(plain, ds)
    assert run.hits.dtype == torch.bool and run.n == 37
    assert torch.equal(run.hits, pred.predicted == pred.targets)     # T = 0: the dense decisions
    assert run.accuracy == int(run.hits.sum()) / 37 == evaluate(plain, ds).accuracy


def test_equal_mac_interpolation():
    unit = [(0.2, 0.90), (0.4, 0.96), (0.6, 0.98)]
    assert interpolate(unit, 0.3) == pytest.approx(0.93)
    assert interpolate(unit, 0.7) is None
    comp = compare_at_equal_macs(unit, [(0.3, 0.92), (0.5, 0.99), (0.9, 0.99)], "magnitude")
    assert comp.compared == 2 and comp.unit_at_least == 1
    assert comp.min_margin == pytest.approx(0.97 - 0.99)
