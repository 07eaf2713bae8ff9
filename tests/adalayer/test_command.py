"""`layerwise compress --quick` end to end on the tiny 1-D set: results.json with the four variants,
each accuracy backed by its per-image test hits, and adalayer's three paired comparisons."""

import json

import numpy as np
from torch import nn

from layerwise.adalayer import int8 as int8_module
from layerwise.cli import main
from layerwise.experiments import compress_run
from layerwise.results import decode_hits, read_results

PACKED = ("uniform", "uniform-fl8", "magnitude", "hawq-ilp")


class _Untraceable(nn.Module):
    """Wraps a model in data-dependent control flow that torch.fx cannot trace."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) if x.sum() != 0 else self.inner(x + 1)


def _check_evidence(doc, with_int8: bool):
    v = {x["name"]: x for x in doc["variants"]}
    hits = {}
    for name, x in v.items():
        if x["accuracy"] is None:
            assert "test_hits" not in x and "accuracy_ci" not in x
            continue
        h = decode_hits(x["test_hits"])
        assert h.size == x["test_hits"]["n"] == x["accuracy_ci"]["n"]
        assert float(h.mean()) == x["accuracy"]  # the same pass produced both
        assert x["accuracy_ci"]["low"] <= x["accuracy"] <= x["accuracy_ci"]["high"]
        hits[name] = h
    rivals = [n for n in PACKED if v[n]["accuracy"] is not None]
    rivals = ["dense", *rivals] + (["int8-static"] if with_int8 else []) + \
        (["adalayer-int8"] if v["adalayer-int8"]["accuracy"] is not None else [])
    comps = doc["comparisons"]
    assert [(c["a"], c["b"]) for c in comps] == [("adalayer", r) for r in rivals]
    for c in comps:
        a, b = hits[c["a"]], hits[c["b"]]
        assert c["n"] == a.size == b.size
        assert c["only_a"] == int(np.sum(a & ~b)) and c["only_b"] == int(np.sum(~a & b))
        assert abs(c["difference"] - (a.mean() - b.mean())) < 1e-12
    return v


def test_compress_quick_writes_four_variants_with_evidence_and_reuses_cache(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["compress", "--model", "cnn-lstm", "--dataset", "basic-motions", "--quick", "--threads", "1",
            "--out", str(out), "--budget", "0.4"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Per-layer plan" in text and "rebuilt == fake-quant" in text
    doc = read_results(out)
    assert doc["schema"] == "layerwise.results/2"
    names = [v["name"] for v in doc["variants"]]
    assert names == ["dense", *PACKED, "int8-static", "adalayer", "adalayer-int8"]
    v = _check_evidence(doc, with_int8=True)
    for c in doc["comparisons"]:
        assert c["verdict"] in text
    dense_bytes = v["dense"]["size_bytes"]
    assert v["adalayer"]["size_bytes"] <= 0.4 * dense_bytes
    assert v["adalayer"]["size_bytes"] == (out / "adalayer.lwpk").stat().st_size
    for name in PACKED:  # every packed rival: same fine-tune, at most adalayer's size, its own file
        x = v[name]
        assert x["accuracy"] is not None, x["extra"].get("reason")
        assert x["size_bytes"] == (out / f"{name}.lwpk").stat().st_size <= v["adalayer"]["size_bytes"]
        assert x["extra"]["fine_tune"].startswith("same recipe")
        assert name in text
    assert v["uniform-fl8"]["extra"]["layer_bits"]["head"] == 8  # the output layer, found from the graph
    ada = v["adalayer"]["extra"]
    assert ada["rebuilt_equals_fake_quant"] is True and ada["onnx"]["ok"] is True
    assert [s["kind"] for s in ada["skipped"]] == ["lstm"]
    assert len(ada["layers"]) == 4  # three conv1d + the head
    assert sorted(doc["figures"]) == ["architecture_ribbon.png", "layer_fingerprint.png", "params_per_layer.png"]
    assert all((out / f).stat().st_size > 0 for f in doc["figures"])
    assert ada["sensitivity_cached"] is False

    # int8-static: the static x86 int8 file, calibrated on val, really quantized (the LSTM stays fp32)
    i8 = v["int8-static"]
    e = i8["extra"]
    assert e["flow"] == "fx" and e["backend"] == "x86" and e["calibration_split"] == "val"
    assert e["calibration_samples"] > 0 and e["rebuilt_equals_quantized"] is True
    assert i8["size_bytes"] == (out / "int8-static.pt").stat().st_size < dense_bytes
    assert e["executed"]["quantized_modules"] == {"ConvReLU1d": 3, "Linear": 1}
    assert e["executed"]["float_layers"] == ["lstm.lstm (LSTM)"]
    assert i8["latency_ms"]["median"] > 0 and i8["latency_ms"]["batch"] == 1
    assert "int8-static        fx static PTQ" in text

    # another budget: sensitivities come from the cache; this time the model is one FX cannot trace,
    # so int8-static is recorded with a null accuracy and the reason, and the command still succeeds
    real = int8_module.static_int8
    monkeypatch.setattr(compress_run, "static_int8", lambda model, *a, **k: real(_Untraceable(model), *a, **k))
    (out / "int8-static.pt").write_bytes(b"stale")
    assert main(args[:-1] + ["0.38"]) == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "results.json").read_text())
    again = _check_evidence(doc, with_int8=False)
    assert again["adalayer"]["extra"]["sensitivity_cached"] is True
    assert again["adalayer"]["size_bytes"] <= 0.38 * dense_bytes
    i8 = again["int8-static"]
    assert i8["accuracy"] is None and i8["size_bytes"] is None and i8["latency_ms"] is None
    assert "FX cannot trace" in i8["extra"]["reason"] and not (out / "int8-static.pt").exists()
    assert "int8-static        not measured" in text and "not compared" in text


def test_compress_infeasible_budget_is_one_line_error(tmp_path, capsys):
    args = ["compress", "--model", "cnn-lstm", "--dataset", "basic-motions", "--quick", "--threads", "1",
            "--out", str(tmp_path / "r"), "--budget", "0.01"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("layerwise: error: budget 0.01") and "smallest feasible budget" in err
