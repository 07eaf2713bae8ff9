"""layerwise bench: jobs per seed, resume, seeds combined with statistics, the README section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerwise.cli import main
from layerwise.experiments import bench
from layerwise.results import decode_hits, read_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_bench(tmp_path, monkeypatch):
    """One small UnIT job (digits, 60 test images) in place of the Fashion-MNIST jobs."""
    argv = ("unit", "--model", "tiny-cnn", "--dataset", "digits", "--size", "16", "--quick",
            "--limit", "60", "--sweep", "20,60", "--no-shift", "--threads", "1")
    job = bench.Job("unit-tiny", "unit", argv, argv, (("unit", "dense"), ("unit", "magnitude")), "tiny")
    monkeypatch.setattr(bench, "JOBS", (job,))
    return tmp_path


@pytest.mark.slow
def test_bench_runs_each_seed_once_and_combines_them(tiny_bench, capsys):
    out = tiny_bench / "bench"
    assert main(["bench", "--out", str(out), "--seeds", "0", "1"]) == 0
    first = {s: (out / "unit-tiny" / f"seed{s}" / "bench.json").read_text() for s in (0, 1)}
    # a second call finds both seeds done and runs nothing again
    assert main(["bench", "--out", str(out), "--seeds", "0", "1"]) == 0
    assert "0 runs now, 2 already done" in capsys.readouterr().out
    assert {s: (out / "unit-tiny" / f"seed{s}" / "bench.json").read_text() for s in (0, 1)} == first

    combined = read_results(out / "unit-tiny")
    assert combined["schema"] == "layerwise.results/2"
    seeds = [read_results(out / "unit-tiny" / f"seed{s}") for s in (0, 1)]
    for v in combined["variants"]:
        per = [next(x for x in r["variants"] if x["name"] == v["name"])["accuracy"] for r in seeds]
        assert v["accuracy"] == pytest.approx(sum(per) / 2)
        assert [s["accuracy"] for s in v["seeds"]] == pytest.approx(per)
        ci = v["accuracy_ci"]
        assert ci["n"] == 2 * 60 and ci["low"] <= ci["high"]
    pairs = {(c["a"], c["b"]) for c in combined["comparisons"]}
    assert {("unit", "dense"), ("unit", "magnitude")} <= pairs
    for c in combined["comparisons"]:
        a = next(v for v in combined["variants"] if v["name"] == c["a"])
        b = next(v for v in combined["variants"] if v["name"] == c["b"])
        ha = [h for s in a["seeds"] for h in decode_hits(s["test_hits"])]
        hb = [h for s in b["seeds"] for h in decode_hits(s["test_hits"])]
        assert c["only_a"] == sum(x and not y for x, y in zip(ha, hb))
        assert c["only_b"] == sum(y and not x for x, y in zip(ha, hb))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["jobs"][0]["key"] == "unit-tiny"
    text = (out / "summary.md").read_text()
    assert "| unit |" in text and ("no measurable difference" in text or "ahead" in text)
    # the run time the README states is the sum of the recorded runs
    marks = [json.loads((out / "unit-tiny" / f"seed{s}" / "bench.json").read_text()) for s in (0, 1)]
    assert summary["run_seconds"] == pytest.approx(marks[0]["seconds"] + marks[1]["seconds"])
    assert f"Run time: {summary['run_seconds'] / 60:.0f} min in all" in text and summary["not_run"] == []


def test_readme_section_is_deterministic_and_marked():
    summary = {"seeds": [0, 1, 2], "machine": {"cpu": "x86_64", "cores": 2}, "jobs": [{
        "key": "unit-tiny-cnn", "method": "unit", "what": "UnIT", "quick": False,
        "commands": ["layerwise unit --seed 0"], "seconds": [10.0, 11.0, 12.0],
        "variants": [{"name": "unit", "accuracy": 0.9, "accuracy_std": 0.01,
                      "accuracy_ci": {"low": 0.895, "high": 0.905},
                      "seeds": [{"seed": s, "accuracy": a} for s, a in zip((0, 1, 2), (0.89, 0.90, 0.91))]}],
        "comparisons": [{"verdict": "unit vs dense: no measurable difference (+0.10 pt, ...)"}]}]}
    text = bench.readme_section(summary)
    assert text.startswith(bench.README_BEGIN) and text.endswith(bench.README_END)
    assert "| unit | 90.00 ± 1.00 | 89.00, 90.00, 91.00 | 89.50-90.50 |" in text
    assert "no measurable difference" in text
    assert bench.readme_section(summary) == text


def test_readme_results_section_equals_the_stored_summary():
    # the README's bench section is written by `layerwise bench --readme` from this stored summary
    stored = ROOT / "docs" / "results" / "bench-summary.json"
    readme = (ROOT / "README.md").read_text()
    assert stored.is_file(), "docs/results/bench-summary.json is missing: copy runs/bench/summary.json"
    section = bench.readme_section(json.loads(stored.read_text()))
    assert section in readme, ("README's bench section is out of date: run "
                               "`layerwise bench --readme docs/results/bench-summary.json`")


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{bench.README_BEGIN}\nold\n{bench.README_END}\n\nafter\n")
    summary = {"seeds": [0], "machine": {"cpu": "x", "cores": 2}, "jobs": []}
    assert bench.update_readme(readme, summary) is True
    text = readme.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert bench.update_readme(readme, summary) is False
    readme.write_text("no markers")
    with pytest.raises(Exception, match="no bench section"):
        bench.update_readme(readme, summary)


def test_quick_leaves_out_the_jobs_without_quick_settings(tmp_path, monkeypatch):
    job = bench.Job("deep", "ela", ("ela", "--model", "resnet56", "--dataset", "digits"), None, (), "deep")
    monkeypatch.setattr(bench, "JOBS", (job,))
    assert bench.run_jobs(tmp_path, [0], quick=True) == []
    assert not (tmp_path / "deep").exists()


@pytest.mark.slow
def test_a_shared_base_is_trained_once_per_seed_and_passed_as_checkpoint(tmp_path, monkeypatch):
    common = ("--model", "tiny-cnn", "--dataset", "digits", "--size", "16")
    base_job = bench.Job("base-tiny", "train", ("train", *common, "--epochs", "1"), None, (), "base")
    unit = ("unit", *common, "--checkpoint", bench.base("tiny"), "--quick", "--limit", "40", "--sweep", "30",
            "--no-shift", "--threads", "1")
    jobs = (bench.Job("u1", "unit", unit, None, (("unit", "dense"),), "one"),
            bench.Job("u2", "unit", unit, None, (("unit", "dense"),), "two"))
    monkeypatch.setattr(bench, "BASES", {"tiny": base_job})
    monkeypatch.setattr(bench, "JOBS", jobs)
    records = bench.run_jobs(tmp_path, [3])
    assert [(r["job"], r.get("skipped", False)) for r in records] == [
        ("base-tiny", False), ("u1", False), ("u2", False)]
    ck = tmp_path / "base-tiny" / "seed3" / "checkpoint.pt"
    assert ck.is_file()
    for r in records[1:]:
        assert r["argv"][r["argv"].index("--checkpoint") + 1] == str(ck)
    summary = bench.summarize(tmp_path, [3])
    assert [b["key"] for b in summary["bases"]] == ["base-tiny"]
    assert summary["jobs"][0]["variants"][0]["cost_per_seed"][0] is not None
    assert "**base-tiny**" in bench.readme_section(summary)


def test_summary_only_runs_nothing_and_summarises_what_finished(tiny_bench, capsys):
    out = tiny_bench / "bench"
    assert main(["bench", "--out", str(out), "--seeds", "0", "1", "--summary-only"]) == 0
    text = capsys.readouterr().out
    assert "0 runs now, 0 already done" in text and "No finished bench job yet" in text
    assert not (out / "unit-tiny").exists()


def _cmp(b: str, diff: float, measurable: bool) -> dict:
    return {"a": "adalayer", "b": b, "difference": diff, "measurable": measurable}


def _compress(budget: str, comparisons: list[dict], int8_size: float) -> dict:
    return {"key": f"compress-resnet20-b{budget}", "seeds": [0, 1, 2], "comparisons": comparisons,
            "variants": [{"name": "adalayer", "accuracy": 0.8792, "cost_per_seed": [float(budget)] * 3},
                         {"name": "uniform", "accuracy": 0.877, "cost_per_seed": [float(budget)] * 3},
                         {"name": "int8-static", "accuracy": 0.885, "cost_per_seed": [int8_size] * 3}]}


def test_the_budget_table_says_where_adalayer_wins_ties_and_loses():
    summary = {"jobs": [
        _compress("0.15", [_cmp("dense", -0.0009, False), _cmp("uniform", 0.0075, True),
                           _cmp("int8-static", -0.0005, False), _cmp("adalayer-int8", 0.0, False)], 0.319),
        {"key": "lwac-resnet20", "seeds": [0], "comparisons": [], "variants": []},
        _compress("0.10", [_cmp("dense", -0.006, True), _cmp("uniform", 0.0021, False),
                           _cmp("int8-static", -0.0057, True)], 0.319)]}
    lines = bench.budget_table(summary)
    rows = [ln for ln in lines if ln.startswith("| 0.")]
    # sorted by budget, one column per rival, dense first; adalayer's own int8 run is not a rival
    assert lines[2] == "| budget | seeds | adalayer % | dense | uniform | int8-static |"
    assert rows == ["| 0.10 | 3 | 87.92 | loses (-0.60) | tie (+0.21) | loses (-0.57) |",
                    "| 0.15 | 3 | 87.92 | tie (-0.09) | **wins** (+0.75) | tie (-0.05) |"]
    text = "\n".join(lines)
    # dense is not a rival: 4 comparisons, 1 win (uniform at 0.15), 2 ties, 1 loss (int8-static at 0.10)
    assert "Against the rivals: 1 win, 2 ties and 1 loss of AdaLayerNet in 4 paired comparisons." in text
    assert "Not at the budget's size: int8-static (0.319 at 0.10, 0.319 at 0.15 of the dense file)." in text
    assert bench.budget_table({"jobs": summary["jobs"][:2]}) == []   # one budget: nothing to compare across
    summary["jobs"][0]["quick"] = True                                # a smoke run is no result
    assert bench.budget_table(summary) == []
