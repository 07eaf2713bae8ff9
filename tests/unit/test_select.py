"""``--percentile auto`` (validation-only choice) and measured division steps for the MCU model."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from layerwise.data import DatasetSplits
from layerwise.errors import LayerwiseError
from layerwise.experiments.unit_run import UnitRunConfig, _unit_sweep
from layerwise.unit import convert, set_division
from layerwise.unit.accounting import counted_evaluate
from layerwise.unit.kernels import unit_conv_kernel, unit_linear_kernel
from layerwise.unit.select import choose_percentile, parse_percentile
from layerwise.unit.steps import calibrate_trees, measure_steps

CURVE = [(10.0, 0.950), (20.0, 0.948), (30.0, 0.944), (40.0, 0.900), (50.0, 0.946), (60.0, 0.80)]


def test_auto_picks_the_largest_percentile_within_the_bound():
    # dense 0.95, bound 0.5 pt -> floor 0.945: 10, 20 and 50 are within, 30 and 40 are not
    ch = choose_percentile(CURVE, 0.95, 0.005)
    assert ch.percentile == 50.0 and ch.val_accuracy == 0.946 and ch.within_bound
    # the magnitude baseline's reading (stop at the first failure) would stop before 30
    assert choose_percentile(CURVE, 0.95, 0.005, first_failure=True).percentile == 20.0
    # order of the input does not matter; a larger bound admits more
    assert choose_percentile(list(reversed(CURVE)), 0.95, 0.005).percentile == 50.0
    assert choose_percentile(CURVE, 0.95, 0.2).percentile == 60.0
    # an equal accuracy is within (>=)
    assert choose_percentile([(5.0, 0.945)], 0.95, 0.005).within_bound
    none = choose_percentile(CURVE, 1.0, 0.005)
    assert none.percentile == 10.0 and not none.within_bound
    assert none.to_json()["val_curve"][0] == {"percentile": 10.0, "val_accuracy": 0.95}


def test_choice_takes_only_validation_numbers_and_errors_name_the_fix():
    params = list(inspect.signature(choose_percentile).parameters)
    assert params == ["val_curve", "dense_val_accuracy", "max_drop", "first_failure"]
    with pytest.raises(LayerwiseError, match="non-empty validation curve"):
        choose_percentile([], 0.9, 0.005)
    with pytest.raises(LayerwiseError, match="max_drop"):
        choose_percentile(CURVE, 0.9, 5.0)
    assert parse_percentile("auto") is None and parse_percentile("AUTO ") is None
    assert parse_percentile("40") == 40.0
    with pytest.raises(LayerwiseError, match="'auto' or a number"):
        parse_percentile("twenty")
    with pytest.raises(LayerwiseError, match="strictly between 0 and 100"):
        parse_percentile("100")


def _splits(test_seed: int):
    g = torch.Generator().manual_seed(0)
    xv = torch.randn(24, 1, 8, 8, generator=g)
    yv = torch.randint(0, 3, (24,), generator=g)
    gt = torch.Generator().manual_seed(test_seed)
    xt = torch.randn(16, 1, 8, 8, generator=gt)
    yt = torch.randint(0, 3, (16,), generator=gt)
    val = TensorDataset(xv, yv)
    return DatasetSplits("toy", val, val, TensorDataset(xt, yt), (1, 8, 8), 3, "image")


def _plain():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_auto_percentile_in_the_run_never_depends_on_test_data():
    plain = _plain()
    cfg = UnitRunConfig(percentile=None, max_drop=5.0)
    runs = []
    for test_seed in (1, 2):                     # same val split, different test split
        data = _splits(test_seed)
        dense_val = counted_evaluate(convert(copy.deepcopy(plain)).model, data.val).accuracy
        model_macs = 4 * 9 * 6 * 6 + 4 * 6 * 6 * 3             # conv + linear, per input
        runs.append(_unit_sweep(plain, data, cfg, [10.0, 40.0, 80.0], model_macs, "cpu", dense_val,
                                data.val.tensors[0][:8]))
    a, b = runs
    assert [c["accuracy"] for c in a.curve] != [c["accuracy"] for c in b.curve]   # test differs
    assert a.choice.val_curve == b.choice.val_curve and a.percentile == b.percentile
    # the choice is the rule applied to the recorded val accuracies of the sweep
    val_pairs = [(c["percentile"], c["val_accuracy"]) for c in a.curve if c["percentile"] > 0]
    assert list(a.choice.val_curve) == val_pairs
    assert a.percentile == choose_percentile(val_pairs, a.choice.dense_val_accuracy, 0.05).percentile
    # the model is calibrated at the chosen percentile and its run is that sweep point's
    assert a.run is a.runs[a.percentile]
    thr = next(c for c in a.curve if c["percentile"] == a.percentile)["thresholds"]
    got = {n: m.unit_threshold.tolist() for n, m in a.model.named_modules() if hasattr(m, "unit_threshold")}
    assert got == thr


@pytest.mark.parametrize("method", ["bitshift", "binary_tree"])
def test_measured_steps_equal_the_compiled_kernels_counts(method):
    model = convert(_plain()).model
    model[0].set_threshold(0.05)
    model[3].set_threshold(0.02)
    x = torch.relu(torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3)))
    if method == "binary_tree":
        depth = calibrate_trees(model, x)
        assert set(depth) == {"0", "3"} and all(d > 0 for d in depth.values())
    else:
        set_division(model, method)
    st = measure_steps(model, TensorDataset(x, torch.zeros(5, dtype=torch.long)))
    conv, lin = model[0], model[3]
    kc = unit_conv_kernel(x, conv.weight.detach(), conv.bias.detach(), conv.unit_threshold,
                          division=method, **conv.division_opts)
    with torch.no_grad():
        h = model[2](model[1](conv(x)))
    kl = unit_linear_kernel(h, lin.weight.detach(), lin.bias.detach(), lin.unit_threshold,
                            division=method, **lin.division_opts)
    assert st.per_layer["0"] == (kc.counts.divisions, kc.division_steps)
    assert st.per_layer["3"] == (kl.counts.divisions, kl.division_steps)
    assert st.steps == kc.division_steps + kl.division_steps > 0
    run = counted_evaluate(model, TensorDataset(x, torch.zeros(5, dtype=torch.long)))
    assert st.divisions == run.counts.divisions
    assert measure_steps(set_division(model, "exact") or model,
                         TensorDataset(x, torch.zeros(5, dtype=torch.long))).steps == 0
