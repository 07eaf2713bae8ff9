"""layerwise demo: one shared base model, steps reused on a second run."""

from __future__ import annotations

import json

from layerwise.cli import main


def test_demo_trains_the_base_once_and_reuses_finished_steps(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--only", "profile", "--out", str(out), "--threads", "1"]
    rc = main(argv)
    first, err = capsys.readouterr()
    assert rc == 0, err
    assert "== base: layerwise train" in first and "== profile: layerwise profile" in first
    prof = json.loads((out / "profile" / "results.json").read_text())
    # the profile evaluated the base the demo trained (a checkpoint was passed: accuracy is measured)
    assert prof["variants"][0]["accuracy"] is not None
    assert str(out / "base" / "checkpoint.pt") in json.loads((out / "profile" / "demo.json").read_text())["argv"]
    assert (out / "report.html").is_file()

    rc = main(argv)
    second, err = capsys.readouterr()
    assert rc == 0, err
    assert "== base: reused" in second and "== profile: reused" in second
    assert main([*argv, "--fresh"]) == 0
    assert "== profile: layerwise profile" in capsys.readouterr().out


def test_the_demo_stacks_the_methods_on_the_shared_base(tmp_path):
    """The stacked variant (`layerwise stack`: AdaLayerNet, then UnIT, then LWAC) is a step of the
    demo, after the single methods, on the base model they share, with a command line the stack
    parser accepts; its folder goes into the report like the others'."""
    import argparse

    from layerwise.cli import build_parser
    from layerwise.experiments import demo

    names = [s for s, _ in demo.STEPS]
    assert names.index("stack") > max(names.index(m) for m in ("unit", "compress", "lwac"))
    assert demo.NEEDS["stack"] == "base"
    args = argparse.Namespace(out=tmp_path, seed=0, device="cpu", threads=1, quick=True)
    argv = demo.step_argv("stack", dict(demo.STEPS)["stack"], args)
    parsed = build_parser("stack").parse_args(argv)
    assert parsed.command == "stack" and parsed.quick and parsed.model == "resnet20"
    assert parsed.checkpoint == tmp_path / "base" / "checkpoint.pt" and parsed.out == tmp_path / "stack"


def test_the_whole_quick_demo_runs_every_method_and_the_stack_into_one_report(tmp_path, capsys):
    """`layerwise demo --quick` end to end, once (the CI smoke run of the main job): every step's
    results marked quick, and one report with a section per step."""
    from layerwise.experiments import demo

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--threads", "1"]) == 0
    text = capsys.readouterr().out
    page = (out / "report.html").read_text()
    for step, argv in demo.STEPS:
        if step == "base":
            continue
        doc = json.loads((out / step / "results.json").read_text())
        assert doc.get("quick") is True, step
        assert f"== {step}: layerwise {argv[0]}" in text
        assert f"<h2>{doc['method']}: {doc['model']} on " in page, step
    stack = json.loads((out / "stack" / "results.json").read_text())
    assert {"dense", "adalayer", "adalayer+unit", "adalayer+unit+lwac"} <= {v["name"] for v in stack["variants"]}
    assert "report: " in text
