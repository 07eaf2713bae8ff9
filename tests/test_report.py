import json

import pytest

from layerwise.cli import main
from layerwise.errors import ResultsSchemaError
from layerwise.results import Results, Variant, env_info, read_results, validate, write_results


def _png(path, w=4, h=3):
    from PIL import Image
    Image.new("RGB", (w, h), "white").save(path)


def _v(name, acc, **kw):
    base = dict(macs=100, macs_executed=100, params=10, size_bytes=40, latency_ms=None, peak_mem_bytes=None,
                energy_j=None, extra={})
    base.update(kw)
    for key in ("latency_ms", "peak_mem_bytes", "energy_j"):
        if base[key] is None:
            base["extra"] = {key: "not measured here", **base["extra"]}
    return Variant(name=name, accuracy=acc, **base)


def _write(tmp_path, name, acc, figures=("curve.png",)):
    d = tmp_path / name
    d.mkdir()
    for f in figures:
        _png(d / f)
    v = [Variant(name="dense", accuracy=0.98, macs=100, macs_executed=100, params=10, size_bytes=40,
                 latency_ms={"median": 1.0, "iqr": 0.1, "n": 50, "batch": 1}, peak_mem_bytes=1000,
                 energy_j={"value": 0.5, "source": "estimate:cpu", "estimated": True}),
         Variant(name="unit<x>", accuracy=acc, macs=100, macs_executed=40, params=10, size_bytes=40,
                 latency_ms=None, peak_mem_bytes=None, energy_j=None,
                 extra={"latency_ms": "n/a", "peak_mem_bytes": "n/a", "energy_j": "n/a"})]
    write_results(d, Results("unit", "tiny-cnn", "digits", env_info("cpu", 1, 0), v, list(figures)))
    return d


def test_report_has_every_variant_drop_share_estimate_and_figure(tmp_path, capsys):
    a, b = _write(tmp_path, "a", 0.97), _write(tmp_path, "b", 0.95)
    out = tmp_path / "r.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<h2>") == 3                       # the table across methods, then one per directory
    assert "drop vs dense (pt, + = worse)" in page
    assert "<td>+1.00</td>" in page and "<td>+3.00</td>" in page   # 98 - 97 and 98 - 95: worse is +
    assert "40 (40.0 %)" in page
    assert "(est.)" in page and "estimate:cpu" in page
    assert "unit&lt;x&gt;" in page  # escaped
    assert page.count("data:image/png;base64,") == 2
    assert 'width="4" height="3"' in page
    assert "QUICK" not in page and "\u26a0 1.000" not in page   # a full run with a tight spread: no marks
    assert "wrote" in capsys.readouterr().out


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "no results file" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_a_damaged_or_absent_figure_is_named_not_shown_broken(tmp_path):
    from layerwise.report import build_report

    d = _write(tmp_path, "a", 0.97, figures=("curve.png", "gone.png"))
    (d / "curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (d / "gone.png").unlink()
    page = build_report([d], tmp_path / "r.html").read_text()
    assert "data:image/png" not in page
    assert "figure curve.png is not a valid PNG file" in page and "figure gone.png not found" in page


def test_demo_runs_its_steps_through_the_cli_and_builds_one_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--only", "profile", "--out", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "== profile: layerwise profile --model resnet20" in text
    assert (out / "profile" / "results.json").is_file()
    page = (out / "report.html").read_text()
    assert "<h2>profile: resnet20 on digits[" in page    # the demo chooses the input size
    assert "Per layer (" in page and "layer1.0.residual.conv1" in page


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
        r = Results("unit", "tiny-cnn", "fashion-mnist", env_info("cpu", 1, seed), v, quick=seed == 1)
        per.append(with_statistics(r, {"unit<x>": ha, "dense": hb}, compare=[("unit<x>", "dense")], resamples=300))
    d = tmp_path / "v2"
    write_results(d, combine_seeds(per, resamples=300))
    return d


def test_report_shows_ci_seed_spread_and_comparison_verdict(tmp_path):
    from layerwise.report import build_report

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
    # one quick seed makes the combined result a quick run, and the page says so
    assert doc["quick"] is True and "QUICK / SMOKE RUN" in page


def test_report_still_renders_a_v1_file(tmp_path):
    from layerwise.report import build_report

    a = _write(tmp_path, "a", 0.97)
    doc = json.loads((a / "results.json").read_text())
    doc["schema"] = "layerwise.results/1"
    doc["variants"][0]["accuracy_ci"] = "ignored in a /1 file"
    (a / "results.json").write_text(json.dumps(doc))
    page = build_report([a], tmp_path / "r.html").read_text()
    assert "98.00 %" in page and "<td>97.00 %</td><td>+1.00</td>" in page
    assert "CI" not in page.split("<section")[1] and "Paired comparisons" not in page


# ------------------------------------------------------------------ quick marker, spreads, overview

def test_quick_marker_is_written_read_back_and_validated(tmp_path):
    r = Results("unit", "m", "d", env_info("cpu", 1, 0), [_v("dense", 0.5)], quick=True)
    doc = read_results(write_results(tmp_path, r))
    assert doc["quick"] is True and Results.from_dict(doc).quick is True
    assert "quick" not in Results("unit", "m", "d", env_info("cpu", 1, 0), [_v("dense", 0.5)]).to_dict()
    with pytest.raises(ResultsSchemaError, match="'quick' must be true or false"):
        validate({**doc, "quick": "yes"})


def test_quick_runs_are_marked_from_the_top_level_marker_or_a_commands_own_settings(tmp_path):
    from layerwise.report import build_report

    dirs = []
    for name, quick, extra in (("marked", True, {}), ("config", False, {"config": {"quick": True}}),
                               ("full", False, {"config": {"quick": False}})):
        d = tmp_path / name
        write_results(d, Results("lwac", "m", "d", env_info("cpu", 1, 0),
                                 [_v("dense", 0.1), _v("lwac", 0.0938, extra=extra)], quick=quick))
        dirs.append(d)
    page = build_report(dirs, tmp_path / "r.html").read_text()
    sections = page.split("<section")[1:]
    assert ["QUICK / SMOKE RUN" in s for s in sections] == [True, True, False]
    assert 'class="quick-run"' in sections[0] and "quick-run" not in sections[2]
    assert "2 of 3 results directories come from --quick runs" in page
    assert "extra.config.quick is true" in sections[1]


def test_a_latency_spread_wider_than_its_median_is_flagged_and_a_tight_one_is_not(tmp_path):
    from layerwise.report import build_report

    d = tmp_path / "a"
    write_results(d, Results("lwac", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", 0.9, latency_ms={"median": 0.72, "iqr": 8.807, "n": 40, "batch": 1}),
        _v("lwac", 0.9, latency_ms={"median": 0.5, "iqr": 0.49, "n": 40, "batch": 1})]))
    page = build_report([d], tmp_path / "r.html").read_text()
    assert "\u26a0 0.720 ± 8.807 (n=40, b=1)" in page            # iqr 8.807 > median 0.720
    assert "wide spread</b>" in page and "dense latency: 0.720 ± 8.807 ms" in page
    assert "<td>0.500 ± 0.490 (n=40, b=1)</td>" in page          # iqr 0.49 < median 0.5: no mark
    assert "lwac latency: 0.500" not in page
    # the cost ratio built on the noisy latency is flagged too
    assert "\u26a0 0.69× batch-1 latency (median)" in page


def test_the_table_across_methods_has_one_row_per_directory_with_ci_drop_cost_and_verdict(tmp_path):
    from layerwise.report import build_report
    from layerwise.report.overview import overview_table

    u = _write_v2(tmp_path)
    ada = tmp_path / "ada"
    write_results(ada, Results("adalayer", "resnet20", "digits", env_info("cpu", 1, 0), [
        _v("dense", 0.98, size_bytes=1000), _v("adalayer", 0.975, size_bytes=150)]))
    ela = tmp_path / "ela"
    write_results(ela, Results("ela", "resnet20", "digits", env_info("cpu", 1, 0), [
        _v("mrla-b", 0.9, extra={"epoch_time_s": 8.0}), _v("ela", 0.91, extra={"epoch_time_s": 6.0})]))
    prof = tmp_path / "prof"
    write_results(prof, Results("profile", "resnet20", "digits", env_info("cpu", 1, 0), [
        _v(name="dense", acc=None, extra={"accuracy": "not evaluated: untrained"})]))
    docs = [(f"r{i}", read_results(d)) for i, d in enumerate((u, ada, ela, prof))]
    html = overview_table(docs)
    rows = html.split("<tr>")[2:]
    assert len(rows) == 4
    assert "unit&lt;x&gt; vs dense" in rows[0] and "80.00 %" in rows[0] and "-3.33" in rows[0]  # 76.67 - 80
    assert "1.00× executed MACs (50 / 50)" in rows[0] and "no measurable difference" in rows[0]
    assert "adalayer vs dense" in rows[1] and "<td>+0.50</td>" in rows[1]                        # 98 - 97.5
    assert "0.15× packed size (150 / 1,000)" in rows[1] and "no paired comparison" in rows[1]
    assert "ela vs mrla-b" in rows[2] and "<td>-1.00</td>" in rows[2]
    assert "0.75× training time per epoch (median) (6 / 8)" in rows[2]
    assert "one variant: nothing to compare" in rows[3]
    page = build_report([u, ada, ela, prof], tmp_path / "r.html").read_text()
    assert page.index("Across methods") < page.index("<section")
    assert "not evaluated: untrained" in page


# ------------------------------------------------------------------ per-method sections

def test_profile_section_shows_the_per_layer_table_with_shares(tmp_path):
    from layerwise.report import build_report

    layers = [{"name": "conv", "kind": "conv2d", "params": 30, "macs": 300, "input_shape": [1, 3, 8, 8],
               "output_shape": [1, 4, 8, 8], "latency_ms": {"median": 3.0, "iqr": 0.5, "n": 12, "batch": 1}},
              {"name": "fc", "kind": "linear", "params": 10, "macs": 100, "input_shape": [1, 16],
               "output_shape": [1, 10], "latency_ms": {"median": 1.0, "iqr": 2.5, "n": 12, "batch": 1}}]
    d = tmp_path / "p"
    write_results(d, Results("profile", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", None, macs=400, extra={"accuracy": "untrained", "layers": layers})]))
    page = build_report([d], tmp_path / "r.html").read_text()
    # 300 / 400 MACs, 3 / (3 + 1) ms; 1x3x8x8 -> 1x4x8x8
    assert "<td>conv</td><td>conv2d</td><td>30</td><td>300</td><td>75.0 %</td><td>1×3×8×8 → 1×4×8×8</td>" in page
    assert "<td>3.000 ± 0.500</td><td>75.0 %</td>" in page
    assert "\u26a0 1.000 ± 2.500" in page and "layer fc: 1.000 ± 2.500 ms" in page   # iqr 2.5 > median 1


def test_unit_sweep_table_and_plot_share_the_drop_sign(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from layerwise.report import build_report
    from layerwise.viz.unit import accuracy_vs_macs

    drawn = {}
    save = Figure.savefig

    def keep(fig, *a, **k):
        drawn["fig"] = fig
        return save(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", keep)
    d = tmp_path / "u"
    d.mkdir()
    sweep = [{"percentile": 10.0, "val_accuracy": 0.96, "accuracy": 0.95, "remaining": 0.6},
             {"percentile": 30.0, "val_accuracy": 0.95, "accuracy": 0.99, "remaining": 0.4}]
    accuracy_vs_macs({"unit": [(s["remaining"], s["accuracy"]) for s in sweep]}, 0.98, d / "accuracy_vs_macs.png")
    ax = drawn["fig"].axes[0]
    xs, ys = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    # the plot: x = 40 %, 60 % of dense MACs; y = dense - variant = -1, +3 points (+ = worse)
    assert list(xs) == pytest.approx([40.0, 60.0]) and list(ys) == pytest.approx([-1.0, 3.0])
    assert "+ = worse" in ax.get_ylabel()
    write_results(d, Results("unit", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", 0.98), _v("unit", 0.95, macs_executed=60, extra={"sweep": sweep, "percentile": 10.0})],
        ["accuracy_vs_macs.png"]))
    page = build_report([d], tmp_path / "r.html").read_text()
    # the table: the same points with the same sign
    assert "<td><b>10 ◀ chosen</b></td><td>96.00 %</td><td>95.00 %</td><td>+3.00</td><td>60.0 %</td>" in page
    assert "<td>30</td><td>95.00 %</td><td>99.00 %</td><td>-1.00</td><td>40.0 %</td>" in page
    assert "drop vs dense (pt, + = worse)" in page and page.count("data:image/png") == 1


def test_adalayer_lwac_and_ela_sections_show_their_own_tables(tmp_path):
    from layerwise.report import build_report

    ada, lw, el = tmp_path / "ada", tmp_path / "lwac", tmp_path / "ela"
    ada.mkdir()
    _png(ada / "layer_fingerprint.png")
    _png(ada / "architecture_ribbon.png")
    plan = [{"name": "conv", "kind": "conv2d", "params": 200, "params_after": 50, "macs": 900, "prune_ratio": 0.75,
             "bits": 4, "accuracy_contribution": 0.25, "importance": 0.5}]
    write_results(ada, Results("adalayer", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", 0.9), _v("adalayer", 0.9, extra={"layers": plan, "budget": {
            "target_bytes": 150, "packed_bytes": 140, "dense_bytes": 1000, "fraction": 0.14}})],
        ["layer_fingerprint.png", "architecture_ribbon.png"]))
    demo = [{"budget": 0.7, "target_ms": 1.4, "steady_median_ms": 1.2, "ratio_to_dense": 0.6, "contention": 1.0},
            {"budget": 0.7, "target_ms": 1.4, "steady_median_ms": 1.6, "ratio_to_dense": 0.8, "contention": 1.3}]
    write_results(lw, Results("lwac", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", 0.9, extra={"budget_demo": demo}),
        _v("lwac@0.5", 0.8, extra={"budget": {"fraction": 0.5, "steady_state_ratio_vs_dense": 0.62}})]))
    events = [{"epoch": 1, "window": [1, 1], "skipped": ["layer1.1"], "skipped_total": 1, "quantile": 3.5}]
    write_results(el, Results("ela", "m", "d", env_info("cpu", 1, 0), [
        _v("mrla-b", 0.9, extra={"epoch_time_s": 8.0, "epoch_time_iqr_s": 0.3, "epoch_times_s_per_seed": [[8.0] * 3],
                                 "step_time_ms": {"median": 200.0, "iqr": 20.0, "n": 8, "batch": 32}}),
        _v("ela", 0.9, extra={"epoch_time_s": 6.0, "epoch_time_iqr_s": 0.2, "epoch_time_ratio_vs_mrla_b": 0.75,
                              "seeds": [0], "skipped_per_seed": [["layer1.1", "layer2.1"]], "attention_layers": 6,
                              "skip_events_per_seed": [events]})]))
    page = build_report([ada, lw, el], tmp_path / "r.html").read_text()
    assert "<td>conv</td><td>conv2d</td><td>200</td><td>50 (25.0 %)</td><td>900</td><td>75.0 %</td><td>4</td>" in page
    assert "target 150 bytes, packed 140 bytes of 1,000 dense (14.0 % of dense)" in page
    assert page.count("<figure>") == 2 and "figure: latency over time" in page   # lwac wrote no figure
    assert "<td>1.400</td><td>1.200</td><td>0.60×</td><td>1×</td><td>yes</td>" in page
    assert "<td>1.400</td><td>1.600</td><td>0.80×</td><td>1.3×</td><td><b>no</b></td>" in page
    assert "<td>lwac@0.5</td><td>0.5</td><td>0.620</td><td><b>missed</b></td>" in page  # 0.62 > 0.5
    assert "seed 0: 2 removed of 6 attention layers: layer1.1, layer2.1" in page
    assert "<td>1</td><td>[1, 1]</td><td>layer1.1</td><td>1</td><td>3.5</td>" in page
    assert "<td>ela</td><td>6.00 ± 0.20</td>" in page and "<td>mrla-b</td><td>8.00 ± 0.30</td><td>3</td>" in page
    assert "8 runs" not in page and "few runs" in page and "mrla-b step time (n=8)" in page


def test_sections_say_what_an_older_file_lacks_instead_of_failing(tmp_path):
    from layerwise.report import build_report

    dirs = []
    for method, names in (("profile", ["dense"]), ("unit", ["dense", "unit"]), ("adalayer", ["dense", "adalayer"]),
                          ("lwac", ["dense", "lwac"]), ("ela", ["mrla-b", "ela"])):
        d = tmp_path / method
        write_results(d, Results(method, "m", "d", env_info("cpu", 1, 0), [_v(n, 0.9) for n in names]))
        dirs.append(d)
    page = build_report(dirs, tmp_path / "r.html").read_text()
    for what in ("per-layer table: not in this results file (extra.layers of the profiled variant is absent",
                 "UnIT sweep table: not in this results file (extra.sweep of the unit variant is absent",
                 "AdaLayerNet per-layer plan: not in this results file",
                 "figure: layer fingerprint", "budget phases: not in this results file (extra.budget_demo",
                 "removed layers: not in this results file (extra.skipped_per_seed",
                 "epoch and step timings: not in this results file"):
        assert what in page, what


def test_a_method_part_of_another_shape_is_reported_not_raised(tmp_path):
    from layerwise.report import build_report

    d = tmp_path / "u"
    write_results(d, Results("unit", "m", "d", env_info("cpu", 1, 0), [
        _v("dense", 0.9), _v("unit", 0.9, extra={"sweep": "not a list", "curves": {"x": [1, 2]}})]))
    page = build_report([d], tmp_path / "r.html").read_text()
    assert "UnIT sweep table: not in this results file" in page and "<td>90.00 %</td>" in page
