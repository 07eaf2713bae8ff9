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


def _onednn_convolutions(model, x, capfd) -> int:
    """How many oneDNN convolution primitives one forward pass executes (oneDNN's own log)."""
    capfd.readouterr()
    with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        model(x)
    return sum("primitive,exec" in line and ",convolution," in line for line in capfd.readouterr().out.splitlines())


def test_the_engine_given_packs_the_kernels_whatever_the_global_engine(compressed, digits28, capfd):
    res, packed, x1 = compressed
    xb = torch.stack([digits28.test[i][0] for i in range(64)])
    before = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = "onednn"  # a global setting that disagrees with the one asked for
        fb = integer_model(packed, res.allocation.bits, digits28.val, x1, samples=128, engine="fbgemm")
        assert torch.backends.quantized.engine == "onednn"  # restored after every prepacking step
        torch.backends.quantized.engine = "fbgemm"
        dn = integer_model(packed, res.allocation.bits, digits28.val, x1, samples=128, engine="onednn")
        assert torch.backends.quantized.engine == "fbgemm"
    finally:
        torch.backends.quantized.engine = before
    assert fb.to_json()["engine"] == "fbgemm" and dn.to_json()["engine"] == "onednn"
    # the run-time engine does not matter: the prepacked weights carry their library
    assert _onednn_convolutions(fb.model, x1, capfd) == 0
    assert _onednn_convolutions(dn.model, x1, capfd) == 2  # tiny-cnn's two convolutions
    # the same codes and activation ranges either way: the libraries differ only in how they round
    # when requantizing, a step here and there, not in what the model predicts
    with torch.no_grad():
        a, b = fb.model(xb), dn.model(xb)
    step = fb.model.get_submodule("fc").scale
    assert float((a - b).abs().max()) <= 3 * step + 1e-6
    assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.95


def test_integer_path_leaves_fp32_only_at_the_output(compressed, digits28):
    res, packed, x1 = compressed
    out = integer_model(packed, res.allocation.bits, digits28.val, x1, samples=128)
    assert any(isinstance(m, torch.nn.Flatten) for m in packed.modules())  # the model has a Flatten module ...
    ops = out.ops
    # ... yet one quantize (the input) and one dequantize (the logits): no dequantize/flatten/requantize
    assert ops["quantized_functions"].get("quantize_per_tensor") == 1 and ops["dequantize"] == 1
    flat = [n for n in out.model.graph.nodes if n.op == "call_function" and n.target is torch.flatten]
    assert len(flat) == 1
    seen = {}
    hook = out.model.get_submodule("fc").register_forward_pre_hook(lambda _m, args: seen.update(x=args[0]))
    with torch.no_grad():
        out.model(x1)
    hook.remove()
    # fc reads uint8 with conv2's output scale: max-pool and flatten passed it on, nothing requantized
    assert seen["x"].is_quantized and seen["x"].q_scale() == out.model.get_submodule("features.conv2").scale


def test_an_engine_this_build_cannot_pack_for_is_a_clear_error(compressed, digits28):
    from layerwise.adalayer.int8 import StaticQuantError, static_int8
    from layerwise.errors import LayerwiseError
    res, packed, x1 = compressed
    with pytest.raises(StaticQuantError, match=r"quantized engine 'qnnpack' cannot pack int8 weights here: "
                                               r"pass one of \['fbgemm'"):
        integer_model(packed, res.allocation.bits, digits28.val, x1, engine="qnnpack")
    with pytest.raises(LayerwiseError, match="engine 'arm'"):
        static_int8(packed, digits28.val, x1, engine="arm")
