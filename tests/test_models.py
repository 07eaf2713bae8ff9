"""The model zoo: every registered model builds and runs; counts, shapes and errors users see."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerwise.errors import LayerwiseError, ShapeMismatchError, UnknownNameError
from layerwise.models import (
    DropPath,
    ModelConfigError,
    ResidualBlock,
    build_model,
    list_models,
    preferred_input_shape,
)

SERIES_SHAPES = {"cnn-lstm": (6, 100), "multibranch-cnn": (23, 128), "cnn1d": (6, 100)}
IMAGE_SHAPES = {"tiny-cnn": (1, 28, 28), "widar-lenet": (22, 20, 20)}


def sample_shape(name: str) -> tuple[int, ...]:
    return SERIES_SHAPES.get(name) or IMAGE_SHAPES.get(name) or (3, 32, 32)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_in_eval_and_train(name):
    torch.manual_seed(0)
    shape = sample_shape(name)
    model = build_model(name, shape, 7)
    x = torch.randn(2, *shape)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    model.train()
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_list_models_has_the_zoo_and_filters_by_glob():
    names = list_models()
    for name in ("resnet20", "resnet56", "resnet110", "resnet20-basic", "resnet56-basic",
                 "resnet110-basic", "resnet18", "resnet34", "mobilenetv2", "cnn-lstm",
                 "multibranch-cnn", "tiny-cnn", "widar-lenet"):
        assert name in names
    assert names == sorted(names)
    assert list_models("resnet*-basic") == ["resnet110-basic", "resnet20-basic", "resnet56-basic"]


# Exact counts at 10 classes, (3, 32, 32), and the published figures they must match.
CIFAR_PARAMS = {
    "resnet20": (220_378, 0.22e6), "resnet56": (591_322, 0.59e6), "resnet110": (1_147_738, 1.15e6),
    "resnet20-basic": (269_722, 0.27e6), "resnet56-basic": (853_018, 0.85e6),
    "resnet110-basic": (1_727_962, 1.7e6),
}


@pytest.mark.parametrize("name", sorted(CIFAR_PARAMS))
def test_cifar_resnet_parameter_counts(name):
    exact, published = CIFAR_PARAMS[name]
    count = n_params(build_model(name, (3, 32, 32), 10))
    assert count == exact
    if name == "resnet110-basic":
        # He et al. print "1.7M" (two digits): 1.728M rounds to it but is 1.6 % away.
        assert round(count / 1e6, 1) == 1.7
    else:
        assert abs(count - published) / published < 0.01


@pytest.mark.parametrize("name, kind, count", [
    ("resnet20", "bottleneck", 6), ("resnet56", "bottleneck", 18), ("resnet110", "bottleneck", 36),
    ("resnet20-basic", "basic", 9), ("resnet18", "basic", 8), ("resnet34", "basic", 16),
    ("mobilenetv2", "inverted_residual", 17),
])
def test_residual_block_structure(name, kind, count):
    model = build_model(name, (3, 32, 32), 10)
    blocks = residual_blocks(model)
    assert len(blocks) == count
    for b in blocks:
        assert b.block_kind == kind
        assert isinstance(b.residual, nn.Module)
        assert isinstance(b.residual[-1], nn.BatchNorm2d)  # branch ends in its last BN
        assert b.shortcut is None or isinstance(b.shortcut, nn.Module)
        assert isinstance(b.changes_shape, bool)


def test_changes_shape_and_shortcuts():
    model = build_model("resnet20", (3, 32, 32), 10)
    # first block of each stage projects (channels change), the second is identity
    for stage in (model.layer1, model.layer2, model.layer3):
        assert stage[0].changes_shape and not isinstance(stage[0].shortcut, nn.Identity)
        assert not stage[1].changes_shape and isinstance(stage[1].shortcut, nn.Identity)
    basic = build_model("resnet20-basic", (3, 32, 32), 10)
    assert [b.changes_shape for b in residual_blocks(basic)] == [False] * 3 + [True, False, False] * 2
    # option A shortcut has no parameters
    assert n_params(basic.layer2[0].shortcut) == 0
    mb = build_model("mobilenetv2", (3, 32, 32), 10)
    skip = [b for b in residual_blocks(mb) if b.shortcut is not None]
    assert len(skip) == 10
    assert all(not b.changes_shape for b in skip)
    assert all(b.changes_shape for b in residual_blocks(mb) if b.shortcut is None)


def test_block_forward_is_act_of_shortcut_plus_residual():
    torch.manual_seed(0)
    model = build_model("resnet20", (3, 32, 32), 10).eval()
    block = model.layer2[0]
    x = torch.randn(2, block.in_channels, 32, 32)
    with torch.no_grad():
        expected = torch.relu(block.shortcut(x) + block.residual(x))
        assert torch.allclose(block(x), expected)
        assert block(x).shape == (2, 128, 16, 16)


def test_resnet18_stem_adapts_to_image_size():
    small = build_model("resnet18", (3, 32, 32), 10)
    assert small.stem.conv.kernel_size == (3, 3) and not hasattr(small.stem, "pool")
    large = build_model("resnet18", (3, 96, 96), 10)
    assert large.stem.conv.kernel_size == (7, 7) and isinstance(large.stem.pool, nn.MaxPool2d)
    with torch.no_grad():
        assert large.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 10)
        assert small.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 10)


# ---- tiny CNNs (UnIT Table 1) -----------------------------------------------------------------

@pytest.mark.parametrize("shape, classes, fc_in", [
    ((1, 28, 28), 10, 256), ((3, 32, 32), 10, 400), ((1, 124, 80), 12, 7616),
])
def test_tiny_cnn_matches_unit_table1(shape, classes, fc_in):
    model = build_model("tiny-cnn", shape, classes)
    assert model.fc.in_features == fc_in and model.fc.out_features == classes
    assert model.features.conv1.weight.shape == (6, shape[0], 5, 5)
    assert model.features.conv2.weight.shape == (16, 6, 5, 5)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2


def test_widar_lenet_matches_unit_table1():
    model = build_model("widar-lenet", (22, 20, 20), 6)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert shapes == [(32, 22, 6, 6), (64, 32, 3, 3), (96, 64, 3, 3), (128, 1536), (6, 128)]
    assert build_model("widar-lenet", (3, 32, 32), 10).classifier.fc1.in_features == 96 * 10 * 10


def test_tiny_cnn_too_small_input_names_minimum_and_fix():
    with pytest.raises(ShapeMismatchError) as err:
        build_model("tiny-cnn", (1, 8, 8), 10)
    msg = str(err.value)
    assert "16x16" in msg and "(1, 8, 8)" in msg and "size=28" in msg and "\n" not in msg
    build_model("tiny-cnn", (1, 16, 16), 10)  # the minimum works
    assert preferred_input_shape("tiny-cnn", (1, 8, 8)) == (1, 28, 28)
    assert preferred_input_shape("widar-lenet", (22, 8, 8)) == (22, 20, 20)
    assert preferred_input_shape("resnet20", (3, 8, 8)) is None
    assert preferred_input_shape("tiny-cnn", (6, 100)) is None


# ---- shape errors --------------------------------------------------------------------------

def test_image_model_on_series_says_which_models_fit():
    with pytest.raises(ShapeMismatchError) as err:
        build_model("resnet20", (6, 100), 10)
    msg = str(err.value)
    assert msg == ("resnet20 takes images (C, H, W) but dataset gives series (6, 100): "
                   "pick a 1-D model such as cnn-lstm or multibranch-cnn")


@pytest.mark.parametrize("name", ["cnn-lstm", "multibranch-cnn"])
def test_series_model_on_images_says_which_models_fit(name):
    with pytest.raises(ShapeMismatchError, match=r"takes series \(C, T\) but dataset gives images "
                                                  r"\(3, 32, 32\): pick a 2-D model"):
        build_model(name, (3, 32, 32), 10)


def test_unknown_name_lists_valid_models():
    with pytest.raises(UnknownNameError) as err:
        build_model("resnet21", (3, 32, 32), 10)
    msg = str(err.value)
    assert "resnet21" in msg and "resnet20" in msg and "mobilenetv2" in msg and "cnn-lstm" in msg


def test_unknown_option_names_valid_ones():
    with pytest.raises(ModelConfigError, match="tiny-cnn does not take option 'drop_path'"):
        build_model("tiny-cnn", (1, 28, 28), 10, drop_path=0.1)
    with pytest.raises(LayerwiseError, match="drop_path, drop_path_schedule, zero_init_residual"):
        build_model("resnet20", (3, 32, 32), 10, dropout=0.1)


# ---- drop path and zero-init -----------------------------------------------------------------

def test_drop_path_is_identity_at_eval_and_per_sample_in_training():
    torch.manual_seed(0)
    x = torch.randn(64, 4, 3, 3) + 5.0
    dp = DropPath(0.5)
    assert torch.equal(dp.eval()(x), x)
    out = dp.train()(x)
    kept = (out != 0).flatten(1).all(1)
    dropped = (out == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())  # whole samples, never parts of one
    assert 0 < int(kept.sum()) < 64
    assert torch.allclose(out[kept], 2.0 * x[kept])  # kept ones scaled by 1/(1-p)
    assert torch.equal(DropPath(0.0).train()(x), x)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_drop_path_outside_unit_interval_is_refused(p):
    with pytest.raises(ModelConfigError, match=r"drop_path must be in \[0, 1\)"):
        build_model("resnet20", (3, 32, 32), 10, drop_path=p)


def test_drop_path_zero_equals_no_drop_path_in_training():
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    a = build_model("resnet20", (3, 32, 32), 10).train()
    torch.manual_seed(1)
    b = build_model("resnet20", (3, 32, 32), 10, drop_path=0.0).train()
    assert torch.equal(a(x), b(x))


def test_drop_path_schedules():
    lin = build_model("resnet56", (3, 32, 32), 10, drop_path=0.2)
    ps = [b.drop_path.p for b in residual_blocks(lin)]
    assert ps[-1] == pytest.approx(0.2) and ps[0] == pytest.approx(0.2 / 18)
    assert ps == sorted(ps)
    const = build_model("resnet56", (3, 32, 32), 10, drop_path=0.2, drop_path_schedule="constant")
    assert all(b.drop_path.p == pytest.approx(0.2) for b in residual_blocks(const))
    mb = build_model("mobilenetv2", (3, 32, 32), 10, drop_path=0.2)
    assert all(b.drop_path.p == 0.0 for b in residual_blocks(mb) if b.shortcut is None)
    with pytest.raises(ModelConfigError, match="drop_path_schedule"):
        build_model("resnet20", (3, 32, 32), 10, drop_path_schedule="cosine")


def test_drop_path_in_training_changes_output_and_not_at_eval():
    torch.manual_seed(0)
    model = build_model("resnet20-basic", (3, 32, 32), 10, drop_path=0.5, drop_path_schedule="constant")
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    y1 = model(x)
    torch.manual_seed(2)
    y2 = model(x)
    assert not torch.allclose(y1, y2)


@pytest.mark.parametrize("name", ["resnet20", "resnet20-basic", "resnet18", "mobilenetv2"])
def test_zero_init_residual_makes_each_block_its_shortcut(name):
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 10, zero_init_residual=True).eval()
    blocks = [b for b in residual_blocks(model) if b.shortcut is not None]
    assert blocks
    inputs = {}
    handles = [b.register_forward_hook(lambda m, a, o: inputs.__setitem__(m, a[0])) for b in blocks]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        for h in handles:
            h.remove()
        for b in blocks:
            x = inputs[b]
            assert torch.count_nonzero(b.residual(x)) == 0
            assert torch.equal(b(x), b.act(b.shortcut(x)))
    # blocks without a skip keep their BN: zeroing them would zero the signal
    assert all(b.last_bn().weight.abs().sum() > 0 for b in residual_blocks(model) if b.shortcut is None)
    plain = build_model(name, (3, 32, 32), 10)
    assert all(b.last_bn().weight.abs().sum() > 0 for b in residual_blocks(plain))


# ---- sensor models ---------------------------------------------------------------------------

def test_cnn_lstm_stages_and_size():
    model = build_model("cnn-lstm", (9, 128), 6)
    assert isinstance(model.features, nn.Module) and isinstance(model.head, nn.Linear)
    assert model.lstm.block_kind == "recurrent" and isinstance(model.lstm.lstm, nn.LSTM)
    assert n_params(model) < 200_000
    mean = build_model("cnn-lstm", (9, 128), 6, readout="mean").eval()
    with torch.no_grad():
        assert mean(torch.randn(3, 9, 128)).shape == (3, 6)


def test_multibranch_has_one_branch_per_group():
    groups = {"acc": [0, 1, 2], "ecg": [3, 4], "gyro": [5, 6, 7]}
    model = build_model("multibranch-cnn", (8, 64), 5, channel_groups=groups)
    assert list(model.branches) == ["acc", "ecg", "gyro"]
    for name, branch in model.branches.items():
        assert branch.block_kind == "branch" and branch.name == name
        assert branch.channels == groups[name]
        x = torch.randn(2, len(groups[name]), 64)
        assert branch.eval()(x).shape == (2, model.branch_out_features)
    assert model.head.fc1.in_features == 3 * model.branch_out_features


def test_multibranch_default_groups_of_three_and_mhealth_preset():
    model = build_model("multibranch-cnn", (23, 128), 12)
    assert [b.channels for b in model.branches.values()][-1] == [21, 22]
    assert len(model.branches) == 8
    mh = build_model("multibranch-cnn", (23, 128), 12, channel_groups="mhealth")
    assert mh.branches["ecg"].channels == [3, 4]


def test_multibranch_uses_only_its_channels():
    torch.manual_seed(0)
    model = build_model("multibranch-cnn", (6, 32), 3, channel_groups={"a": [0, 1, 2], "b": [3, 4, 5]})
    model.eval()
    x = torch.randn(1, 6, 32)
    y = x.clone()
    y[:, 3:] = torch.randn(1, 3, 32)
    with torch.no_grad():
        assert torch.equal(model.branches["a"](x[:, :3]), model.branches["a"](y[:, :3]))
        assert not torch.equal(model(x), model(y))


def test_multibranch_bad_channel_index_is_a_shape_error():
    with pytest.raises(ShapeMismatchError, match=r"channels \[9\] but dataset has 6 channels"):
        build_model("multibranch-cnn", (6, 32), 3, channel_groups={"a": [0, 9]})
