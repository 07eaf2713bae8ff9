"""`layerwise compress --quick` end to end on the tiny 1-D set: results.json with the four variants."""

import json

from layerwise.cli import main
from layerwise.results import read_results


def test_compress_quick_writes_four_variants_and_reuses_cache(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["compress", "--model", "cnn-lstm", "--dataset", "basic-motions", "--quick", "--threads", "1",
            "--out", str(out), "--budget", "0.4"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Per-layer plan" in text and "rebuilt == fake-quant" in text
    doc = read_results(out)
    names = [v["name"] for v in doc["variants"]]
    assert names == ["dense", "uniform", "torch-int8", "adalayer"]
    v = {x["name"]: x for x in doc["variants"]}
    dense_bytes = v["dense"]["size_bytes"]
    assert v["adalayer"]["size_bytes"] <= 0.4 * dense_bytes
    assert v["adalayer"]["size_bytes"] == (out / "adalayer.lwpk").stat().st_size
    assert v["uniform"]["size_bytes"] <= v["adalayer"]["size_bytes"]
    ada = v["adalayer"]["extra"]
    assert ada["rebuilt_equals_fake_quant"] is True and ada["onnx"]["ok"] is True
    assert [s["kind"] for s in ada["skipped"]] == ["lstm"]
    assert len(ada["layers"]) == 4  # three conv1d + the head
    assert sorted(doc["figures"]) == ["architecture_ribbon.png", "layer_fingerprint.png", "params_per_layer.png"]
    assert all((out / f).stat().st_size > 0 for f in doc["figures"])
    assert ada["sensitivity_cached"] is False

    assert main(args[:-1] + ["0.38"]) == 0  # another budget: sensitivities come from the cache
    capsys.readouterr()
    again = {x["name"]: x for x in json.loads((out / "results.json").read_text())["variants"]}
    assert again["adalayer"]["extra"]["sensitivity_cached"] is True
    assert again["adalayer"]["size_bytes"] <= 0.38 * dense_bytes


def test_compress_infeasible_budget_is_one_line_error(tmp_path, capsys):
    args = ["compress", "--model", "cnn-lstm", "--dataset", "basic-motions", "--quick", "--threads", "1",
            "--out", str(tmp_path / "r"), "--budget", "0.01"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("layerwise: error: budget 0.01") and "smallest feasible budget" in err
