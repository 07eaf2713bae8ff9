"""UnIT's baselines: magnitude pruning, FATReLU, and the fair MAC accounting of every variant."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from layerwise.data import DatasetSplits
from layerwise.errors import LayerwiseError
from layerwise.models import build_model
from layerwise.unit import convert, get_profile, unit_layers
from layerwise.unit.accounting import counted_evaluate, executed_macs, variant_cost
from layerwise.unit.baselines import (FATReLU, MagnitudeConfig, apply_masks, binary_search_threshold,
                                      calibrate_fatrelu, calibrate_fatrelu_bounds, fatrelu_layers,
                                      global_magnitude_masks, iterative_magnitude_prune,
                                      replace_relus, select_monotone, sparsity_of)


def _tiny_data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 16, 16, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DatasetSplits("toy", ds, ds, ds, (1, 16, 16), 3, "image")


def _model():
    torch.manual_seed(0)
    return build_model("tiny-cnn", (1, 16, 16), 3)


# ------------------------------------------------------------------------------ magnitude

@pytest.mark.parametrize("sparsity", [0.0, 0.05, 0.37, 0.9])
def test_global_masks_reach_the_requested_sparsity_with_real_zeros(sparsity):
    m = _model()
    n = sum(l.weight.numel() for l in (m.features.conv1, m.features.conv2, m.fc))
    apply_masks(m, global_magnitude_masks(m, sparsity))
    zeros = sum(int((l.weight == 0).sum()) for l in (m.features.conv1, m.features.conv2, m.fc))
    assert zeros == round(sparsity * n)
    assert sparsity_of(m) == pytest.approx(round(sparsity * n) / n)
    assert int((m.fc.bias == 0).sum()) == 0      # biases are not pruned


def test_global_masks_remove_the_smallest_magnitudes_across_layers():
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[0.1, -5.0], [3.0, 0.2]]))
        m[1].weight.copy_(torch.tensor([[-0.15, 4.0]]))
    masks = global_magnitude_masks(m, 0.5)   # 3 of 6: 0.1, 0.15, 0.2
    assert masks["0"].tolist() == [[False, True], [True, False]]
    assert masks["1"].tolist() == [[False, True]]


def test_iterative_pruning_keeps_masks_through_finetune_and_stops_on_validation():
    data = _tiny_data()
    base = _model()
    # accuracy 1 up to 50 % sparsity, then 0.5: steps 0.25, 0.5 pass, 0.75 fails -> choose 0.5
    evaluate_fn = lambda m: 1.0 if sparsity_of(m) <= 0.5 + 1e-9 else 0.5  # noqa: E731
    cfg = MagnitudeConfig(step=0.25, max_sparsity=0.75, finetune_epochs=1, batch_size=8)
    res = iterative_magnitude_prune(base, data, cfg, evaluate_fn=evaluate_fn)
    assert [s.sparsity for s in res.steps] == [0.25, 0.5, 0.75]
    assert [s.within_bound for s in res.steps] == [True, True, False]
    assert res.chosen == 1 and res.sparsity == 0.5
    # fine-tuning changed the surviving weights but every masked weight is still exactly zero
    masks = global_magnitude_masks(base, 0.25)
    w_step = res.steps[0].state_dict
    for name, keep in masks.items():
        w = w_step[f"{name}.weight"]
        assert bool((w[~keep] == 0).all())
    assert sparsity_of(res.model) >= 0.5
    assert not torch.equal(res.model.fc.weight, base.fc.weight)
    assert not any("weight_orig" in k or "mask" in k for k in res.model.state_dict())
    assert sparsity_of(base) == 0.0      # the input model is untouched


def test_pruning_records_steps_past_the_stop_and_chooses_by_rule():
    data = _tiny_data()
    base = _model()
    # 0.25 passes, 0.5 fails, 0.75 passes again: the rule stops at 0.5 (chooses 0.25), the
    # curve still records 0.75 (after_stop); without record_past_stop the schedule ends at 0.5
    evaluate_fn = lambda m: 0.5 if abs(sparsity_of(m) - 0.5) < 0.05 else 1.0  # noqa: E731
    cfg = MagnitudeConfig(step=0.25, max_sparsity=0.75, finetune_epochs=0, batch_size=8)
    res = iterative_magnitude_prune(base, data, cfg, evaluate_fn=evaluate_fn)
    assert [s.within_bound for s in res.steps] == [True, False, True]
    assert [s.after_stop for s in res.steps] == [False, False, True]
    # default rule: the largest step within the bound; the literal rule's pick is recorded too
    assert res.chosen == 2 and res.sparsity == 0.75 and res.chosen_first_failure == 0
    assert sparsity_of(res.model) == pytest.approx(0.75, abs=0.02)
    lit = iterative_magnitude_prune(base, data, dataclasses.replace(cfg, rule="first_failure"),
                                    evaluate_fn=evaluate_fn)
    assert lit.chosen == 0 and lit.sparsity == 0.25 and len(lit.steps) == 3
    assert sparsity_of(lit.model) == pytest.approx(0.25, abs=0.02)
    short = iterative_magnitude_prune(base, data, dataclasses.replace(cfg, record_past_stop=False),
                                      evaluate_fn=evaluate_fn)
    assert [s.sparsity for s in short.steps] == [0.25, 0.5] and short.chosen == 0


def test_magnitude_config_errors_name_the_fix():
    with pytest.raises(LayerwiseError, match="step"):
        MagnitudeConfig(step=0.0).validate()
    with pytest.raises(LayerwiseError, match="first_failure"):
        MagnitudeConfig(rule="last").validate()
    with pytest.raises(LayerwiseError, match="no nn.Linear"):
        global_magnitude_masks(nn.Sequential(nn.ReLU()), 0.5)


# ------------------------------------------------------------------------------ FATReLU

@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=64))
def test_fatrelu_at_zero_is_relu(values):
    x = torch.tensor(values, dtype=torch.float32)
    assert torch.equal(FATReLU(0.0)(x), torch.relu(x))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=64),
       st.floats(0, 10, allow_nan=False))
def test_fatrelu_keeps_exactly_the_values_at_or_above_t(values, t):
    x = torch.tensor(values, dtype=torch.float32)
    y = FATReLU(t)(x)
    keep = x >= torch.tensor(t, dtype=torch.float32)
    assert torch.equal(y[keep], x[keep]) and bool((y[~keep] == 0).all())


def test_replace_relus_swaps_modules_and_refuses_functional_relu():
    m = _model()
    rep = replace_relus(m)
    assert rep.replaced == ["features.relu1", "features.relu2"]
    assert [n for n, _ in fatrelu_layers(m)] == rep.replaced

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return torch.relu(self.fc(x))

    with pytest.raises(LayerwiseError, match="no nn.ReLU module"):
        replace_relus(Functional())


def test_binary_search_returns_the_largest_feasible_t():
    t, evals = binary_search_threshold(lambda t: t <= 0.3721, 1.0, 1e-3)
    assert 0.3721 - 1e-3 <= t <= 0.3721
    assert evals == 1 + 10          # t_max, then halving [0, 1] to 1e-3
    assert binary_search_threshold(lambda t: True, 2.5, 1e-3) == (2.5, 1)


def test_calibrate_fatrelu_largest_t_within_bound_last_layer_first():
    m = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1), nn.ReLU())
    replace_relus(m)
    layers = dict(fatrelu_layers(m))
    seen_order = []

    def evaluate_fn(model):
        t1, t3 = float(layers["1"].threshold), float(layers["3"].threshold)
        if not seen_order or seen_order[-1] != (t1 > 0, t3 > 0):
            seen_order.append((t1 > 0, t3 > 0))
        # accuracy stays 1.0 while t3 <= 0.6 and t1 <= 0.25, else drops to 0.9
        return 1.0 if (t3 <= 0.6 and t1 <= 0.25) else 0.9

    cal = calibrate_fatrelu(m, evaluate_fn, max_drop=0.005, t_max={"1": 1.0, "3": 2.0})
    assert cal.order == ["3", "1"]
    assert 0.6 - 2e-3 <= cal.thresholds["3"] <= 0.6
    assert 0.25 - 1e-3 <= cal.thresholds["1"] <= 0.25
    assert cal.accuracy == 1.0 and cal.reference_accuracy == 1.0
    assert float(layers["3"].threshold) == cal.thresholds["3"]


def test_calibrate_fatrelu_bad_input():
    m = nn.Sequential(nn.Linear(1, 1))
    with pytest.raises(LayerwiseError, match="replace_relus"):
        calibrate_fatrelu(m, lambda _: 1.0, t_max={})
    m = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    replace_relus(m)
    with pytest.raises(LayerwiseError, match="calibration_batches"):
        calibrate_fatrelu(m, lambda _: 1.0)


# ------------------------------------------------------------------------------ fair accounting

def _hand_model():
    m = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]]))
    return m


def test_fair_macs_executed_per_variant_by_hand():
    # x = [0, 1, 2, 3]: 8 MACs; W[0,1] = 0 -> 1 zero-weight MAC; x0 = 0 meets 2 nonzero weights
    # -> 2 zero-input MACs; with T = 1.5 the pair x1*W[1,1] = 1 <= T is skipped by the threshold
    ds = TensorDataset(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), torch.tensor([0]))
    m = convert(_hand_model()).model
    run0 = counted_evaluate(m, ds)
    assert (run0.counts.total, run0.counts.zero_weight, run0.counts.zero_input) == (8, 1, 2)
    # the loop's tests: one per MAC of each nonzero input (3 x 2) + one per zero input (1)
    assert run0.counts.compares == 7 and run0.counts.divisions == 3
    assert executed_macs(run0.counts, "dense") == 8
    assert executed_macs(run0.counts, "sparse_weights") == 7        # magnitude
    assert executed_macs(run0.counts, "zero_skip") == 5             # fatrelu
    unit_layers(m)[0][1].set_threshold(1.5)
    run = counted_evaluate(m, ds)
    assert run.counts.threshold == 1 and executed_macs(run.counts, "unit") == 4
    names = ("dense", "dense+zero-skip", "magnitude", "fatrelu", "unit")
    costs = {k: variant_cost(k, m, run if k == "unit" else run0) for k in names}
    # headline: ONE runtime for every variant, skipping any MAC with a zero operand (+ UnIT's
    # threshold for UnIT)
    assert {k: c.macs_executed for k, c in costs.items()} == {
        "dense": 5, "dense+zero-skip": 5, "magnitude": 5, "fatrelu": 5, "unit": 4}
    assert {k: c.runtime for k, c in costs.items()} == {
        "dense": "zero_skip", "dense+zero-skip": "zero_skip", "magnitude": "zero_skip",
        "fatrelu": "zero_skip", "unit": "unit"}
    assert costs["dense"].skipped_fraction == pytest.approx(3 / 8)
    assert costs["unit"].skipped_fraction == pytest.approx(4 / 8)
    # each variant's own runtime, labelled
    own = {k: (c.own.runtime, c.own.macs_executed) for k, c in costs.items()}
    assert own == {"dense": ("dense", 8), "dense+zero-skip": ("zero_skip", 5),
                   "magnitude": ("sparse_weights", 7), "fatrelu": ("zero_skip", 5), "unit": ("unit", 4)}
    assert all(c.macs == 8 for c in costs.values())
    for prof in ("msp430-swmul", "msp430-hwmul"):
        p = get_profile(prof)
        # common basis: 5 MACs run; 7 tests, 5 keep and 2 skip (the zero input, the zero weight)
        zs = 5 * p.mac + 5 * p.compare_branch_keep + 2 * p.compare_branch_skip
        for k in ("dense", "dense+zero-skip", "magnitude", "fatrelu"):
            assert costs[k].mcu[prof].cycles == zs, (k, prof)
        # UnIT: 4 run, 7 tests (4 keep, 3 skip) and 3 exact divisions
        assert costs["unit"].mcu[prof].cycles == (4 * p.mac + 4 * p.compare_branch_keep
                                                  + 3 * p.compare_branch_skip + 3 * p.division["exact"])
        assert costs["dense"].own.mcu[prof].cycles == 8 * p.mac
        assert costs["magnitude"].own.mcu[prof].cycles == 7 * (p.mac + p.load)
        assert costs["fatrelu"].own.mcu[prof].cycles == zs
    sw = get_profile("msp430-swmul")
    assert costs["unit"].mcu["msp430-swmul"].cycles == pytest.approx(
        4 * sw.mac + 4 * sw.compare_branch_keep + 3 * sw.compare_branch_skip + 3 * sw.division["exact"])
    j = costs["magnitude"].to_json()
    assert j["runtime"] == "zero_skip" and j["own_runtime"]["runtime"] == "sparse_weights"
    assert j["own_runtime"]["macs_executed"] == 7 and j["macs_executed"] == 5
    assert all(c.mcu["msp430-hwmul"].estimated for c in costs.values())


def test_unconverted_layers_count_as_executed():
    ds = TensorDataset(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), torch.tensor([0]))
    m = convert(_hand_model()).model
    run = counted_evaluate(m, ds)
    c = variant_cost("fatrelu", m, run, other_macs=100)
    assert c.macs == 108 and c.macs_executed == 105
    c = variant_cost("fatrelu", m, run, model_macs=108)
    assert c.macs == 108 and c.macs_executed == 105 and c.other_macs == 100
    with pytest.raises(LayerwiseError, match="no runtime"):
        variant_cost("mystery", m, run)


def test_layers_left_alone_by_groups_keep_macs_equal_across_variants():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 4))
    x = torch.tensor([[0.0, 1.0, -2.0, 0.5], [1.5, 0.0, 0.0, -1.0], [0.3, -0.7, 0.9, 0.0]])
    ds = TensorDataset(x, torch.tensor([0, 1, 2]))
    model_macs = 4 * 3 + 3 * 4                                   # per input
    dense = convert(copy.deepcopy(base)).model                   # groups 1: both converted
    rep = convert(copy.deepcopy(base), groups=2)                 # 3 outputs: layer 0 left alone
    assert rep.converted == ["2"]
    assert rep.left_alone == [("0", "nn.Linear: 2 threshold groups do not divide 3 outputs")]
    unit = rep.model
    T = 0.05
    unit[2].set_threshold(torch.tensor([T, T]))
    run0, runu = counted_evaluate(dense, ds), counted_evaluate(unit, ds)
    assert list(runu.left_alone_per_layer) == ["0"]
    cd = variant_cost("dense", dense, run0, model_macs=model_macs)
    cu = variant_cost("unit", unit, runu, model_macs=model_macs)
    assert cd.macs == cu.macs == 24
    assert cd.other_macs == cu.other_macs == 0
    # by hand: MACs with both operands nonzero (and, in UnIT's layer 2, |h*w| > T)
    W0, b0, W2 = base[0].weight.detach(), base[0].bias.detach(), base[2].weight.detach()
    ex_dense = ex_unit = zero_ops_layer0 = 0
    for xs in x:
        h = [max(0.0, float(b0[j]) + sum(float(W0[j, i]) * float(xs[i]) for i in range(4)))
             for j in range(3)]
        for j in range(3):
            for i in range(4):
                if xs[i] != 0 and W0[j, i] != 0:
                    ex_dense += 1
                    ex_unit += 1
                else:
                    zero_ops_layer0 += 1
        for o in range(4):
            for i in range(3):
                if h[i] != 0 and W2[o, i] != 0:
                    ex_dense += 1
                    ex_unit += abs(h[i] * float(W2[o, i])) > T
    assert zero_ops_layer0 > 0 and ex_unit < ex_dense
    assert cd.macs_executed == pytest.approx(ex_dense / 3)
    assert cu.macs_executed == pytest.approx(ex_unit / 3)
    # the left-alone layer runs on the zero-skipping runtime: tests, no divisions
    left = runu.left_alone_per_layer["0"]
    assert left.total == 3 * 12 and left.divisions == 0
    assert cu.to_json()["left_alone_counts"]["total"] == 36


def test_fatrelu_selection_is_monotone_where_the_greedy_search_is_not():
    m = nn.Sequential(nn.ReLU(), nn.ReLU())
    replace_relus(m)
    layers = dict(fatrelu_layers(m))

    def t():
        return float(layers["0"].threshold), float(layers["1"].threshold)

    def val_accuracy(_):
        t0, t1 = t()           # layer "1" is free up to 0.9, then costs 1 pt; layer "0" 0.4 pt/unit
        return 1.0 - (0.01 if t1 >= 0.9 else 0.0) - 0.004 * t0

    def val_skipped(_):
        t0, t1 = t()
        return 0.5 * t0 + 0.1 * t1

    sel = calibrate_fatrelu_bounds(m, val_accuracy, val_skipped, [0.005, 0.01],
                                   t_max={"0": 1.0, "1": 1.0})
    g05, g10 = sel.greedy
    # greedy, last layer first: at 0.5 pt layer "1" stops below 0.9, layer "0" takes 1.0 (0.4 pt);
    # at 1 pt layer "1" takes 1.0 (the whole point) and leaves layer "0" nothing
    assert g05.thresholds["0"] == 1.0 and 0.899 <= g05.thresholds["1"] < 0.9
    assert g10.thresholds == {"0": 0.0, "1": 1.0}
    assert sel.val_skipped == pytest.approx([0.5 + 0.1 * g05.thresholds["1"], 0.1])
    assert sel.val_drop == pytest.approx([0.004, 0.01])
    # the selection at 1 pt keeps the 0.5 pt configuration: it skips more on val, within 1 pt
    assert sel.selected == [0, 0]
    assert sel.thresholds(0.01) == g05.thresholds and sel.thresholds(0.005) == g05.thresholds
    assert {n: float(l.threshold) for n, l in layers.items()} == g05.thresholds   # model left at the largest bound's pick
    assert sel.to_json()["selected_bound"] == [0.005, 0.005]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.2), st.floats(0, 0.2), st.floats(0, 1)), min_size=1,
                max_size=8))
def test_monotone_selection_never_skips_less_as_the_bound_grows(cands):
    bounds = sorted({round(b, 6) for b, _, _ in cands})
    drops = [min(d, b) if i % 2 else d for i, ((_, d, _), b) in enumerate(zip(cands, bounds))]
    skipped = [s for _, _, s in cands][:len(bounds)]
    drops = drops[:len(bounds)]
    sel = select_monotone(bounds, drops, skipped)
    assert len(sel) == len(bounds)
    prev = -1.0
    for b, i in zip(bounds, sel):
        if i < 0:              # nothing within b (only possible when no search met its bound)
            assert all(not (bounds[j] <= b and drops[j] <= b + 1e-12) for j in range(len(bounds)))
            continue
        assert bounds[i] <= b and drops[i] <= b + 1e-12
        best = max(skipped[j] for j in range(len(bounds)) if bounds[j] <= b and drops[j] <= b + 1e-12)
        assert skipped[i] == best and skipped[i] >= prev
        prev = skipped[i]
