"""ImageNet-scale ResNet-50/101 with MRLA-B, MRLA-L and ELA: the papers' parameter counts, one
forward pass each, and the C2-C5 feature maps a detector takes."""

import math

import pytest
import torch

from layerwise.cli import main
from layerwise.errors import ShapeMismatchError
from layerwise.models import build_model
from layerwise.models.mrla import MRLABottleneck, mrla_blocks
from layerwise.models.param_table import count_parameters, parameter_rows

NAMES = [f"resnet{d}{s}" for d in (50, 101) for s in ("", "-mrla-b", "-mrla-l", "-ela")]
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def expected_params(depth: int, attention: str | None, classes: int = 1000) -> int:
    """He et al. Table 1 counted by hand: convs without bias, BN weight + bias, FC with bias; plus,
    per block of output C, Q and K Conv1d (k each), depthwise 3x3 V (9C), BN (2C), MRLA-L's lambda (C)."""
    total = 3 * 64 * 49 + 2 * 64                                    # stem conv 7x7 + BN
    ch = 64
    for planes, n in zip((64, 128, 256, 512), DEPTHS[depth]):
        out = 4 * planes
        for i in range(n):
            total += ch * planes + 2 * planes                      # 1x1 reduce + BN
            total += planes * planes * 9 + 2 * planes              # 3x3 + BN
            total += planes * out + 2 * out                        # 1x1 expand + BN
            if i == 0:
                total += ch * out + 2 * out                        # projection + BN
            if attention:
                t = int((math.log2(out) + 1) / 2)
                k = t if t % 2 else t + 1
                total += 2 * k + 9 * out + 2 * out + (out if attention == "l" else 0)
            ch = out
    return total + 2048 * classes + classes


@pytest.mark.parametrize("depth", [50, 101])
def test_parameter_counts_by_hand(depth):
    assert count_parameters(f"resnet{depth}", (3, 224, 224), 1000) == expected_params(depth, None)
    assert count_parameters(f"resnet{depth}-mrla-b", (3, 224, 224), 1000) == expected_params(depth, "b")
    assert count_parameters(f"resnet{depth}-ela", (3, 224, 224), 1000) == expected_params(depth, "b")
    assert count_parameters(f"resnet{depth}-mrla-l", (3, 224, 224), 1000) == expected_params(depth, "l")
    assert expected_params(50, None) == 25_557_032  # the well-known ResNet-50 count


def test_counts_within_one_percent_of_the_papers():
    rows = {(r.entry.model, r.entry.input_shape): r for r in parameter_rows()}
    imagenet = [r for (m, _), r in rows.items() if m in NAMES]
    assert len(imagenet) == 8
    for r in imagenet:
        if r.entry.published is None:   # resnet101-mrla-b: nothing published, explained in the note
            assert "resnet101-ela" in r.entry.note
            assert r.params == rows[("resnet101-ela", (3, 224, 224))].params
        else:
            assert r.within(0.01), (r.entry.model, r.params, r.entry.published)
    assert all(r.within(0.01) for r in rows.values() if r.entry.published is not None)


def test_list_params_prints_the_table(capsys):
    assert main(["list", "--params"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("resnet50 "))
    assert "25,557,032" in line and "25.6M" in line and "-0.17%" in line and "ELA Table 2" in line
    assert "kws-cnn" in out and "93,976" in out


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_feature_maps(name):
    torch.manual_seed(0)
    model = build_model(name, (3, 64, 64), 10).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        y = model(x)
    assert list(feats) == ["C2", "C3", "C4", "C5"]
    assert [tuple(f.shape[1:]) for f in feats.values()] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    assert dict(model.feature_channels) == {"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}
    assert y.shape == (1, 10) and torch.isfinite(y).all()
    assert torch.allclose(y, model.fc(feats["C5"].mean(dim=(2, 3))), atol=1e-5)
    blocks = mrla_blocks(model)
    depth = 50 if name.startswith("resnet50") else 101
    assert len(blocks) == (0 if name == f"resnet{depth}" else sum(DEPTHS[depth]))
    if blocks:
        variant = "l" if name.endswith("-mrla-l") else "b"
        assert all(isinstance(b, MRLABottleneck) and b.variant == variant for _, b in blocks)


def test_ela_skip_changes_the_output_and_too_small_inputs_are_refused():
    torch.manual_seed(0)
    model = build_model("resnet50-ela", (3, 64, 64), 10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        mrla_blocks(model)[5][1].skip_attention = True   # ELA removes one attention layer
        after = model(x)
    assert not torch.allclose(before, after)
    with pytest.raises(ShapeMismatchError, match="at least 32x32"):
        build_model("resnet101", (3, 16, 16), 10)
