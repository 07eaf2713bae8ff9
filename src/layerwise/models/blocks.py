"""Residual blocks shared by the zoo, all with ONE structure so methods can scale or bypass them.

Every residual-type block is a :class:`ResidualBlock` with

* ``residual``: the residual branch, an ``nn.Sequential`` ending in its last BatchNorm;
* ``shortcut``: ``nn.Identity``, a projection or padding module, or ``None`` (no skip, e.g. a
  MobileNetV2 inverted residual that changes shape);
* ``drop_path``: stochastic depth on the residual branch (identity unless set);
* ``act``: the activation after the addition (``nn.Identity`` for inverted residuals);

and computes ``out = act(shortcut(x) + drop_path(residual(x)))`` (``act(residual(x))`` when
``shortcut`` is None). ``block_kind`` names the block type, ``changes_shape`` is True when the
stride is not 1 or the channels change (then bypassing the block still needs its shortcut).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .droppath import DropPath, apply_drop_path


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ResidualBlock(nn.Module):
    """Base of every residual-type block: ``act(shortcut(x) + drop_path(residual(x)))``."""

    block_kind: str = "residual"

    def __init__(self, residual: nn.Module, shortcut: nn.Module | None, act: nn.Module | None,
                 in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.residual = residual
        self.register_module("shortcut", shortcut)
        self.drop_path = DropPath(0.0)
        self.act = act if act is not None else nn.Identity()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.changes_shape = stride != 1 or in_channels != out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop_path(self.residual(x))
        if self.shortcut is not None:
            out = self.shortcut(x) + out
        return self.act(out)

    def last_bn(self) -> nn.Module | None:
        """The last normalisation layer of the residual branch (zero-init target)."""
        norms = [m for m in self.residual.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return norms[-1] if norms else None


class Projection(nn.Sequential):
    """1x1 conv + BN shortcut for a block that changes stride or channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__(OrderedDict(conv=conv1x1(in_ch, out_ch, stride), bn=nn.BatchNorm2d(out_ch)))


class PadShortcut(nn.Module):
    """He et al. option A: parameter-free shortcut, stride subsample + zero channel padding."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_ch - in_ch
        self.pad_front, self.pad_back = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


def _shortcut(kind: str, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return PadShortcut(in_ch, out_ch, stride) if kind == "pad" else Projection(in_ch, out_ch, stride)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (He et al. 2016); ``shortcut="pad"`` is option A, ``"projection"`` option B."""

    block_kind = "basic"
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "projection",
                 act_layer: type[nn.Module] = nn.ReLU):
        residual = nn.Sequential(OrderedDict(
            conv1=conv3x3(in_ch, planes, stride), bn1=nn.BatchNorm2d(planes), act1=act_layer(),
            conv2=conv3x3(planes, planes), bn2=nn.BatchNorm2d(planes),
        ))
        super().__init__(residual, _shortcut(shortcut, in_ch, planes, stride), act_layer(),
                         in_ch, planes, stride)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by ``expansion`` (4)."""

    block_kind = "bottleneck"
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, shortcut: str = "projection",
                 act_layer: type[nn.Module] = nn.ReLU):
        out_ch = planes * self.expansion
        residual = nn.Sequential(OrderedDict(
            conv1=conv1x1(in_ch, planes), bn1=nn.BatchNorm2d(planes), act1=act_layer(),
            conv2=conv3x3(planes, planes, stride), bn2=nn.BatchNorm2d(planes), act2=act_layer(),
            conv3=conv1x1(planes, out_ch), bn3=nn.BatchNorm2d(out_ch),
        ))
        super().__init__(residual, _shortcut(shortcut, in_ch, out_ch, stride), act_layer(),
                         in_ch, out_ch, stride)


def make_stage(block: type[ResidualBlock], in_ch: int, planes: int, depth: int, stride: int,
               **block_kwargs) -> tuple[nn.Sequential, int]:
    """``depth`` blocks, the first with ``stride``; returns the stage and its output channels."""
    blocks = []
    for i in range(depth):
        blocks.append(block(in_ch, planes, stride if i == 0 else 1, **block_kwargs))
        in_ch = blocks[-1].out_channels
    return nn.Sequential(*blocks), in_ch


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, i.e. N(0, sqrt(2 / (k*k*out)))), BN gamma 1 beta 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def finish_residual_model(model: nn.Module, drop_path: float = 0.0, drop_path_schedule: str = "linear",
                          zero_init_residual: bool = False) -> nn.Module:
    """Initialise weights, set stochastic depth and (optionally) zero each branch's last BN gamma.

    With ``zero_init_residual`` every residual branch of a block WITH a shortcut outputs exactly
    zero at init, so the block starts as ``act(shortcut(x))`` (Goyal et al. 2017). Blocks without
    a shortcut are left alone: zeroing them would zero the whole signal.
    """
    init_weights(model)
    apply_drop_path(model, drop_path, drop_path_schedule)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock) and m.shortcut is not None and m.last_bn() is not None:
                nn.init.zeros_(m.last_bn().weight)
    return model
