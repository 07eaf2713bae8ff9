"""The UnIT paper's tiny CNNs (Table 1), sized from the input shape.

``tiny-cnn``: Conv(6, C, 5x5) ReLU MaxPool2 Conv(16, 6, 5x5) ReLU MaxPool2 FC(16*h*w, classes),
no padding. (1, 28, 28) MNIST gives FC(256, 10); (3, 32, 32) CIFAR-10 FC(400, 10); KWS's FC(7616,
12) is 16 x 28 x 17, e.g. a (1, 124, 80) MFCC image. Minimum input 16x16.

``widar-lenet``: Conv(32, C, 6x6, stride 2) ReLU Conv(64, 32, 3x3) ReLU Conv(96, 64, 3x3) ReLU
FC(96*h*w, 128) ReLU FC(128, classes). Table 1 lists no pooling for WiDaR, so the first conv is
strided: on the (22, 20, 20) BVP input 20 -> 8 -> 6 -> 4 and 96 * 4 * 4 = 1536, the paper's
FC(1536, 128). (Stride 1 with a 2x2 max-pool after the second conv, 20 -> 15 -> 13 -> 6 -> 4, would
also give 1536; we take the reading that adds no layer Table 1 does not list.) Minimum 14x14.

Activations are ``nn.ReLU`` modules (not F.relu) so FATReLU can replace them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import ShapeMismatchError
from .registry import register_model
from .shapes import expect_image


def _conv_out(size: int, kernel: int, stride: int = 1) -> int:
    return (size - kernel) // stride + 1 if size >= kernel else 0


class TinyCNN(nn.Module):
    """``features`` (conv1 relu1 pool1 conv2 relu2 pool2), ``flatten``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, fc_in: int):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, 6, 5), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, 5), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2)))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(fc_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


def tiny_cnn_feature_size(h: int, w: int) -> tuple[int, int]:
    """Spatial size after the two conv5 + pool2 stages (0 when the input is too small)."""
    def one(s: int) -> int:
        return _conv_out(_conv_out(s, 5) // 2, 5) // 2
    return one(h), one(w)


@register_model("tiny-cnn", preferred_size=(28, 28))
def tiny_cnn(input_shape, num_classes) -> TinyCNN:
    """UnIT's MNIST / CIFAR-10 / KWS network (Table 1), FC in-features from ``input_shape``."""
    c, h, w = expect_image("tiny-cnn", input_shape)
    fh, fw = tiny_cnn_feature_size(h, w)
    if fh < 1 or fw < 1:
        raise ShapeMismatchError(
            f"tiny-cnn needs images of at least 16x16 (UnIT Table 1: 28x28 MNIST, 32x32 CIFAR-10) "
            f"but dataset gives ({c}, {h}, {w}): resize with size=28 (--size 28)")
    return TinyCNN(c, num_classes, 16 * fh * fw)


class WidarLeNet(nn.Module):
    """``features`` (three convs with ReLUs), ``flatten``, ``classifier`` (fc1 relu fc2)."""

    def __init__(self, in_channels: int, num_classes: int, fc_in: int, hidden: int = 128):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, 32, 6, stride=2), relu1=nn.ReLU(),
            conv2=nn.Conv2d(32, 64, 3), relu2=nn.ReLU(),
            conv3=nn.Conv2d(64, 96, 3), relu3=nn.ReLU()))
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict(
            fc1=nn.Linear(fc_in, hidden), relu4=nn.ReLU(), fc2=nn.Linear(hidden, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register_model("widar-lenet", preferred_size=(20, 20))
def widar_lenet(input_shape, num_classes) -> WidarLeNet:
    """UnIT's WiDaR network (Table 1): FC(1536, 128) on the (22, 20, 20) BVP input."""
    c, h, w = expect_image("widar-lenet", input_shape)

    def one(s: int) -> int:
        return _conv_out(_conv_out(_conv_out(s, 6, 2), 3), 3)
    fh, fw = one(h), one(w)
    if fh < 1 or fw < 1:
        raise ShapeMismatchError(
            f"widar-lenet needs images of at least 14x14 (WiDaR BVP is 20x20) but dataset gives "
            f"({c}, {h}, {w}): resize with size=20 (--size 20)")
    return WidarLeNet(c, num_classes, 96 * fh * fw)
