"""CIFAR ResNets: bottleneck 9n+2 (ResNet-20/56/110 of MRLA/ELA) and He et al.'s basic 6n+2.

Bottleneck (as in the MRLA/DLA CIFAR reference code): 16-channel 3x3 stem, three stages of planes 16/32/64
with expansion 4 (block outputs 64/128/256), strides 1/2/2, a 1x1 conv + BN projection on each
stage's first block, global average pool (AvgPool(8) at 32x32; adaptive here so any size works),
FC 256 -> classes. At 10 classes and 3x32x32: 0.22M / 0.59M / 1.15M parameters.

Basic (He et al. 2016, Sec. 4.2): 16/32/64 channels, option-A parameter-free shortcut (stride-2
subsample + zero channel padding): 0.27M / 0.85M / 1.7M parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .blocks import BasicBlock, Bottleneck, ResidualBlock, conv3x3, finish_residual_model, make_stage
from .registry import register_model
from .shapes import expect_image


class CifarResNet(nn.Module):
    """Stem, three stages (``layer1..3``), global average pool, ``fc``."""

    def __init__(self, block: type[ResidualBlock], depth_per_stage: int, in_channels: int,
                 num_classes: int, shortcut: str, stem_width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=conv3x3(in_channels, stem_width), bn=nn.BatchNorm2d(stem_width), act=nn.ReLU()))
        ch = stem_width
        for i, (planes, stride) in enumerate(zip((16, 32, 64), (1, 2, 2)), start=1):
            stage, ch = make_stage(block, ch, planes, depth_per_stage, stride, shortcut=shortcut)
            self.add_module(f"layer{i}", stage)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def _cifar_resnet(name: str, block: type[ResidualBlock], n: int, input_shape: tuple[int, ...],
                  num_classes: int, drop_path: float, drop_path_schedule: str,
                  zero_init_residual: bool) -> CifarResNet:
    c, _, _ = expect_image(name, input_shape)
    shortcut = "pad" if block is BasicBlock else "projection"
    model = CifarResNet(block, n, c, num_classes, shortcut)
    return finish_residual_model(model, drop_path, drop_path_schedule, zero_init_residual)


def _register_bottleneck(name: str, n: int) -> None:
    @register_model(name)
    def factory(input_shape, num_classes, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False) -> CifarResNet:
        return _cifar_resnet(name, Bottleneck, n, input_shape, num_classes, drop_path,
                             drop_path_schedule, zero_init_residual)

    factory.__doc__ = f"CIFAR bottleneck ResNet, depth 9n+2 with n={n} (MRLA/ELA's {name})."


def _register_basic(name: str, n: int) -> None:
    @register_model(name)
    def factory(input_shape, num_classes, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False) -> CifarResNet:
        return _cifar_resnet(name, BasicBlock, n, input_shape, num_classes, drop_path,
                             drop_path_schedule, zero_init_residual)

    factory.__doc__ = f"He et al. CIFAR ResNet, basic blocks, option A, depth 6n+2 with n={n}."


for _name, _n in (("resnet20", 2), ("resnet56", 6), ("resnet110", 12)):
    _register_bottleneck(_name, _n)
for _name, _n in (("resnet20-basic", 3), ("resnet56-basic", 9), ("resnet110-basic", 18)):
    _register_basic(_name, _n)
