"""``cnn1d``: the UnIT paper's tiny CNN (Table 1) transposed to 1-D sensor series (C, T).

Conv1d(16, C, 5) ReLU MaxPool2 Conv1d(32, 16, 5) ReLU MaxPool2 FC(32 * t, classes), no padding,
no BatchNorm, ``nn.ReLU`` modules (so FATReLU can replace them): the same shape of network as
``tiny-cnn`` so UnIT's Conv (eq. 3) and Linear (eq. 2) rules both act on every layer, which a
CNN-LSTM cannot offer (its LSTM has no UnIT kernel). Channel widths are ours (the paper has no
1-D model): twice tiny-cnn's, as a 6-channel series carries more input channels than a grey
image. Minimum length 16.

Registered on import; :mod:`layerwise.experiments.unit_run` imports this module.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import ShapeMismatchError
from .registry import list_models, register_model
from .shapes import expect_series


def _len_after(t: int) -> int:
    t = (t - 4) // 2 if t >= 5 else 0
    return (t - 4) // 2 if t >= 5 else 0


class CNN1d(nn.Module):
    """``features`` (conv1 relu1 pool1 conv2 relu2 pool2), ``flatten``, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, fc_in: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv1d(in_channels, width, 5), relu1=nn.ReLU(), pool1=nn.MaxPool1d(2),
            conv2=nn.Conv1d(width, 2 * width, 5), relu2=nn.ReLU(), pool2=nn.MaxPool1d(2)))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(fc_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.features(x)))


def _cnn1d(input_shape, num_classes, width: int = 16) -> CNN1d:
    """UnIT's tiny CNN for series: FC in-features from ``input_shape``."""
    c, t = expect_series("cnn1d", input_shape)
    tt = _len_after(t)
    if tt < 1:
        raise ShapeMismatchError(
            f"cnn1d needs series of at least 16 steps but dataset gives ({c}, {t}): "
            "use longer windows")
    return CNN1d(c, num_classes, 2 * width * tt, width)


if "cnn1d" not in list_models():  # importing twice (e.g. importlib test mode) registers once
    cnn1d = register_model("cnn1d")(_cnn1d)
