import json

from layerwise.cli import main
from layerwise.results import read_results


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


def test_bad_budget_is_one_line_error(tmp_path, capsys):
    code = main(["lwac", "--model", "multibranch-cnn", "--dataset", "basic-motions", "--latency-budget", "1.5",
                 "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside (0, 1]" in err[0]
