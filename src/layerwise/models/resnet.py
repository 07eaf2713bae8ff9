"""ResNet-18/34 (He et al. 2016, Table 1): BasicBlocks [2,2,2,2] / [3,4,6,3], widths 64..512.

The stem adapts to the input: images with H and W <= 64 (CIFAR, Tiny ImageNet) get a 3x3 stride-1
conv and no max-pool, as is usual for small images; larger ones the ImageNet 7x7/2 conv + 3x3/2
max-pool. Projection (1x1 conv + BN) shortcuts where a block changes shape; adaptive average
pooling, so any size from 8x8 up runs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .blocks import BasicBlock, conv3x3, finish_residual_model, make_stage
from .registry import ModelConfigError, register_model
from .shapes import expect_image

STEMS = ("auto", "small", "imagenet")


def make_stem(in_channels: int, width: int, small: bool) -> nn.Sequential:
    if small:
        return nn.Sequential(OrderedDict(
            conv=conv3x3(in_channels, width), bn=nn.BatchNorm2d(width), act=nn.ReLU()))
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
        bn=nn.BatchNorm2d(width), act=nn.ReLU(), pool=nn.MaxPool2d(3, stride=2, padding=1)))


class ResNet(nn.Module):
    """``stem``, ``layer1..4`` of BasicBlocks, global average pool, ``fc``."""

    def __init__(self, depths: tuple[int, ...], in_channels: int, num_classes: int, small_stem: bool):
        super().__init__()
        self.stem = make_stem(in_channels, 64, small_stem)
        ch = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
            stage, ch = make_stage(BasicBlock, ch, planes, depth, 1 if i == 1 else 2,
                                   shortcut="projection")
            self.add_module(f"layer{i}", stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.flatten(self.pool(x)))


def _resnet(name: str, depths: tuple[int, ...], input_shape, num_classes, stem: str, drop_path: float,
            drop_path_schedule: str, zero_init_residual: bool) -> ResNet:
    c, h, w = expect_image(name, input_shape)
    if stem not in STEMS:
        raise ModelConfigError(f"stem must be one of {', '.join(STEMS)}, not {stem!r}")
    small = (h <= 64 and w <= 64) if stem == "auto" else stem == "small"
    model = ResNet(depths, c, num_classes, small)
    return finish_residual_model(model, drop_path, drop_path_schedule, zero_init_residual)


@register_model("resnet18")
def resnet18(input_shape, num_classes, stem: str = "auto", drop_path: float = 0.0,
             drop_path_schedule: str = "linear", zero_init_residual: bool = False) -> ResNet:
    """ResNet-18; ``stem="auto"`` picks the small-image stem for H, W <= 64."""
    return _resnet("resnet18", (2, 2, 2, 2), input_shape, num_classes, stem, drop_path,
                   drop_path_schedule, zero_init_residual)


@register_model("resnet34")
def resnet34(input_shape, num_classes, stem: str = "auto", drop_path: float = 0.0,
             drop_path_schedule: str = "linear", zero_init_residual: bool = False) -> ResNet:
    """ResNet-34 (LWAC's Tiny ImageNet model); ``stem="auto"`` as in resnet18."""
    return _resnet("resnet34", (3, 4, 6, 3), input_shape, num_classes, stem, drop_path,
                   drop_path_schedule, zero_init_residual)
