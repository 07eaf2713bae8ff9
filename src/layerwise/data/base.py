"""What every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset


@dataclass
class DatasetSplits:
    """Train / validation / test splits of one dataset, ready for a model.

    ``val`` is never ``test``: every calibration in layerwise uses ``val``. Each split yields
    ``(x, y)`` with ``x`` a float32 tensor of ``input_shape`` and ``y`` an int64 class index.
    """

    name: str  # as the user asked for it, e.g. "digits" or "cifar10:/data/cifar"
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, ...]  # one sample, without batch: (C, H, W) or (C, T)
    num_classes: int
    kind: Literal["image", "series"]
    classes: list[str] | None = None
    info: dict = field(default_factory=dict)  # source, split rule, preprocessing: goes into results

    @property
    def label(self) -> str:
        """Name plus shape, e.g. ``digits[3x32x32]``: what results files record."""
        return f"{self.name}[{'x'.join(str(s) for s in self.input_shape)}]"


def make_loader(dataset: Dataset, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A single-process loader; shuffled order depends only on ``seed`` (reproducible)."""
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen,
                      drop_last=drop_last, num_workers=0)
