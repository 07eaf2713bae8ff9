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


def _write_v2(tmp_path):
    """Three seeds of a method and its rival, 10 test images each, combined into one /2 file."""
    import numpy as np

    from layerwise.evidence import combine_seeds, with_statistics

    per = []
    a_hits = [[1] * 8 + [0] * 2, [1] * 9 + [0], [1] * 7 + [0] * 3]
    b_hits = [[1] * 7 + [0] * 3, [1] * 9 + [0], [0] + [1] * 7 + [0] * 2]
    # right with the method only: image 7 of seed 0, image 0 of seed 2; with dense only: image 7 of seed 2
    for seed, ha, hb in zip((0, 1, 2), a_hits, b_hits):
        v = [Variant(name=n, accuracy=float(np.mean(h)), macs=100, macs_executed=50, params=10, size_bytes=40,
                     latency_ms=None, peak_mem_bytes=None, energy_j=None,
                     extra={"latency_ms": "n/a", "peak_mem_bytes": "n/a", "energy_j": "n/a"})
             for n, h in (("unit<x>", ha), ("dense", hb))]
        r = Results("unit", "tiny-cnn", "fashion-mnist", env_info("cpu", 1, seed), v)
        per.append(with_statistics(r, {"unit<x>": ha, "dense": hb}, compare=[("unit<x>", "dense")], resamples=300))
    d = tmp_path / "v2"
    write_results(d, combine_seeds(per, resamples=300))
    return d


def test_report_shows_ci_seed_spread_and_comparison_verdict(tmp_path):
    from layerwise.report import build_report
    from layerwise.results import read_results

    d = _write_v2(tmp_path)
    doc = read_results(d)
    unit = doc["variants"][0]
    page = build_report([d], tmp_path / "r.html").read_text()
    ci = unit["accuracy_ci"]
    assert "80.00 %" in page                                      # mean of 80, 90, 70 %
    assert f"(95 % CI {100 * ci['low']:.2f}-{100 * ci['high']:.2f})" in page
    assert "wilson, pooled over 3 seeds, n=30" in page
    assert f"± {100 * unit['accuracy_std']:.2f} over 3 seeds" in page and "± 10.00 over 3 seeds" in page
    assert "seed 2: 70.00 %" in page and "seeds 0, 1, 2" in page
    assert "Paired comparisons" in page and "unit&lt;x&gt; vs dense: no measurable difference" in page
    assert "+3.33 pt" in page and "2 / 1 (of 30)" in page


def test_report_still_renders_a_v1_file(tmp_path):
    import json

    from layerwise.report import build_report

    a = _write(tmp_path, "a", 0.97)
    doc = json.loads((a / "results.json").read_text())
    doc["schema"] = "layerwise.results/1"
    doc["variants"][0]["accuracy_ci"] = "ignored in a /1 file"
    (a / "results.json").write_text(json.dumps(doc))
    page = build_report([a], tmp_path / "r.html").read_text()
    assert "98.00 %" in page and "97.00 % (-1.00 pt)" in page
    assert "CI" not in page.split("<h2>")[1] and "Paired comparisons" not in page
