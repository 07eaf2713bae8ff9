"""MRLA-B / MRLA-L / ELA models: parameter counts, equal value modes, stage reset, removed layers."""

from __future__ import annotations

import pytest
import torch

from layerwise.ela import AttentionCapture, find_attention_layers
from layerwise.models import build_model, list_models
from layerwise.models.mrla import MRLABottleneck, eca_kernel_size, mrla_blocks

# Exact counts at 10 classes, (3, 32, 32), and the published figures (within 1 %).
PARAMS = {
    "resnet20-mrla-b": (230_286, 0.230e6), "resnet56-mrla-b": (621_046, 0.621e6),
    "resnet110-mrla-b": (1_207_186, 1.207e6),
    "resnet20-mrla-l": (231_182, 0.231e6), "resnet56-mrla-l": (623_734, 0.624e6),
    "resnet110-mrla-l": (1_212_562, 1.213e6),
    "resnet20-ela": (230_286, 0.230e6), "resnet56-ela": (621_046, 0.621e6), "resnet110-ela": (1_207_186, 1.207e6),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_reference(name):
    exact, published = PARAMS[name]
    count = sum(p.numel() for p in build_model(name, (3, 32, 32), 10).parameters())
    assert count == exact
    assert abs(count - published) / published < 0.01


def test_all_nine_models_are_registered():
    # the CIFAR ones (ResNet-20/56/110); the ImageNet ResNet-50/101 versions are tested with their models
    cifar = {n for n in set(list_models("resnet*-mrla-*")) | set(list_models("resnet*-ela"))
             if n.split("-")[0] in ("resnet20", "resnet56", "resnet110")}
    assert cifar == set(PARAMS)


def test_eca_kernel_sizes_and_heads():
    assert [eca_kernel_size(c) for c in (64, 128, 256)] == [3, 5, 5]
    model = build_model("resnet20-mrla-b", (3, 32, 32), 10)
    heads = [b.attention.heads for _, b in mrla_blocks(model)]
    assert heads == [2, 2, 4, 4, 8, 8]
    assert all(b.attention.head_dim == 32 for _, b in mrla_blocks(model))


def test_per_block_parameter_formula():
    # 2k + 9C (+ C for MRLA-L) + 2C (BN) per block, as in the CIFAR reference code
    for variant, lam in (("b", 0), ("l", 1)):
        model = build_model(f"resnet20-mrla-{variant}", (3, 32, 32), 10)
        for _, block in mrla_blocks(model):
            c, k = block.out_channels, eca_kernel_size(block.out_channels)
            extra = sum(p.numel() for p in block.attention.parameters()) + \
                sum(p.numel() for p in block.attention_norm.parameters())
            assert extra == 2 * k + 9 * c + lam * c + 2 * c


def test_stack_and_sum_value_modes_compute_the_same_output():
    torch.manual_seed(0)
    a = build_model("resnet20-mrla-b", (3, 8, 8), 10, values="sum").eval()
    b = build_model("resnet20-mrla-b", (3, 8, 8), 10, values="stack").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


def _distribution_lengths(model, x):
    layers = find_attention_layers(model)
    with AttentionCapture(layers) as cap, torch.no_grad():
        model.eval()(x)
    return {k: len(v) for k, v in cap.means().items()}, cap.means()


def test_mrla_b_lists_reset_at_each_stage_and_distributions_sum_to_one():
    torch.manual_seed(0)
    model = build_model("resnet56-mrla-b", (3, 8, 8), 10)
    lengths, dists = _distribution_lengths(model, torch.randn(2, 3, 8, 8))
    for stage in (1, 2, 3):
        assert [lengths[f"layer{stage}.{i}"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    for d in dists.values():
        assert d.sum() == pytest.approx(1.0, abs=1e-5)


def test_mrla_l_probe_has_one_entry_per_earlier_layer_of_the_stage():
    torch.manual_seed(0)
    model = build_model("resnet20-mrla-l", (3, 8, 8), 10)
    lengths, dists = _distribution_lengths(model, torch.randn(2, 3, 8, 8))
    assert lengths == {"layer1.0": 1, "layer1.1": 2, "layer2.0": 1, "layer2.1": 2, "layer3.0": 1, "layer3.1": 2}
    assert dists["layer2.1"].sum() == pytest.approx(1.0, abs=1e-6)


class _Called(RuntimeError):
    pass


def _forbid(module):
    def hook(*_):
        raise _Called(f"{module} ran")
    return module.register_forward_pre_hook(hook)


def test_a_skipped_attention_layer_never_executes_and_later_layers_skip_its_keys():
    torch.manual_seed(0)
    model = build_model("resnet56-ela", (3, 8, 8), 10).eval()
    blocks = dict(mrla_blocks(model))
    skipped = blocks["layer1.2"]
    skipped.skip_attention = True
    handles = [_forbid(m) for m in (skipped.attention, skipped.attention.query, skipped.attention.key,
                                   skipped.attention.value, skipped.attention.softmax, skipped.attention_norm)]
    try:
        lengths, _ = _distribution_lengths(model, torch.randn(2, 3, 8, 8))
    finally:
        for h in handles:
            h.remove()
    assert "layer1.2" not in lengths
    # the later layers of the stage attend over the NON-skipped layers only: one entry fewer
    assert [lengths[f"layer1.{i}"] for i in (0, 1, 3, 4, 5)] == [1, 2, 3, 4, 5]
    assert [lengths[f"layer2.{i}"] for i in range(6)] == [1, 2, 3, 4, 5, 6]
    # and the hooks really fire when the layer is not skipped
    skipped.skip_attention = False
    h = _forbid(skipped.attention.query)
    with pytest.raises(_Called):
        model(torch.randn(1, 3, 8, 8))
    h.remove()


def test_a_skipped_block_is_exactly_the_plain_bottleneck():
    torch.manual_seed(0)
    model = build_model("resnet20-ela", (3, 8, 8), 10).eval()
    block = dict(mrla_blocks(model))["layer2.0"]
    block.skip_attention = True
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        expected = block.act(block.shortcut(x) + block.residual(x))
        torch.testing.assert_close(block(x), expected)
    assert isinstance(block, MRLABottleneck)


def test_a_block_called_alone_runs_as_a_one_layer_stage():
    torch.manual_seed(0)
    block = dict(mrla_blocks(build_model("resnet20-mrla-b", (3, 8, 8), 10).eval()))["layer1.1"]
    out = block(torch.randn(2, 64, 8, 8))
    assert out.shape == (2, 64, 8, 8)


@pytest.mark.parametrize("name", ["resnet56-mrla-b", "resnet56-mrla-l", "resnet56-ela"])
def test_q_and_k_keep_pytorch_default_init_as_the_references(name):
    """Q/K Conv1d: U(-1/sqrt(k), 1/sqrt(k)) (PyTorch's default, as the CIFAR reference), not Kaiming
    normal with std sqrt(2/k), which would put about half of the 100+ weights beyond that bound."""
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 10)
    weights = []
    for _, block in mrla_blocks(model):
        k = eca_kernel_size(block.out_channels)
        for conv in (block.attention.query, block.attention.key):
            assert conv.weight.abs().max() <= 1 / k ** 0.5
            weights.append(conv.weight.flatten() * k ** 0.5)  # U(-1, 1) after rescaling
        # the depthwise V conv keeps the reference's N(0, sqrt(2 / (9 C))) (a Conv2d init)
        std = block.attention.value.weight.std().item()
        assert 0.8 < std / (2 / (9 * block.out_channels)) ** 0.5 < 1.2
    w = torch.cat(weights)
    assert abs(w.var().item() - 1 / 3) < 0.08  # the variance of U(-1, 1)


def test_attention_at_init_is_not_saturated():
    """With the reference init few stage distributions start one-hot; Kaiming on Q and K (the old
    init) saturates several on the same input (ELA's first KL window would see those)."""
    def one_hot_layers(kaiming: bool) -> int:
        torch.manual_seed(0)
        model = build_model("resnet56-mrla-b", (3, 16, 16), 10).train()
        if kaiming:
            for _, b in mrla_blocks(model):
                for conv in (b.attention.query, b.attention.key):
                    torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        with AttentionCapture(find_attention_layers(model)) as cap, torch.no_grad():
            model(torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
        return sum(float(d.max()) > 0.999 for d in cap.means().values() if len(d) > 1)

    assert one_hot_layers(kaiming=False) <= 1
    assert one_hot_layers(kaiming=True) >= 3
