import json

import pytest

from layerwise.cli import main
from layerwise.results import decode_hits, read_results


def test_quick_run_writes_valid_results(tmp_path, capsys):
    out = tmp_path / "lwac"
    code = main(["lwac", "--model", "multibranch-cnn", "--dataset", "basic-motions", "--quick", "--threads", "1",
                 "--latency-budget", "0.7", "--out", str(out)])
    assert code == 0
    doc = read_results(out)
    names = [v["name"] for v in doc["variants"]]
    assert names[:2] == ["dense", "lwac"] and "lwac@0.7" in names
    lwac = doc["variants"][1]
    assert lwac["macs_executed"] <= lwac["macs"]
    assert set(lwac["extra"]["unit_run_share"]) == {"branches.accelerometer", "branches.gyroscope"}
    assert lwac["energy_j"]["source"]
    assert all((out / f).is_file() for f in doc["figures"]) and len(doc["figures"]) == 6
    assert (out / "base" / "checkpoint.pt").is_file()
    text = capsys.readouterr().out
    assert "ACU overhead" in text and "lwac@0.7" in text
    # every variant's accuracy is a batch-1 test accuracy: its per-image hits and Wilson interval
    n = doc["variants"][0]["extra"]["test_n"]
    hits = {}
    for v in doc["variants"]:
        h = decode_hits(v["test_hits"])
        assert h.size == n and h.mean() == pytest.approx(v["accuracy"], abs=1e-12), v["name"]
        ci = v["accuracy_ci"]
        assert ci["low"] <= v["accuracy"] <= ci["high"] and ci["n"] == n and ci["correct"] == h.sum()
        hits[v["name"]] = h
    # alpha = 1 with nothing bypassed: the dense model's exact decisions
    assert (hits["acu-overhead (alpha=1)"] == hits["dense"]).all()
    other = [x for x in names if x.startswith("lwac-")]
    # static drop-k baselines (both branches are bypassable: k = 1, 2), each against LWAC matched to it
    assert {"static-drop-1", "static-drop-2", "lwac~drop-1", "lwac~drop-2"} <= set(names)
    by = {v["name"]: v for v in doc["variants"]}
    assert by["static-drop-1"]["extra"]["static_drop"]["k"] == 1
    assert by["static-drop-2"]["macs_executed"] < by["static-drop-1"]["macs_executed"] < by["dense"]["macs_executed"]
    assert by["lwac~drop-1"]["extra"]["matched_to"] == "static-drop-1"
    for v in ("lwac", "lwac~drop-1", "static-drop-1"):
        p = by[v]["extra"]["execution_paths"]
        assert 1 <= p["distinct"] <= n and p["share"] == pytest.approx(p["distinct"] / n)
    assert by["static-drop-1"]["extra"]["execution_paths"]["distinct"] == 1
    assert "distinct execution paths" in text
    pairs = ({("lwac", "dense"), ("lwac@0.7", "dense")} | {(x, "dense") for x in other}
             | {("lwac~drop-1", "static-drop-1"), ("lwac~drop-2", "static-drop-2")})
    comps = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    assert set(comps) == pairs
    for (a, b), c in comps.items():
        assert c["n"] == n
        assert c["only_a"] == int((hits[a] & ~hits[b]).sum()) and c["only_b"] == int((~hits[a] & hits[b]).sum())
        assert c["verdict"] in text
        assert c["measurable"] == (not c["low"] <= 0 <= c["high"] and c["mcnemar_p"] < 0.05)
        assert ("no measurable difference" in c["verdict"]) == (not c["measurable"])


def test_bad_budget_is_one_line_error(tmp_path, capsys):
    code = main(["lwac", "--model", "multibranch-cnn", "--dataset", "basic-motions", "--latency-budget", "1.5",
                 "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside (0, 1]" in err[0]
