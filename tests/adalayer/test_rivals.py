"""The rivals' own maths: the HAWQ-style integer program finds the true optimum, global magnitude
pruning uses one threshold over all layers, uniform-fl8 keeps the first and the output layers."""

import itertools

import pytest
import torch
from torch import nn

from layerwise.adalayer.hawq import layer_options, solve_ilp
from layerwise.adalayer.rivals import family_plan, global_magnitude_ratios


def test_integer_program_equals_brute_force():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        costs = [torch.rand(4, generator=gen).tolist() for _ in range(3)]
        sizes = [torch.randint(1, 20, (4,), generator=gen).tolist() for _ in range(3)]
        budget = 30
        best = min((sum(costs[l][k] for l, k in enumerate(p)), p) for p in itertools.product(range(4), repeat=3)
                   if sum(sizes[l][k] for l, k in enumerate(p)) <= budget)
        picks = solve_ilp(costs, sizes, budget)
        assert sum(sizes[l][k] for l, k in enumerate(picks)) <= budget
        assert sum(costs[l][k] for l, k in enumerate(picks)) == pytest.approx(best[0])


def test_layer_options_cost_and_bytes_by_hand():
    w = torch.tensor([[0.1, -0.2, 0.3, -0.4], [1.0, 0.5, -0.25, 0.0]])
    opts = {(r, b): (err, size) for r, b, err, size in layer_options(w, [0.0, 0.5], [2, 8])}
    # 2 bits, no pruning: codes -1..1, scale max|w_c| (fp16): row 0 -> [0, 0, .4, -.4], row 1 -> [1, 1, 0, 0]
    err = (0.1 ** 2 + 0.2 ** 2 + 0.1 ** 2 + 0.0) + (0.0 + 0.5 ** 2 + 0.25 ** 2 + 0.0)
    assert opts[(0.0, 2)][0] == pytest.approx(err, rel=1e-3)
    assert opts[(0.0, 2)][1] == 2 + 0 + 2 * 2  # 8 codes x 2 bits = 2 bytes, dense mask 0 bytes, 2 fp16 scales
    assert opts[(0.5, 8)][1] == 4 + 1 + 2 * 2  # 4 kept x 8 bits, 1-byte bitmask of 8 positions, scales


def test_global_magnitude_uses_one_threshold_over_all_layers():
    a, b = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
        b.weight.copy_(torch.tensor([[5.0, 6.0], [7.0, 0.05]]))
    r = global_magnitude_ratios([("a", a), ("b", b)], 0.5)  # the 4 smallest of 8: 0.05, 0.1, 0.2, 0.3
    assert r == {"a": 0.75, "b": 0.25}


def test_uniform_fl8_keeps_first_and_output_layers_at_8_bits():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(16, 3)).eval()
    ratios, bits = family_plan("uniform-fl8", model, torch.randn(1, 1, 6, 6), 0.95)(0.5, 3)
    assert bits == {"0": 8, "2": 3, "4": 8} and ratios == {"0": 0.0, "2": 0.5, "4": 0.0}


def test_ilp_allocation_fits_the_budget_and_rebuilds_exactly(tiny, digits28):
    import copy

    from layerwise.adalayer import AdaLayerConfig, compress_model, load_packed_bytes
    arch, model = tiny
    x = digits28.val[0][0][None]
    res = compress_model(copy.deepcopy(model), digits28, arch, budget=0.15, example_input=x,
                         config=AdaLayerConfig(finetune_epochs=0, allocation="ilp"))
    assert 0.9 * res.budget.target_bytes <= len(res.packed) <= res.budget.target_bytes
    assert set(res.allocation.bits.values()) <= set(range(2, 9))
    xb = torch.stack([digits28.test[i][0] for i in range(8)])
    with torch.no_grad():
        assert torch.equal(load_packed_bytes(res.packed).model(xb), res.model(xb))


@pytest.mark.parametrize("top, expected_bits, finetuned", [(0, 8, {3, 4, 8}), (2, 4, {3, 4})])
def test_rival_is_ranked_by_validation_accuracy_after_its_fine_tune(monkeypatch, top, expected_bits, finetuned):
    import math
    from types import SimpleNamespace

    from layerwise.adalayer import AdaLayerConfig, Architecture
    from layerwise.adalayer import rivals

    # a stand-in size: 1000 * bits * (1 - ratio) + 100 bytes. At 3,100 bytes: 3 bits fits unpruned,
    # 4 bits at ratio 0.25, 8 bits at 0.625 (all ~3,100: the same size); 2 bits fits unpruned at 2,100,
    # more than 1 % below, so it does not compete
    monkeypatch.setattr(rivals, "plan_size_fn", lambda *a, **k: lambda ratios, bits: math.ceil(
        1000 * next(iter(bits.values())) * (1 - next(iter(ratios.values())))) + 100)

    def fake_compress_plan(m, data, arch, *, prune_ratio, bits, config, device="cpu", progress=None, finetune=True):
        m.bits, m.finetuned = next(iter(bits.values())), finetune  # like the real one, it changes m in place
        return m, {}, b"\0" * 7
    monkeypatch.setattr(rivals, "compress_plan", fake_compress_plan)
    # before the fine-tune the ranking is the reverse of the one after it
    acc = {(3, False): 0.9, (4, False): 0.5, (8, False): 0.1, (3, True): 0.6, (4, True): 0.7, (8, True): 0.95}
    monkeypatch.setattr(rivals, "evaluate", lambda m, *a, **k: SimpleNamespace(accuracy=acc[(m.bits, m.finetuned)]))

    base = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    arch = Architecture("custom", (4,), 3, {})
    fc = rivals.fit_family("uniform", base, SimpleNamespace(val=None), arch, AdaLayerConfig(), target_bytes=3100,
                           example_input=torch.randn(1, 4), bits_options=[2, 3, 4, 8], band=0.01, top=top)
    assert fc.chosen.bits == expected_bits and fc.model.bits == expected_bits and fc.model.finetuned
    ratio = {3: 0.0, 4: 0.25, 8: 0.625}[expected_bits]
    assert fc.chosen.prune_ratio == pytest.approx(ratio, abs=1e-5)
    assert fc.prune_ratio == {"0": fc.chosen.prune_ratio, "2": fc.chosen.prune_ratio}
    assert fc.bits == {"0": expected_bits, "2": expected_bits}
    by_bits = {c.bits: c for c in fc.candidates}
    assert {b for b, c in by_bits.items() if c.val_accuracy_finetuned is not None} == finetuned
    assert by_bits[2].val_accuracy_finetuned is None and by_bits[2].packed_bytes == 2100
    assert all(c.packed_bytes <= 3100 for c in fc.candidates)
    assert ("capped" in fc.ranking) == (top > 0)
