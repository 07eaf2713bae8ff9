"""1-D models for sensor series (C, T): LWAC's CNN-LSTM (UCI HAR) and multi-branch CNN (MHEALTH).

The LWAC paper names these models but gives no layer table; the sizes here are ours: small
(about 0.1-0.2M parameters) as befits wearable-sized inputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..errors import ShapeMismatchError
from .blocks import init_weights
from .registry import ModelConfigError, register_model
from .shapes import expect_series

# MHEALTH log columns (Banos et al. 2014) in file order, the label column removed.
MHEALTH_CHANNEL_GROUPS: dict[str, list[int]] = {
    "chest_acc": [0, 1, 2], "ecg": [3, 4],
    "ankle_acc": [5, 6, 7], "ankle_gyro": [8, 9, 10], "ankle_mag": [11, 12, 13],
    "arm_acc": [14, 15, 16], "arm_gyro": [17, 18, 19], "arm_mag": [20, 21, 22],
}


def conv_block1d(in_ch: int, out_ch: int, kernel_size: int = 5) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
        bn=nn.BatchNorm1d(out_ch), act=nn.ReLU()))


# ---- CNN-LSTM -------------------------------------------------------------------------------

class LSTMStage(nn.Module):
    """The recurrent stage: (B, C, T) features -> LSTM over T -> (B, hidden) summary."""

    block_kind = "recurrent"
    changes_shape = True

    def __init__(self, in_features: int, hidden_size: int, num_layers: int, readout: str):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden_size, num_layers, batch_first=True)
        self.readout = readout
        self.out_features = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))
        return out[:, -1] if self.readout == "last" else out.mean(dim=1)


class CNNLSTM(nn.Module):
    """``features`` (3 conv blocks, max-pool 2 after the second), ``lstm``, ``head``."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, readout: str = "last"):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            block1=conv_block1d(in_channels, channels), block2=conv_block1d(channels, channels),
            pool=nn.MaxPool1d(2), block3=conv_block1d(channels, channels)))
        self.lstm = LSTMStage(channels, hidden_size, num_layers, readout)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.features(x)))


@register_model("cnn-lstm")
def cnn_lstm(input_shape, num_classes, channels: int = 64, hidden_size: int = 128, num_layers: int = 1,
             readout: str = "last") -> CNNLSTM:
    """Conv1d front end + LSTM; ``readout`` "last" (last time step) or "mean" (over time)."""
    c, _ = expect_series("cnn-lstm", input_shape, min_length=2)
    if readout not in ("last", "mean"):
        raise ModelConfigError(f"readout must be 'last' or 'mean', not {readout!r}")
    model = CNNLSTM(c, num_classes, channels, hidden_size, num_layers, readout)
    init_weights(model)
    return model


# ---- multi-branch CNN -----------------------------------------------------------------------

class Branch(nn.Module):
    """One sensor group's 1-D CNN: takes ``x[:, channels]``, returns (B, ``out_features``).

    Ends in global average pooling, so a bypassed branch is replaced by zeros of known shape.
    """

    block_kind = "branch"
    changes_shape = True

    def __init__(self, name: str, channels: list[int], width: int = 32, out_features: int = 64):
        super().__init__()
        self.name = name
        self.channels = list(channels)
        self.out_features = out_features
        self.register_buffer("index", torch.tensor(self.channels, dtype=torch.long), persistent=False)
        self.body = nn.Sequential(OrderedDict(
            block1=conv_block1d(len(channels), width), pool=nn.MaxPool1d(2),
            block2=conv_block1d(width, out_features), gap=nn.AdaptiveAvgPool1d(1),
            flatten=nn.Flatten()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}"


class MultiBranchCNN(nn.Module):
    """``branches`` (an ``nn.ModuleDict`` of :class:`Branch`), concatenated, fused by ``head``."""

    def __init__(self, channel_groups: dict[str, list[int]], num_classes: int, width: int = 32,
                 branch_out_features: int = 64, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        self.branch_out_features = branch_out_features
        self.branches = nn.ModuleDict({
            name: Branch(name, idx, width, branch_out_features) for name, idx in channel_groups.items()})
        self.head = nn.Sequential(OrderedDict(
            fc1=nn.Linear(branch_out_features * len(channel_groups), hidden), act=nn.ReLU(),
            dropout=nn.Dropout(dropout), fc2=nn.Linear(hidden, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [branch(x.index_select(1, branch.index)) for branch in self.branches.values()]
        return self.head(torch.cat(feats, dim=1))


def default_channel_groups(num_channels: int, size: int = 3) -> dict[str, list[int]]:
    """Consecutive groups of ``size`` channels (the last may be smaller): g0, g1, ..."""
    return {f"g{i // size}": list(range(i, min(i + size, num_channels)))
            for i in range(0, num_channels, size)}


def _check_groups(groups: dict[str, list[int]], num_channels: int) -> dict[str, list[int]]:
    if not groups:
        raise ModelConfigError("channel_groups is empty: give at least one group of channel indices")
    out = {}
    for name, idx in groups.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ModelConfigError(f"channel group name {name!r} must be a non-empty string without '.'")
        idx = [int(i) for i in idx]
        if not idx:
            raise ModelConfigError(f"channel group {name!r} is empty: give it at least one channel")
        bad = [i for i in idx if not 0 <= i < num_channels]
        if bad:
            raise ShapeMismatchError(
                f"channel group {name!r} uses channels {bad} but dataset has {num_channels} channels "
                f"(0..{num_channels - 1}): fix channel_groups")
        out[name] = idx
    return out


@register_model("multibranch-cnn")
def multibranch_cnn(input_shape, num_classes, channel_groups: dict[str, list[int]] | str | None = None,
                    width: int = 32, branch_out_features: int = 64, hidden: int = 128,
                    dropout: float = 0.2) -> MultiBranchCNN:
    """One 1-D CNN per sensor group (LWAC's MHEALTH model).

    ``channel_groups``: ``{name: [channel indices]}``; ``"mhealth"`` for the 8 MHEALTH sensors
    (23 channels in log-file order); ``None`` splits the channels into groups of 3.
    """
    c, _ = expect_series("multibranch-cnn", input_shape, min_length=2)
    if channel_groups is None:
        channel_groups = default_channel_groups(c)
    elif channel_groups == "mhealth":
        channel_groups = MHEALTH_CHANNEL_GROUPS
    elif isinstance(channel_groups, str):
        raise ModelConfigError(f"channel_groups must be a dict, 'mhealth' or None, not {channel_groups!r}")
    model = MultiBranchCNN(_check_groups(channel_groups, c), num_classes, width, branch_out_features,
                           hidden, dropout)
    init_weights(model)
    return model
