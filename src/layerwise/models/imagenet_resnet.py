"""ImageNet ResNet-50/101 (He et al. 2016, Table 1) and their MRLA-B, MRLA-L and ELA versions.

The backbone: 7x7/2 conv (64) + BN + ReLU + 3x3/2 max-pool, four stages of bottlenecks (planes
64/128/256/512, expansion 4, so outputs 256/512/1024/2048; depths 3-4-6-3 for ResNet-50 and
3-4-23-3 for ResNet-101), stride on the 3x3 conv of each stage's first block (strides 1/2/2/2;
the "v1.5" placement of the public ImageNet code both MRLA and ELA build on), 1x1 conv + BN
projection shortcuts where a block changes shape, global average pool, FC 2048 -> classes.

Layer attention: ``-mrla-b`` / ``-mrla-l`` put one MRLA-B / MRLA-L layer after every bottleneck
(:class:`~layerwise.models.mrla.MRLABottleneck`, the CIFAR models' module and placement, reused:
the key/value lists of MRLA-B reset at each stage, MRLA-L's ``o_prev`` is the block's identity
input); ``-ela`` is the MRLA-B network that :mod:`layerwise.ela` trains with ELA's layer skipping
(Li & Huang, "Enhancing Layer Attention Efficiency through Pruning Redundant Retrievals"). Heads of
32 channels and ECA kernel sizes as on CIFAR (C = 256 -> k 5, 512 -> 5, 1024 -> 5, 2048 -> 7).

Parameter counts at 1000 classes (``PAPER_PARAMS``, printed by ``layerwise list --params``):
ResNet-50 25,557,032 (Table 2: 25.6M); ResNet-101 44,549,160 (44.5M). Each attention layer adds
``2k + 9C + 2C`` (MRLA-B / ELA) or ``2k + 9C + C + 2C`` (MRLA-L): ResNet-50 -mrla-b / -ela
25,723,348, -mrla-l 25,738,452 (Table 2: 25.7M for all three); ResNet-101 -mrla-l / -ela 44,939,646
/ 44,907,134 (44.9M). ResNet-101 MRLA-B has no published count (ELA Table 3 times it but lists no
parameters; the MRLA paper reports MRLA-L on ResNet-101): it has ResNet-101-ELA's parameters, as
ELA only skips attention layers at training time.

``forward_features(x)`` returns the four stage outputs as an ordered dict ``C2..C5`` (strides
4/8/16/32, channels 256/512/1024/2048): the multi-scale maps a detector's FPN takes (see
docs/backbones.md).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..errors import ShapeMismatchError
from .blocks import Bottleneck, finish_residual_model, make_stage
from .mrla import MRLABottleneck, MRLAStage, reference_init
from .registry import register_model
from .resnet import make_stem
from .shapes import expect_image

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
PLANES = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)
FEATURES = ("C2", "C3", "C4", "C5")
MIN_SIDE = 32      # C5 (stride 32) is then 1x1
IMAGENET_INPUT = (3, 224, 224)


class ImageNetResNet(nn.Module):
    """``stem``, ``layer1..4``, ``pool``, ``flatten``, ``fc``; ``forward_features`` gives C2-C5."""

    def __init__(self, depths: tuple[int, ...], in_channels: int, num_classes: int,
                 block=Bottleneck, variant: str | None = None):
        super().__init__()
        self.stem = make_stem(in_channels, 64, small=False)
        ch = 64
        channels = []
        for i, (planes, depth, stride) in enumerate(zip(PLANES, depths, STRIDES), start=1):
            stage, ch = make_stage(block, ch, planes, depth, stride, shortcut="projection")
            if variant is not None:
                stage = MRLAStage(*stage)     # one fresh MRLA-B key/value context per stage
            self.add_module(f"layer{i}", stage)
            channels.append(ch)
        self.feature_channels = OrderedDict(zip(FEATURES, channels))
        self.mrla_variant = variant
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, num_classes)

    def forward_features(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The stage outputs C2 (stride 4) .. C5 (stride 32), in order."""
        out = OrderedDict()
        x = self.stem(x)
        for name, i in zip(FEATURES, (1, 2, 3, 4)):
            x = getattr(self, f"layer{i}")(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.forward_features(x)["C5"])))


def _build(name: str, depth: int, variant: str | None, input_shape, num_classes: int, drop_path: float,
           drop_path_schedule: str, zero_init_residual: bool, values: str = "sum") -> ImageNetResNet:
    c, h, w = expect_image(name, input_shape)
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ShapeMismatchError(f"{name} needs images of at least {MIN_SIDE}x{MIN_SIDE} (ImageNet models "
                                 f"downsample 32x; built for 224x224) but dataset gives ({c}, {h}, {w}): "
                                 "resize with --size 224 (or 64 for a quick run)")
    block = Bottleneck if variant is None else partial(MRLABottleneck, variant=variant, values=values)
    model = ImageNetResNet(DEPTHS[depth], c, num_classes, block, variant)
    finish_residual_model(model, drop_path, drop_path_schedule, zero_init_residual)
    if variant is not None:
        reference_init(model)   # Q/K Conv1d and MRLA-L's lambda as the reference code (mrla.py)
    return model


def _register_plain(depth: int) -> None:
    name = f"resnet{depth}"

    @register_model(name, preferred_size=IMAGENET_INPUT[1:])
    def factory(input_shape, num_classes, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False) -> ImageNetResNet:
        return _build(name, depth, None, input_shape, num_classes, drop_path, drop_path_schedule,
                      zero_init_residual)

    factory.__doc__ = f"ImageNet ResNet-{depth} (bottleneck, {'-'.join(map(str, DEPTHS[depth]))})."


def _register_mrla(depth: int, suffix: str, variant: str, what: str) -> None:
    name = f"resnet{depth}-{suffix}"

    @register_model(name, preferred_size=IMAGENET_INPUT[1:])
    def factory(input_shape, num_classes, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False, values: str = "sum") -> ImageNetResNet:
        return _build(name, depth, variant, input_shape, num_classes, drop_path, drop_path_schedule,
                      zero_init_residual, values)

    factory.__doc__ = f"ImageNet ResNet-{depth} with {what}."


for _depth in (50, 101):
    _register_plain(_depth)
    _register_mrla(_depth, "mrla-b", "b", "MRLA-B layer attention after every bottleneck")
    _register_mrla(_depth, "mrla-l", "l", "MRLA-L layer attention after every bottleneck")
    _register_mrla(_depth, "ela", "b", "MRLA-B layer attention, trained with ELA's skipping (layerwise.ela)")
