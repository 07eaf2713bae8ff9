"""MCU cycle model: dense cost, monotone UnIT savings, profile ordering, the 50 % target figure."""

import pytest
import torch
from torch import nn

from layerwise.errors import LayerwiseError
from layerwise.unit import convert, per_layer_counts, reset_counts, total_counts, unit_layers
from layerwise.unit.counts import MacCounts, combine_layers
from layerwise.unit.kernels import unit_linear_kernel
from layerwise.unit.mcu import PROFILES, McuWork, cost, estimate, get_profile, work_for

SW, HW = PROFILES["msp430-swmul"], PROFILES["msp430-hwmul"]


def linear_counts(threshold_skipped, total=48000, inputs=400):
    """400x120 Linear, one sample, no zeros: one division per input, one compare per MAC."""
    return MacCounts(total=total, threshold=threshold_skipped, compares=total, divisions=inputs,
                     samples=1)


@pytest.mark.parametrize("name", ["msp430-swmul", "msp430-hwmul"])
def test_dense_is_macs_times_mac_cycles(name):
    p = get_profile(name)
    c = MacCounts(total=12345, zero_weight=100, zero_input=200, threshold=300, samples=1)
    e = cost(c, "dense", profile=name)
    assert e.cycles == 12345 * p.mac
    assert e.seconds == pytest.approx(e.cycles / 8e6)
    assert e.energy_j == pytest.approx(e.cycles * 118e-6 * 3.0 / 1e6)   # 118 uA/MHz at 3 V
    assert e.estimated and e.source == f"cycle model: {name}"


def test_swmul_fifty_percent_skipped_by_hand():
    c = linear_counts(24000)
    dense = cost(c, "dense").cycles
    assert dense == 48000 * SW.mac
    # exact division: 24000 MACs run (each + a kept test), 24000 skipped tests, 400 divisions
    exact = cost(c, "unit", "exact")
    assert exact.cycles == pytest.approx(24000 * (SW.mac + SW.compare_branch_keep)
                                         + 24000 * SW.compare_branch_skip
                                         + 400 * SW.division["exact"])
    # bitshift with the profile's default shift steps per division
    shift = cost(c, "unit", "bitshift")
    assert shift.cycles == pytest.approx(
        exact.cycles - 400 * SW.division["exact"] + 400 * SW.division["bitshift"]
        + 400 * SW.default_steps["bitshift"] * SW.division_step["bitshift"])
    # with a software multiply, skipping half the MACs costs well under 0.6x dense
    assert shift.cycles / dense < 0.6 and exact.cycles / dense < 0.6
    assert exact.breakdown["division"] == pytest.approx(400 * SW.division["exact"])


def test_counted_multiply_bits_move_the_software_mac_cost():
    # mac is the cost at default_multiply_bits; each bit of |w| more costs multiply_step
    avg = McuWork(macs_executed=100, multiply_steps=100 * SW.default_multiply_bits)
    wide = McuWork(macs_executed=100, multiply_steps=100 * (SW.default_multiply_bits + 2))
    assert estimate(avg, SW).cycles == pytest.approx(100 * SW.mac)
    assert estimate(wide, SW).cycles == pytest.approx(100 * SW.mac + 200 * SW.multiply_step)
    assert HW.multiply_step == 0      # the hardware multiplier takes the same time for any data


def test_export_loop_terms_are_charged():
    w = McuWork(rows=3, row_tests=2, segments=5, outputs=7, elementwise=11, zero_keep=13,
                zero_skip=17)
    for p in (SW, HW):
        assert estimate(w, p).cycles == pytest.approx(
            3 * p.row + 2 * p.row_test + 5 * p.segment + 7 * p.output + 11 * p.elementwise
            + 13 * p.zero_test_keep + 17 * p.zero_test_skip)


@pytest.mark.parametrize("name", ["msp430-swmul", "msp430-hwmul"])
@pytest.mark.parametrize("division", ["exact", "bitshift", "binary_tree", "bitmask"])
def test_unit_cycles_fall_as_more_macs_are_skipped(name, division):
    cycles = [cost(linear_counts(k), "unit", division, name).cycles
              for k in range(0, 48001, 4000)]
    assert all(a > b for a, b in zip(cycles, cycles[1:]))


def test_hwmul_is_cheaper_than_swmul_and_skipping_pays_less_there():
    c = linear_counts(24000)
    for runtime in ("dense", "sparse_weights", "zero_skip", "unit"):
        assert cost(c, runtime, profile="msp430-hwmul").cycles < cost(c, runtime).cycles
    ratio_sw = cost(c, "unit").cycles / cost(c, "dense").cycles
    ratio_hw = (cost(c, "unit", profile="msp430-hwmul").cycles
                / cost(c, "dense", profile="msp430-hwmul").cycles)
    # half the MACs skipped: with a software multiply that saves about half the cycles; with a
    # HW multiplier a MAC costs only a few tests, so the same skipping saves far less
    assert ratio_sw < 0.6 and ratio_sw + 0.2 < ratio_hw < 1.0 + 0.2


def test_baseline_runtimes():
    c = MacCounts(total=1000, zero_weight=300, zero_input=200, threshold=0, compares=0, samples=2)
    sparse = cost(c, "sparse_weights")
    assert sparse.cycles == 700 * (SW.mac + SW.load)
    zs = cost(c, "zero_skip")                  # one test per MAC by default
    assert zs.cycles == 500 * (SW.mac + SW.compare_branch_keep) + 500 * SW.compare_branch_skip
    zs_rows = cost(c, "zero_skip", compares=600)
    assert zs_rows.cycles == 500 * (SW.mac + SW.compare_branch_keep) + 100 * SW.compare_branch_skip
    per = cost(c, "dense", per_sample=True)
    assert per.cycles == 500 * SW.mac


def test_estimate_sums_layers_and_kernel_counts_feed_the_model():
    w = [McuWork(macs_executed=10), McuWork(macs_executed=5, divisions=2, division="bitshift",
                                            division_steps=6)]
    e = estimate(w, "msp430-hwmul")
    assert e.cycles == 15 * HW.mac + 2 * HW.division["bitshift"] + 6 * HW.division_step["bitshift"]
    x = torch.relu(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)))
    W = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    r = unit_linear_kernel(x, W, None, 0.3, division="bitshift")
    work = work_for(r.counts, "unit", "bitshift", division_steps=r.division_steps)
    assert work.macs_executed == r.counts.executed
    assert work.compares_keep + work.compares_skip == r.counts.compares
    assert work.division_steps == r.division_steps
    layers = cost({"fc1": r.counts, "fc2": r.counts}, "dense")
    assert layers.cycles == 2 * r.counts.total * SW.mac


def test_bad_names_raise():
    c = linear_counts(0)
    with pytest.raises(LayerwiseError, match="msp430-swmul"):
        cost(c, profile="avr")
    with pytest.raises(LayerwiseError, match="dense"):
        cost(c, runtime="magic")
    with pytest.raises(LayerwiseError, match="bitmask"):
        cost(c, division="newton")


@pytest.mark.parametrize("name", ["msp430-swmul", "msp430-hwmul"])
def test_unit_compare_costs_are_the_profiles(name):
    p = get_profile(name)
    assert estimate(McuWork(compares_keep=1), name).cycles == p.compare_branch_keep
    assert estimate(McuWork(compares_skip=1), name).cycles == p.compare_branch_skip
    c = MacCounts(total=10, threshold=4, compares=10, samples=1)
    e = cost(c, "unit", profile=name)
    assert e.breakdown["compare_keep"] == pytest.approx(6 * p.compare_branch_keep)
    assert e.breakdown["compare_skip"] == pytest.approx(4 * p.compare_branch_skip)
    # a skipped test is far cheaper than the MAC it saves with a software multiply
    assert SW.compare_branch_skip < SW.mac / 5


def test_plus_adds_samples_and_combine_layers_counts_network_inputs():
    a = MacCounts(total=10, zero_input=2, compares=4, divisions=1, samples=40)
    b = MacCounts(total=30, threshold=3, compares=9, divisions=2, samples=60)
    # "+": more calls of the same layer -> the samples add up
    assert (a + b).samples == 100 and (a + b).total == 40
    # different layers of one network over the same 40 inputs: counters add, samples do not
    c = combine_layers([a, MacCounts(total=5, samples=40), MacCounts()])
    assert (c.total, c.zero_input, c.compares, c.divisions, c.samples) == (15, 2, 4, 1, 40)
    # the smallest nonzero samples among the layers (a Linear over T steps counts B*T rows)
    assert combine_layers([MacCounts(total=1, samples=320), MacCounts(total=1, samples=40)]).samples == 40
    assert combine_layers([a, b], samples=7).samples == 7
    assert combine_layers([]) == MacCounts()


def test_per_sample_cycles_of_a_three_layer_mlp_are_the_sum_of_its_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    convert(model)
    for _, m in unit_layers(model):
        m.set_threshold(0.05)
    x = torch.relu(torch.randn(100, 8, generator=torch.Generator().manual_seed(1)))
    reset_counts(model)
    with torch.no_grad():
        model(x)
    layers = per_layer_counts(model)
    assert [c.samples for c in layers.values()] == [100, 100, 100]
    assert total_counts(model).samples == 100
    # dense: (8*6 + 6*5 + 5*3) MACs per input, SW.mac cycles each on msp430-swmul
    for counts in (layers, list(layers.values()), total_counts(model)):
        assert cost(counts, "dense", per_sample=True).cycles == pytest.approx(93 * SW.mac)
    for name in ("msp430-swmul", "msp430-hwmul"):
        p = PROFILES[name]
        expected = 0.0
        for c in layers.values():      # each layer's cycles per input, by hand
            keep = c.total - c.zero_weight - c.zero_input - c.threshold
            expected += (keep * (p.mac + p.compare_branch_keep)
                         + (c.compares - keep) * p.compare_branch_skip
                         + c.divisions * p.division["exact"]) / 100
        assert sum(c.threshold for c in layers.values()) > 0
        for counts in (layers, list(layers.values()), total_counts(model)):
            got = cost(counts, "unit", profile=name, per_sample=True).cycles
            assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mul", ["swmul", "hwmul"])
def test_shipped_profiles_are_the_recorded_fit(mul):
    # the costs in layerwise.unit.mcu come from `python bench/mcu_fit.py ... --out docs/results/mcu-fit.json`;
    # a profile edited by hand, or a fit rerun without updating the profile, fails here
    import json
    from pathlib import Path

    fit = json.loads((Path(__file__).parents[2] / "docs" / "results" / "mcu-fit.json").read_text())["costs"][mul]
    p = PROFILES[f"msp430-{mul}"]
    for key, value in fit.items():
        group, _, method = key.partition(".")
        shipped = getattr(p, group)[method] if method else getattr(p, key)
        assert shipped == pytest.approx(value, abs=1e-9), key
