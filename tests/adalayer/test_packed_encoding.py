"""Per layer the packed file stores the cheapest of dense codes, bitmask or CSR; older files (which
stored the training mask as it was) still load to the same model."""

import json
import zlib

import torch
from torch import nn

from layerwise.adalayer import Architecture, load_packed_bytes, make_masks, quantize_weight
from layerwise.adalayer import packed as packed_module
from layerwise.adalayer.bitpack import encode_mask
from layerwise.adalayer.packed import HEADER, encode_packed, passthrough_keys, stored_passthrough


def _entries(data: bytes) -> dict:
    _, _, _, _, m = HEADER.unpack_from(data)
    meta = json.loads(zlib.decompress(data[HEADER.size:HEADER.size + m]))
    return {t["name"]: t for t in meta["tensors"] if t["kind"] == "quantized"}


def _model_and_quantized(ratios, bits):
    torch.manual_seed(0)
    arch = Architecture("tiny-cnn", (1, 28, 28), 10, {})
    model = arch.build().eval()
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    masks = make_masks(targets, {n: ratios.get(n, 0.0) for n, _ in targets})
    q = {n: quantize_weight(m.weight, masks[n], bits.get(n, 8)) for n, m in targets}
    with torch.no_grad():  # the model the file stores: dequantised weights, fp16-rounded biases
        for name, qw in q.items():
            model.get_submodule(name).weight.copy_(qw.dequantize())
        state = model.state_dict()
        for key in passthrough_keys(state, q):
            state[key].copy_(stored_passthrough(state[key], "float16"))
    return arch, model, q


def test_cheapest_encoding_per_layer_and_zero_codes_dropped():
    arch, model, q = _model_and_quantized({"features.conv1": 0.05, "features.conv2": 0.9},
                                          {"features.conv1": 8, "features.conv2": 4})
    data = encode_packed(model.state_dict(), q, arch)
    e = _entries(data)
    # 5 % pruned at 8 bits: every code (zeros included) is cheaper than a 1-bit mask + 8 bits per kept weight
    assert e["features.conv1.weight"]["mask"]["encoding"] == "dense"
    assert e["features.conv1.weight"]["nnz"] == q["features.conv1"].codes.numel()
    # 90 % pruned: positions are stored, only for nonzero codes (a kept weight rounded to 0 is not stored)
    sparse = e["features.conv2.weight"]
    nonzero = int((q["features.conv2"].codes != 0).sum())
    assert sparse["mask"]["encoding"] in ("bitmask", "csr") and sparse["nnz"] == nonzero
    assert nonzero <= q["features.conv2"].nonzero
    rebuilt = load_packed_bytes(data).model
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_files_written_with_the_training_mask_still_load(monkeypatch):
    arch, model, q = _model_and_quantized({"features.conv1": 0.05, "features.conv2": 0.9}, {})
    new = encode_packed(model.state_dict(), q, arch)

    def old_rule(qw):  # how files were written before: the training mask, its cheapest encoding
        mask = qw.mask.cpu().numpy()
        return mask, encode_mask(mask)
    monkeypatch.setattr(packed_module, "stored_mask", old_rule)
    old = encode_packed(model.state_dict(), q, arch)
    assert len(new) < len(old)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_packed_bytes(old).model(x), load_packed_bytes(new).model(x))
