import pytest

from layerwise.cli import main
from layerwise.results import Results, Variant, env_info, write_results


def _write(tmp_path, name, acc):
    d = tmp_path / name
    fig = d / "curve.png"
    d.mkdir()
    fig.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    v = [Variant(name="dense", accuracy=0.98, macs=100, macs_executed=100, params=10, size_bytes=40,
                 latency_ms={"median": 1.0, "iqr": 0.1, "n": 5, "batch": 1}, peak_mem_bytes=1000,
                 energy_j={"value": 0.5, "source": "estimate:cpu", "estimated": True}),
         Variant(name="unit<x>", accuracy=acc, macs=100, macs_executed=40, params=10, size_bytes=40,
                 latency_ms=None, peak_mem_bytes=None, energy_j=None,
                 extra={"latency_ms": "n/a", "peak_mem_bytes": "n/a", "energy_j": "n/a"})]
    write_results(d, Results("unit", "tiny-cnn", "digits", env_info("cpu", 1, 0), v, ["curve.png"]))
    return d


def test_report_has_every_variant_drop_share_estimate_and_figure(tmp_path, capsys):
    a, b = _write(tmp_path, "a", 0.97), _write(tmp_path, "b", 0.95)
    out = tmp_path / "r.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<h2>") == 2
    assert "-1.00 pt" in page and "-3.00 pt" in page
    assert "40 (40.0 %)" in page
    assert "(est.)" in page and "estimate:cpu" in page
    assert "unit&lt;x&gt;" in page  # escaped
    assert page.count("data:image/png;base64,") == 2
    assert "wrote" in capsys.readouterr().out


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "no results file" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_demo_runs_its_steps_through_the_cli_and_builds_one_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--only", "profile", "--out", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "== profile: layerwise profile --model resnet20" in text
    assert (out / "profile" / "results.json").is_file()
    page = (out / "report.html").read_text()
    assert "profile: resnet20 on digits[3x32x32]" in page
