"""MobileNetV2 for CIFAR-sized images (Sandler et al. 2018, Table 2, width 1.0).

CIFAR variant as commonly used for 32x32 inputs: the stem conv has stride 1 instead of 2 and the
first stride-2 stage (24 channels) has stride 1, so a 32x32 input reaches the last stage at 4x4
(total downsampling 8 instead of 32). Everything else is the paper's: expansion 6, ReLU6, last
1x1 conv to 1280, dropout 0.2 before the classifier. Inverted residuals with stride 1 and equal
channels have an identity shortcut; the others are the same block type with ``shortcut=None``
(``changes_shape`` True) and no drop path.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .blocks import ResidualBlock, conv1x1, conv3x3, finish_residual_model
from .registry import ModelConfigError, register_model
from .shapes import expect_image

# (expansion t, output channels c, repeats n, first stride s); strides 2 -> 1 for CIFAR marked.
CIFAR_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # 2 in the paper
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(ResidualBlock):
    """1x1 expand (skipped when t = 1), 3x3 depthwise (carries the stride), 1x1 linear project."""

    block_kind = "inverted_residual"

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int,
                 act_layer: type[nn.Module] = nn.ReLU6):
        hidden = in_ch * expand_ratio
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if expand_ratio != 1:
            layers.update(expand=conv1x1(in_ch, hidden), bn1=nn.BatchNorm2d(hidden), act1=act_layer())
        layers.update(dw=conv3x3(hidden, hidden, stride, groups=hidden), bn2=nn.BatchNorm2d(hidden),
                      act2=act_layer(), project=conv1x1(hidden, out_ch), bn3=nn.BatchNorm2d(out_ch))
        shortcut = nn.Identity() if stride == 1 and in_ch == out_ch else None
        super().__init__(nn.Sequential(layers), shortcut, None, in_ch, out_ch, stride)


class MobileNetV2(nn.Module):
    """``stem``, ``blocks`` (17 inverted residuals), ``head`` (1x1 conv to 1280), pool, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.2,
                 act_layer: type[nn.Module] = nn.ReLU6, last_channels: int = 1280):
        super().__init__()
        self.stem = nn.Sequential(OrderedDict(
            conv=conv3x3(in_channels, 32), bn=nn.BatchNorm2d(32), act=act_layer()))
        blocks, ch = [], 32
        for t, c, n, s in CIFAR_SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(ch, c, s if i == 0 else 1, t, act_layer))
                ch = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(OrderedDict(
            conv=conv1x1(ch, last_channels), bn=nn.BatchNorm2d(last_channels), act=act_layer()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(last_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(self.flatten(self.pool(x))))


_ACTS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


@register_model("mobilenetv2")
def mobilenetv2(input_shape, num_classes, dropout: float = 0.2, act: str = "relu6",
                drop_path: float = 0.0, drop_path_schedule: str = "linear",
                zero_init_residual: bool = False) -> MobileNetV2:
    """CIFAR MobileNetV2 (LWAC's CIFAR-10 model); ``act="relu"`` for plain ReLU everywhere."""
    c, _, _ = expect_image("mobilenetv2", input_shape)
    if act not in _ACTS:
        raise ModelConfigError(f"act must be one of {', '.join(_ACTS)}, not {act!r}")
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"dropout must be in [0, 1), not {dropout}")
    model = MobileNetV2(c, num_classes, dropout, _ACTS[act])
    finish_residual_model(model, drop_path, drop_path_schedule, zero_init_residual)
    nn.init.normal_(model.fc.weight, 0.0, 0.01)  # as torchvision's MobileNetV2
    nn.init.zeros_(model.fc.bias)
    return model
