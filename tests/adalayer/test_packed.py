"""The packed file: exact round trip, real size, checksum errors, budget errors."""

import copy

import pytest
import torch

from layerwise.adalayer import (AdaLayerConfig, BudgetError, PackedFileError, attach_fake_quant, bake, compress_model,
                                encode_packed, find_targets, load_packed, load_packed_bytes, make_masks, write_packed)
from layerwise.adalayer.budget import fit_budget
from layerwise.measure import artifact_size


def _compressed(tiny, ratio=0.6, bits=4):
    arch, model = tiny
    targets, _ = find_targets(model)
    masks = make_masks(targets, {n: ratio for n, _ in targets})
    bit_map = {n: bits + i % 3 for i, (n, _) in enumerate(targets)}
    attach_fake_quant(targets, masks, bit_map)
    q = bake(model, targets, masks, bit_map)
    return arch, model, q, encode_packed(model.state_dict(), q, arch)


def test_round_trip_is_bit_identical_and_small(tiny, digits28, tmp_path):
    arch, model, q, data = _compressed(tiny)
    path = write_packed(tmp_path / "m.lwpk", data)
    rebuilt = load_packed(path).model
    x = torch.stack([digits28.test[i][0] for i in range(32)])
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    for name, qw in q.items():
        assert torch.equal(rebuilt.get_submodule(name).weight, qw.dequantize())
    dense = artifact_size(arch.build()).bytes
    assert path.stat().st_size < 0.2 * dense


def test_truncated_file_fails_with_checksum_error(tiny, tmp_path):
    data = _compressed(tiny)[3]
    path = tmp_path / "t.lwpk"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(PackedFileError, match=r"t\.lwpk is corrupted or truncated \(SHA-256 checksum mismatch\)"):
        load_packed(path)
    path.write_bytes(data[:20])
    with pytest.raises(PackedFileError, match="truncated"):
        load_packed(path)


def test_bit_flip_fails_with_checksum_error(tiny, tmp_path):
    data = bytearray(_compressed(tiny)[3])
    data[len(data) // 2] ^= 0x10
    path = tmp_path / "f.lwpk"
    path.write_bytes(bytes(data))
    with pytest.raises(PackedFileError, match="checksum mismatch"):
        load_packed(path)


def test_not_a_packed_file(tmp_path):
    path = tmp_path / "x.lwpk"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(PackedFileError, match="not a layerwise packed file"):
        load_packed(path)


def test_infeasible_budget_names_smallest_feasible():
    with pytest.raises(BudgetError, match=r"below the smallest feasible budget 0\.0801 .* pass --budget 0\.0801"):
        fit_budget(lambda t: 1000, budget=0.05, dense_bytes=10_000, floor_bytes=801, knob_max=1.0)


def test_budget_bisection_finds_least_knob():
    size = lambda t: int(10_000 - 8_000 * min(t, 1.0))  # noqa: E731
    fit = fit_budget(size, budget=0.5, dense_bytes=10_000, floor_bytes=2_000, knob_max=1.0)
    assert fit.packed_bytes <= 5_000 and fit.knob == pytest.approx(0.625, abs=1e-3)


def test_compress_model_meets_budget_and_skips_nothing_on_cnn(tiny, digits28):
    arch, model = tiny
    dense = artifact_size(model).bytes
    x = digits28.val[0][0][None]
    res = compress_model(copy.deepcopy(model), digits28, arch, budget=0.2, example_input=x,
                         config=AdaLayerConfig(finetune_epochs=0, probe_bits=2))
    assert len(res.packed) <= 0.2 * dense
    assert res.skipped == []
    assert {p.name for p in res.plans} == {n for n, _ in find_targets(model)[0]}
    assert all(4 <= p.bits <= 8 and 0.0 <= p.prune_ratio <= 0.95 for p in res.plans)
    rebuilt = load_packed_bytes(res.packed).model
    with torch.no_grad():
        assert torch.equal(rebuilt(x), res.model(x))
    with pytest.raises(BudgetError, match="smallest feasible budget"):
        compress_model(copy.deepcopy(model), digits28, arch, budget=0.01, example_input=x,
                       config=AdaLayerConfig(finetune_epochs=0, probe_bits=2))
