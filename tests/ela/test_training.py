"""train_ela on a tiny run, and the ``layerwise ela`` command end to end (--quick)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.data import Subset

from layerwise.cli import main
from layerwise.data import load_dataset
from layerwise.ela import ElaConfig, train_ela
from layerwise.errors import LayerwiseError
from layerwise.models import build_model
from layerwise.models.mrla import mrla_blocks
from layerwise.experiments.ela_run import VariantRun, comparison_pairs, with_evidence
from layerwise.results import Results, Variant, decode_hits, read_results, validate
from layerwise.train import TrainConfig


@pytest.fixture(scope="module")
def tiny_digits():
    d = load_dataset("digits", size=8, channels=3)
    return dataclasses.replace(d, train=Subset(d.train, range(32)), val=Subset(d.val, range(16)))


def test_train_ela_skips_at_the_window_end_and_records_it(tiny_digits):
    torch.manual_seed(0)
    model = build_model("resnet20-ela", tiny_digits.input_shape, tiny_digits.num_classes)
    res = train_ela(model, tiny_digits, TrainConfig(epochs=2, batch_size=16), ElaConfig(windows=((1, 1),)))
    assert res.train.epochs_completed == 2
    assert len(res.schedule.events) == 1 and res.schedule.events[0].epoch == 1
    assert res.skipped == res.schedule.events[0].skipped and len(res.skipped) >= 1
    assert [n for n, b in mrla_blocks(model) if b.skip_attention] == res.skipped
    assert set(res.schedule.kl_history[0]["kl"]) == {"layer1.1", "layer2.1", "layer3.1"}
    assert all(not h._forward_hooks for _, b in mrla_blocks(model) for h in (b.attention.softmax,))


def test_train_ela_rejects_bad_input(tiny_digits):
    plain = build_model("resnet20", tiny_digits.input_shape, tiny_digits.num_classes)
    with pytest.raises(LayerwiseError, match="no MRLA attention layers"):
        train_ela(plain, tiny_digits, TrainConfig(epochs=1))
    model = build_model("resnet20-ela", tiny_digits.input_shape, tiny_digits.num_classes)
    with pytest.raises(LayerwiseError, match="beyond the 2 training epochs"):
        train_ela(model, tiny_digits, TrainConfig(epochs=2), ElaConfig(windows=((3, 3),)))


def test_command_quick_writes_results_with_the_four_variants(tmp_path, capsys):
    code = main(["ela", "--model", "resnet20", "--dataset", "digits", "--size", "8", "--channels", "3",
                 "--quick", "--threads", "2", "--out", str(tmp_path)])
    assert code == 0
    doc = read_results(tmp_path)
    assert [v["name"] for v in doc["variants"]] == ["resnet", "mrla-b", "mrla-l", "ela"]
    by = {v["name"]: v for v in doc["variants"]}
    assert by["resnet"]["params"] == 220_378 and by["mrla-b"]["params"] == by["ela"]["params"] == 230_286
    assert by["ela"]["macs_executed"] < by["ela"]["macs"] == by["mrla-b"]["macs"]
    for v in doc["variants"]:
        assert v["extra"]["epoch_time_s"] > 0 and len(v["extra"]["epoch_times_s_per_seed"][0]) == 2
    assert len(by["ela"]["extra"]["skipped_per_seed"][0]) >= 1
    assert sorted(doc["figures"]) == ["attention_maps.png", "epoch_time.png", "kl_per_layer.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in doc["figures"])
    out = capsys.readouterr().out
    assert "ELA / MRLA-B epoch time" in out and "mrla-l" in out
    json.loads((tmp_path / "results.json").read_text())
    # each variant's final test hits (the 64 --quick test images), Wilson CI, paired comparisons
    n = by["ela"]["extra"]["recipe"]["test_samples"]
    hits = {}
    for v in doc["variants"]:
        h = decode_hits(v["test_hits"])
        assert h.size == n and h.mean() == pytest.approx(v["accuracy"], abs=1e-12), v["name"]
        assert v["extra"]["accuracy_per_seed"] == [v["accuracy"]]
        ci = v["accuracy_ci"]
        assert ci["low"] <= v["accuracy"] <= ci["high"] and ci["n"] == n and ci["method"] == "wilson"
        hits[v["name"]] = h
    comps = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    assert set(comps) == {("ela", "mrla-b"), ("ela", "mrla-l"), ("ela", "resnet")}
    for (a, b), c in comps.items():
        assert c["n"] == n
        assert c["only_a"] == int((hits[a] & ~hits[b]).sum()) and c["only_b"] == int((~hits[a] & hits[b]).sum())
        assert c["verdict"] in out
        assert c["measurable"] == (not c["low"] <= 0 <= c["high"] and c["mcnemar_p"] < 0.05)
        assert ("no measurable difference" in c["verdict"]) == (not c["measurable"])


def test_several_seeds_pool_the_hits_as_combine_seeds_does():
    """With --seeds, each seed's hits stay in ``seeds``; the interval and the comparisons pool them."""
    gen = torch.Generator().manual_seed(0)
    names, seeds, n = ["resnet", "mrla-b", "mrla-l", "ela", "ela-fixed"], [3, 5], 50
    runs = []
    for s in seeds:
        for name in names:
            h = torch.rand(n, generator=gen) < 0.7
            runs.append(VariantRun(name, name, s, int(h.sum()) / n, 0.0, [], [], test_hits=h))
    variants = [Variant(name=name, accuracy=sum(r.test_accuracy for r in runs if r.name == name) / len(seeds),
                        macs=1, macs_executed=1, params=1, size_bytes=1, latency_ms=None, peak_mem_bytes=None,
                        energy_j=None, extra={"latency_ms": "-", "peak_mem_bytes": "-", "energy_j": "-"})
                for name in names]
    env = {"torch": "x", "device": "cpu", "threads": 1, "cpu": "x", "seed": 3, "seeds": seeds}
    res = with_evidence(Results("ela", "resnet20", "digits", env, variants), runs, seeds, comparison_pairs(names))
    doc = validate(res.to_dict())
    by = {v["name"]: v for v in doc["variants"]}
    pooled = {}
    for name in names:
        v = by[name]
        mine = [r for r in runs if r.name == name]
        assert "test_hits" not in v and [e["seed"] for e in v["seeds"]] == seeds
        for e, r in zip(v["seeds"], mine):
            assert (decode_hits(e["test_hits"]) == r.test_hits.numpy()).all()
            assert e["accuracy"] == r.test_accuracy and e["accuracy_ci"]["n"] == n
        pooled[name] = torch.cat([r.test_hits for r in mine]).numpy()
        assert v["accuracy"] == pytest.approx(pooled[name].mean())
        ci = v["accuracy_ci"]
        assert ci["n"] == 2 * n and ci["correct"] == pooled[name].sum() and "pooled over 2 seeds" in ci["method"]
        assert ci["low"] <= v["accuracy"] <= ci["high"]
    comps = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    assert set(comps) == {("ela", "mrla-b"), ("ela", "mrla-l"), ("ela", "resnet"), ("ela-fixed", "ela")}
    for (a, b), c in comps.items():
        assert c["n"] == 2 * n and "pooled over 2 seeds" in c["method"]
        assert c["only_a"] == int((pooled[a] & ~pooled[b]).sum())
        assert c["only_b"] == int((~pooled[a] & pooled[b]).sum())


def test_command_rejects_a_model_without_a_bottleneck_cifar_base(capsys):
    assert main(["ela", "--model", "tiny-cnn", "--dataset", "digits", "--quick"]) == 2
    assert "use --model resnet20, resnet56 or resnet110" in capsys.readouterr().err


def test_command_controls_remove_as_many_layers_as_ela_and_are_compared_with_it(tmp_path, capsys):
    code = main(["ela", "--model", "resnet20", "--dataset", "digits", "--size", "8", "--channels", "3",
                 "--quick", "--threads", "2", "--out", str(tmp_path), "--controls", "--gamma", "1.0",
                 "--schedule", "step", "--attention-drop-path", "0.1", "--kl-norm", "paper"])
    assert code == 0
    doc = read_results(tmp_path)
    by = {v["name"]: v for v in doc["variants"]}
    assert list(by) == ["resnet", "mrla-b", "mrla-l", "ela", "ela-random", "ela-position"]
    ela_skipped = by["ela"]["extra"]["skipped_per_seed"][0]
    assert ela_skipped  # gamma 1 over three candidates with a spread: at least one goes
    for control in ("ela-random", "ela-position"):
        assert len(by[control]["extra"]["skipped_per_seed"][0]) == len(ela_skipped)
    comps = {(c["a"], c["b"]) for c in doc["comparisons"]}
    assert {("ela", "ela-random"), ("ela", "ela-position")} <= comps
    ev = by["ela"]["extra"]["skip_events_per_seed"][0][0]
    assert ev["kl_norm"] == "paper" and set(ev["kl_uniform"]) == set(ev["kl"])
    rec = by["ela"]["extra"]["recipe"]
    assert rec["schedule"] == "step" and rec["attention_drop_path"] == 0.1
    for v in doc["variants"]:  # interleaved epochs: wall and CPU time per epoch
        e = v["extra"]
        assert len(e["epoch_process_cpu_s_per_seed"][0]) == 2 and e["epoch_process_cpu_s"] > 0
    # the saved ELA model carries its skip set
    fresh = build_model("resnet20-ela", (3, 8, 8), 10)
    from layerwise.train.checkpoint import load_weights
    load_weights(fresh, tmp_path / "seed0" / "ela" / "checkpoint.pt")
    assert [n for n, b in mrla_blocks(fresh) if b.skip_attention] == ela_skipped
    assert "CPU s per epoch" in capsys.readouterr().out


def test_command_variants_trains_only_the_controls_beside_ela(tmp_path, capsys):
    code = main(["ela", "--model", "resnet20", "--dataset", "digits", "--size", "8", "--channels", "3",
                 "--quick", "--threads", "1", "--out", str(tmp_path), "--controls", "--gamma", "1.0",
                 "--variants", "ela-random", "ela"])
    assert code == 0
    doc = read_results(tmp_path)
    by = {v["name"]: v for v in doc["variants"]}
    assert list(by) == ["ela", "ela-random"]  # the run's order, not the flag's
    assert len(by["ela-random"]["extra"]["skipped_per_seed"][0]) == len(by["ela"]["extra"]["skipped_per_seed"][0])
    assert {(c["a"], c["b"]) for c in doc["comparisons"]} == {("ela", "ela-random")}
    assert "epoch_time_ratio_vs_mrla_b" not in by["ela"]["extra"]  # no MRLA-B trained: no ratio to it
    assert by["ela"]["extra"]["step_time_ms"]["n"] >= 1 and "step_time_ms" not in by["ela-random"]["extra"]
    assert sorted(p.name for p in tmp_path.glob("seed0/*")) == ["ela", "ela-random"]
    out = capsys.readouterr().out
    assert "not trained in this run (--variants): resnet, mrla-b, mrla-l" in out
    assert "ELA - MRLA" not in out


@pytest.mark.parametrize("argv, message", [
    (["--variants", "ela-random"], "--variants ela-random: not a variant of this run"),
    (["--variants", "mrla-b"], "--variants must include ela"),
])
def test_command_variants_rejects_names_it_cannot_train(tmp_path, capsys, argv, message):
    assert main(["ela", "--model", "resnet20", "--dataset", "digits", "--quick", "--out", str(tmp_path),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not list(tmp_path.iterdir())  # refused before anything was written
