"""Row skipping (UnIT's rule per weight row on a CPU): decisions, outputs and counts, checked
against explicit loops, and the layer swap."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from layerwise.errors import LayerwiseError
from layerwise.unit import convert, total_counts
from layerwise.unit.reference import unit_linear
from layerwise.unit.rowskip import RowPlan, RowSkipLinear, row_counts, rowskip_linear, to_row_skip


def loops(x, w, b, t_groups, rule):
    """Explicit-loop reference of the row rule (module docstring), exact division."""
    n, ni = x.shape
    no = w.shape[0]
    g = len(t_groups)
    og = no // g
    y = np.tile(b.astype(np.float64), (n, 1))
    kept = np.zeros((g, ni), dtype=bool)
    for gi in range(g):
        for p in range(ni):
            colmax = max(abs(float(w[j, p])) for j in range(gi * og, (gi + 1) * og))
            for s in range(n):
                if x[s, p] != 0 and colmax > np.float32(t_groups[gi]) / np.float32(abs(x[s, p])):
                    kept[gi, p] = True
    for s in range(n):
        for gi in range(g):
            for p in range(ni):
                if not kept[gi, p] or x[s, p] == 0:
                    continue
                t = np.float32(t_groups[gi]) / np.float32(abs(x[s, p]))
                for j in range(gi * og, (gi + 1) * og):
                    if rule == "row" or abs(w[j, p]) > t:
                        y[s, j] += float(x[s, p]) * float(w[j, p])
    return y, kept


def test_hand_worked_case_batch_1():
    # x = [2, 0, 0.5], T = 1: ratios T/|x| = 0.5 (input 0), zero (input 1), 2 (input 2)
    w = torch.tensor([[0.4, 9.0, 3.0],
                      [0.6, 9.0, 1.0]])
    x = torch.tensor([[2.0, 0.0, 0.5]])
    b = torch.tensor([0.25, -0.25])
    plan = RowPlan.build(w, b, torch.tensor(1.0))
    # input 0: max|W[:,0]| = 0.6 > 0.5: kept; per MAC 0.4 <= 0.5 skipped, 0.6 kept
    # input 1: zero: skipped; input 2: max 3.0 > 2: kept; per MAC 3.0 kept, 1.0 skipped
    y, rows, macs = rowskip_linear(x, plan, rule="mac")
    assert y[0].tolist() == pytest.approx([0.25 + 0.5 * 3.0, -0.25 + 2 * 0.6])
    assert (rows.blocks, rows.skipped_zero, rows.skipped_threshold) == (3, 1, 0)
    assert rows.macs_run == 4 and rows.macs_total == 6
    assert (macs.total, macs.zero_input, macs.threshold, macs.executed) == (6, 2, 2, 2)
    # row rule: surviving rows run every MAC
    y_row, _, macs_row = rowskip_linear(x, plan, rule="row")
    assert y_row[0].tolist() == pytest.approx([0.25 + 2 * 0.4 + 0.5 * 3.0, -0.25 + 2 * 0.6 + 0.5 * 1.0])
    assert macs_row.executed == 4
    # a threshold of 1.3 makes input 0's row skip (0.6 <= 0.65) and keeps input 2's (3.0 > 2.6)
    y2, rows2, _ = rowskip_linear(x, RowPlan.build(w, b, torch.tensor(1.3)), rule="row")
    assert (rows2.skipped_zero, rows2.skipped_threshold, rows2.macs_run) == (1, 1, 2)
    assert y2[0].tolist() == pytest.approx([0.25 + 0.5 * 3.0, -0.25 + 0.5 * 1.0])


@settings(max_examples=40, deadline=None)
@given(n=st.sampled_from([1, 3]), ni=st.integers(1, 9), og=st.integers(1, 4), g=st.sampled_from([1, 2]),
       seed=st.integers(0, 10_000), rule=st.sampled_from(["mac", "row"]))
def test_matches_explicit_loops(n, ni, og, g, seed, rule):
    rng = np.random.default_rng(seed)
    no = og * g
    w = rng.standard_normal((no, ni)).astype(np.float32)
    w[rng.random(w.shape) < 0.2] = 0
    x = np.maximum(rng.standard_normal((n, ni)), 0).astype(np.float32)
    b = rng.standard_normal(no).astype(np.float32)
    t = rng.random(g).astype(np.float32)
    expected, kept = loops(x, w, b, t, rule)
    plan = RowPlan.build(torch.from_numpy(w), torch.from_numpy(b), torch.from_numpy(t))
    y, rows, _ = rowskip_linear(torch.from_numpy(x), plan, rule=rule)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert rows.blocks == g * ni
    assert rows.skipped_blocks == int((~kept).sum())
    assert rows.macs_run == int(kept.sum()) * og * n


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 4]), ni=st.integers(1, 12), no=st.sampled_from([2, 4, 6]),
       g=st.sampled_from([1, 2]), seed=st.integers(0, 10_000),
       division=st.sampled_from(["exact", "bitshift", "bitmask"]))
def test_mac_rule_equals_the_per_mac_reference(n, ni, no, g, seed, division):
    # a skipped row holds only MACs the per-MAC rule skips too: outputs and counts agree
    rng = np.random.default_rng(seed)
    w = torch.from_numpy(rng.standard_normal((no, ni)).astype(np.float32))
    w[torch.from_numpy(rng.random((no, ni)) < 0.2)] = 0
    x = torch.relu(torch.from_numpy(rng.standard_normal((n, ni)).astype(np.float32)))
    b = torch.from_numpy(rng.standard_normal(no).astype(np.float32))
    t = torch.from_numpy(rng.random(g).astype(np.float32))
    y_ref, c_ref = unit_linear(x, w, b, t, division=division)
    y, _, macs = rowskip_linear(x, RowPlan.build(w, b, t, division=division), rule="mac")
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for f in ("total", "zero_weight", "zero_input", "threshold", "divisions", "samples"):
        assert getattr(macs, f) == getattr(c_ref, f), f


def test_batch_row_is_skipped_only_when_every_sample_skips_it():
    w = torch.tensor([[1.0, 1.0]])
    plan = RowPlan.build(w, None, torch.tensor(1.0))
    # sample 0 skips input 0 (1 <= 1/0.5), sample 1 keeps it (1 > 1/2)
    x = torch.tensor([[0.5, 0.0], [2.0, 0.0]])
    y, rows, macs = rowskip_linear(x, plan, rule="mac")
    assert (rows.skipped_zero, rows.skipped_threshold) == (1, 0)
    assert rows.macs_run == 2                 # input 0's row, for both samples
    assert y.tolist() == [[0.0], [2.0]]       # sample 0's MAC is masked by the per-MAC test
    assert (macs.executed, macs.threshold, macs.zero_input) == (1, 1, 2)
    x_all_skip = torch.tensor([[0.5, 0.0], [0.25, 0.0]])
    _, rows2, _ = rowskip_linear(x_all_skip, plan)
    assert (rows2.skipped_zero, rows2.skipped_threshold, rows2.macs_run) == (1, 1, 0)


def test_threshold_zero_is_the_dense_layer():
    torch.manual_seed(0)
    lin = nn.Linear(30, 7)
    x = torch.randn(5, 30)
    y, rows, _ = rowskip_linear(x, RowPlan.build(lin.weight, lin.bias, torch.tensor(0.0)), rule="mac")
    torch.testing.assert_close(y, lin(x).detach(), rtol=1e-5, atol=1e-5)
    assert rows.skipped_blocks == 0


def test_swapped_model_counts_and_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(6, 12)
    conv = convert(model, inplace=False).model
    for _, m in conv.named_modules():
        if hasattr(m, "set_threshold"):
            m.set_threshold(0.05)
    with torch.no_grad():
        y_ref = conv(x)
    ref_counts = total_counts(conv)
    swapped = to_row_skip(conv, "mac")
    assert swapped == ["0", "2"]
    assert all(isinstance(conv[i], RowSkipLinear) for i in (0, 2))
    with torch.no_grad():
        y = conv(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    assert total_counts(conv).executed == ref_counts.executed
    rc = row_counts(conv)
    assert set(rc) == {"0", "2"} and rc["0"].blocks == 12 and rc["2"].blocks == 8


def test_plan_follows_a_new_threshold():
    lin = RowSkipLinear.from_unit(convert(nn.Sequential(nn.Linear(2, 1)), inplace=False).model[0])
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
        lin.bias.zero_()
    x = torch.tensor([[0.5, 2.0]])
    with torch.no_grad():
        assert lin(x).item() == pytest.approx(2.5)
        lin.set_threshold(1.0)                      # input 0: 1 <= 1/0.5: skipped
        assert lin(x).item() == pytest.approx(2.0)
        assert lin.row_counts.skipped_threshold == 1


def test_bad_input_names_the_fix():
    plan = RowPlan.build(torch.ones(2, 3), None, torch.tensor(0.1))
    with pytest.raises(LayerwiseError, match="expects 3"):
        rowskip_linear(torch.ones(1, 4), plan)
    with pytest.raises(LayerwiseError, match="rule 'cols'"):
        rowskip_linear(torch.ones(1, 3), plan, rule="cols")
    with pytest.raises(LayerwiseError, match="convert"):
        to_row_skip(nn.Sequential(nn.Linear(2, 2)))
