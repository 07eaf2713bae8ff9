"""Structured mode really removes channels; the packed structured model rebuilds exactly; ONNX matches."""

import copy

import pytest
import torch

from layerwise.adalayer import (AdaLayerConfig, Architecture, compress_model, export_and_check, find_targets,
                                load_packed_bytes, prune_channels)
from layerwise.measure import count_macs, count_params


def test_structured_pruning_reduces_channels_params_and_macs():
    arch = Architecture("resnet20", (3, 16, 16), 4, {})
    model = arch.build().eval()
    x = torch.randn(1, 3, 16, 16)
    p0, m0 = count_params(model), count_macs(model, x).total
    names = [n for n, _ in find_targets(model)[0]]
    done = prune_channels(model, x, {n: 0.5 for n in names})
    assert done and all(after < before for before, after in done.values())
    assert model.stem.conv.out_channels == 8 and model.fc.out_features == 4
    assert count_params(model) < 0.4 * p0 and count_macs(model, x).total < 0.4 * m0
    assert model(x).shape == (1, 4)


def test_structured_packed_round_trip_equal(tiny, digits28):
    arch, model = tiny
    data = digits28
    x = data.val[0][0][None]
    res = compress_model(copy.deepcopy(model), data, arch, budget=0.15, example_input=x,
                         config=AdaLayerConfig(finetune_epochs=0, structured=True, probe_bits=2))
    rebuilt = load_packed_bytes(res.packed).model
    assert count_params(rebuilt) < count_params(model)
    xb = torch.stack([data.test[i][0] for i in range(16)])
    with torch.no_grad():
        assert torch.equal(rebuilt(xb), res.model(xb))


def test_onnx_of_the_compressed_model_matches_onnxruntime(tiny, digits28, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import numpy_helper
    arch, model = tiny
    x = torch.stack([digits28.test[i][0] for i in range(4)])
    res = compress_model(copy.deepcopy(model), digits28, arch, budget=0.15, example_input=x[:1],
                         config=AdaLayerConfig(finetune_epochs=0))
    rebuilt = load_packed_bytes(res.packed).model
    check = export_and_check(rebuilt, x, tmp_path / "m.onnx")
    assert check.ok and check.max_abs_diff < 1e-4 and (tmp_path / "m.onnx").stat().st_size > 0
    # the exported weights ARE the compressed ones: pruned zeros and B-bit codes times the fp16 scales
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    for name, qw in res.quantized.items():
        w = inits[f"{name}.weight"]
        assert (w != 0).sum() <= qw.nonzero < qw.mask.numel()  # really pruned
        assert torch.equal(torch.from_numpy(w.copy()), qw.dequantize())
