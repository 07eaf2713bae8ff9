"""The shallower-network baseline: the base's depth family, the depths chosen by latency, the
trained nets cached in the run folder, and their place in ``layerwise lwac``'s results."""

import pytest
import torch

from layerwise.cli import main
from layerwise.lwac import LWACError
from layerwise.lwac.shallow import nearest_by_latency, pick_depths, shallow_family
from layerwise.models import build_model
from layerwise.results import decode_hits, read_results


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, n, shallower", [
    ("resnet20", 2, ["resnet11"]),  # bottleneck, depth 9n + 2
    ("resnet56", 6, ["resnet11", "resnet20", "resnet29", "resnet38", "resnet47"]),
    ("resnet20-basic", 3, ["resnet8-basic", "resnet14-basic"]),  # basic, depth 6n + 2
])
def test_family_names_and_the_base_is_its_own_member(name, n, shallower):
    fam = shallow_family(name, build_model(name, (3, 16, 16), 10))
    assert fam.n == n
    assert [fam.name(k) for k in fam.candidates()] == shallower
    # the member with the base's block count is the zoo's own network, parameter for parameter
    assert _shapes(fam.build(n, (3, 16, 16), 10)) == _shapes(build_model(name, (3, 16, 16), 10))


def test_a_shallower_member_has_fewer_blocks_and_runs():
    fam = shallow_family("resnet56")
    m = fam.build(2, (1, 8, 8), 7, drop_path=0.2, drop_path_schedule="constant", zero_init_residual=True)
    assert _shapes(m) == _shapes(build_model("resnet20", (1, 8, 8), 7))
    assert m.eval()(torch.zeros(1, 1, 8, 8)).shape == (1, 7)
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in build_model("resnet56", (1, 8, 8), 7).parameters())


@pytest.mark.parametrize("name", ["multibranch-cnn", "tiny-cnn", "mobilenetv2", "resnet18", "resnet11x"])
def test_no_family_outside_the_cifar_resnets(name):
    assert shallow_family(name) is None


def test_a_name_that_fits_9n_plus_2_on_another_network_is_not_taken_for_a_cifar_resnet():
    # e.g. resnet101 = 9 * 11 + 2 is an ImageNet ResNet: the built model decides, not the name
    assert shallow_family("resnet101", torch.nn.Linear(2, 2)) is None
    assert shallow_family("resnet20", build_model("resnet20-basic", (3, 8, 8), 4)) is None  # another block


def test_pick_depths_takes_the_nearest_member_per_operating_point():
    ratios = {1: 0.30, 2: 0.50, 3: 0.68, 4: 0.85}
    assert pick_depths(ratios, [0.52]) == [2]
    assert pick_depths(ratios, [0.9, 0.66, 0.49]) == [2, 3, 4]
    assert pick_depths(ratios, [0.66, 0.70, 0.71]) == [3]  # one member near three points: trained once
    assert pick_depths(ratios, [0.31, 0.52, 0.70, 0.86], limit=2) == [1, 4]  # the two nearest their points
    assert pick_depths(ratios, []) == [4]  # no operating point: the deepest shallower member
    assert pick_depths({}, [0.5]) == []


def test_nearest_by_latency():
    assert nearest_by_latency(1.0, {"lwac": 1.4, "lwac~drop-1": 0.95, "lwac~drop-2": 0.7}) == "lwac~drop-1"
    with pytest.raises(LWACError, match="no LWAC operating point"):
        nearest_by_latency(1.0, {})


DIGITS = ["lwac", "--model", "resnet20", "--dataset", "digits", "--size", "8", "--channels", "1", "--quick",
          "--threads", "1", "--policy", "heuristic", "--static-k", "1", "--train-limit", "240", "--val-limit", "120",
          "--latency-n", "10"]


@pytest.mark.slow  # one whole quick lwac run (two trainings, calibration, timing): ~15 s of CPU
def test_lwac_reports_a_shallower_net_paired_with_the_nearest_lwac_point(tmp_path, capsys):
    out = tmp_path / "lwac"  # the same run also measures --contention (one command, to keep the suite short)
    assert main([*DIGITS, "--latency-budget-ms", "1.5", "--contention", "1", "--contention-n", "10",
                 "--budget-controller", "levels", "--out", str(out)]) == 0
    doc = read_results(out)
    by = {v["name"]: v for v in doc["variants"]}
    assert {"shallow-resnet11", "lwac~shallow-resnet11"} <= set(by)
    s = by["shallow-resnet11"]
    assert s["extra"]["shallow"]["blocks_per_stage"] == 1
    # trained with the base's recipe (the same config the base recorded), cached in the run folder
    assert s["extra"]["shallow"]["config"] == by["dense"]["extra"]["base"]["config"]
    assert s["extra"]["shallow"]["train_size"] == by["dense"]["extra"]["base"]["train_size"] == 240
    assert (out / "shallow-resnet11" / "checkpoint.pt").is_file()
    # a real, smaller network: its own parameters and MACs
    assert s["params"] < by["dense"]["params"] and s["macs_executed"] < by["dense"]["macs_executed"]
    # timed in the same interleaved measurement, and paired with the LWAC point nearest in latency
    near = s["extra"]["nearest_lwac"]["name"]
    lwac_points = {k: v["latency_ms"]["median"] for k, v in by.items()
                   if k == "lwac" or k.startswith("lwac~") or k.startswith("lwac-")}
    assert near == min(lwac_points, key=lambda k: (abs(lwac_points[k] - s["latency_ms"]["median"]), k))
    comps = {(c["a"], c["b"]): c for c in doc["comparisons"]}
    c = comps[(near, "shallow-resnet11")]
    ha, hb = decode_hits(by[near]["test_hits"]), decode_hits(s["test_hits"])
    assert c["only_a"] == int((ha & ~hb).sum()) and c["only_b"] == int((~ha & hb).sum())
    text = capsys.readouterr().out
    assert "shallow-resnet11" in text and c["verdict"] in text
    assert by["lwac"]["extra"]["shallow_baselines"]["trained"] == ["resnet11"]
    # --contention: the absolute budget's variant carries the report, and the command prints its verdict
    c = by["lwac@1.5ms"]["extra"]["budget"]["contention"]
    assert c["budget_ms"] == 1.5 and c["cores"] == 1 and c["phases"]["contended"]["lwac"]["n"] == 10
    assert c["placement"] == "same" and "on this process's core" in c["verdict"]
    # the level controller holds the budget; the PI controller and every level held fixed run beside it
    assert c["controller"] == "levels" and "controller levels, the pi controller beside it" in c["verdict"]
    assert len(c["levels"]) >= 2 and c["levels"] == by["lwac@1.5ms"]["extra"]["budget"]["levels"]
    assert [lv["ms"] for lv in c["levels"]] == sorted((lv["ms"] for lv in c["levels"]), reverse=True)
    assert by["lwac@1.5ms"]["extra"]["budget"]["controller"] == "levels"
    held = {f"level-{k}" for k in range(len(c["levels"]))}
    assert set(c["phases"]["contended"]) == {"lwac", "dense", "floor", "lwac-pi"} | held
    assert c["verdict"] in text
    import psutil
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in c["spinner_pids"])


def test_contention_needs_an_absolute_budget(tmp_path, capsys):
    assert main([*DIGITS, "--contention", "1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--latency-budget-ms" in err[0]


def test_no_shallow_switches_it_off():
    from layerwise.experiments.lwac_run import LWACOptions, shallow_baselines
    from layerwise.experiments.common import RunSpec
    trained, matched, info = shallow_baselines(RunSpec("resnet20", "digits"), None, LWACOptions(shallow=False),
                                               None, {}, {}, {}, None, [], None, None, None)
    assert trained == {} and matched == {} and info["note"].startswith("switched off")


def test_an_unknown_recipe_means_no_shallower_net_unless_asked(tmp_path):
    from layerwise.experiments.lwac_run import LWACOptions, shallow_baselines
    from layerwise.experiments.common import RunSpec
    spec = RunSpec("resnet20", "digits", checkpoint=tmp_path / "plain.pt")
    base = build_model("resnet20", (1, 8, 8), 10)
    trained, _, info = shallow_baselines(spec, None, LWACOptions(), base, {"training": "unknown"}, {}, {}, None, [],
                                         None, None, None)
    assert trained == {} and "recipe is unknown" in info["note"] and "--shallow-blocks" in info["note"]


def test_shallow_blocks_must_be_shallower(tmp_path, capsys):
    code = main([*DIGITS, "--shallow-blocks", "2", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shallow-blocks" in err[0] and "1..1" in err[0]
    assert not (tmp_path / "x" / "base").exists()  # refused before any training


def test_a_trained_shallower_net_is_cached_and_reused(tmp_path):
    from layerwise.experiments.common import RunSpec, load_data_for_model
    from layerwise.experiments.lwac_run import LWACOptions, prepare_shallow
    from layerwise.train import TrainConfig
    spec = RunSpec("resnet20", "digits", size=8, channels=1, train_limit=60, val_limit=30)
    data = load_data_for_model(spec)
    fam = shallow_family("resnet20")
    config = TrainConfig(epochs=1, seed=0)
    first = prepare_shallow(spec, data, LWACOptions(), fam, [1], config, tmp_path)
    model, info = first["shallow-resnet11"]
    ck = tmp_path / "shallow-resnet11" / "checkpoint.pt"
    assert ck.is_file() and "reused" not in info["source"] and info["config"]["epochs"] == 1
    stamp = ck.stat().st_mtime_ns
    again, info2 = prepare_shallow(spec, data, LWACOptions(), fam, [1], config, tmp_path)["shallow-resnet11"]
    assert "reused" in info2["source"] and ck.stat().st_mtime_ns == stamp  # nothing trained again
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    # the recipe a later run reads back from that checkpoint: its config and training-split size
    from layerwise.experiments.lwac_run import checkpoint_recipe
    cfg, n_train = checkpoint_recipe(ck)
    assert n_train == 60 and TrainConfig.from_dict(cfg) == config
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    assert checkpoint_recipe(plain) is None  # a plain state_dict records no recipe
