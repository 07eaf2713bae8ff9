"""Integer execution of the compressed model: int8 weights that ARE the packed codes, quantized x86
kernels, predictions close to the packed model's, and a smaller activation working set."""

import copy

import pytest
import torch
from torch.profiler import profile

from layerwise.adalayer import AdaLayerConfig, Architecture, compress_model, load_packed_bytes
from layerwise.adalayer.intexec import activation_peak_bytes, integer_model
from layerwise.train import TrainConfig, predict, train


@pytest.fixture(scope="module")
def compressed(digits28):
    torch.manual_seed(0)
    arch = Architecture("tiny-cnn", tuple(digits28.input_shape), digits28.num_classes, {})
    model = arch.build()
    train(model, digits28, TrainConfig(epochs=1, batch_size=64, optimizer="adam", lr=3e-3, seed=0))
    x1 = digits28.val[0][0][None]
    res = compress_model(copy.deepcopy(model.eval()), digits28, arch, budget=0.15, example_input=x1,
                         config=AdaLayerConfig(finetune_epochs=0))
    return res, load_packed_bytes(res.packed).model, x1


def test_integer_model_uses_the_packed_codes_and_int8_kernels(compressed, digits28):
    res, packed, x1 = compressed
    out = integer_model(packed, res.allocation.bits, digits28.val, x1, samples=128)
    assert out.model is not None, out.reason
    assert out.ops["exact_packed_codes_layers"] == len(res.quantized) and out.ops["float_layers"] == []
    for name, qw in res.quantized.items():  # no BatchNorm here: codes equal, not only up to sign
        w = out.model.get_submodule(name).weight()
        assert torch.equal(w.int_repr().int(), qw.codes)
    with profile() as prof, torch.no_grad():
        out.model(x1)
    ops = {e.key for e in prof.key_averages()}
    assert {"quantized::conv2d_relu", "quantized::linear"} & ops and "aten::conv2d" not in ops
    a = predict(packed, digits28.test).predicted
    b = predict(out.model, digits28.test).predicted
    assert float((a == b).float().mean()) >= 0.95  # only activation rounding differs
    fp, q = activation_peak_bytes(packed, x1), activation_peak_bytes(out.model, x1)
    assert q[0] * 3 < fp[0]  # uint8 activations: about a quarter of the fp32 bytes
