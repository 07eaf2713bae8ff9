"""In-memory image datasets that keep raw uint8 pixels and convert lazily.

A split holds the shared raw tensor ``(N, C, H, W)`` of the whole dataset plus the indices of its
samples, so train, val and test never copy pixels; conversion to a normalised float32 tensor
(resize, channels, per-channel train mean/std) happens per item or per batch
(``__getitems__``, which ``DataLoader`` uses to fetch a whole batch at once).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .base import DatasetSplits
from .transforms import ImageTransform, check_channels, parse_size


class ImageDataset(Dataset):
    """Samples ``raw[indices]`` as ``(transform(x), label)``."""

    def __init__(self, raw: torch.Tensor, labels: torch.Tensor, indices: np.ndarray,
                 transform: ImageTransform):
        self.raw = raw
        self.labels = labels
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        return self.transform(self.raw[j:j + 1])[0], self.labels[j]

    def __getitems__(self, items: list[int]):
        j = self.indices[torch.as_tensor(items, dtype=torch.long)]
        x = self.transform(self.raw[j])
        y = self.labels[j]
        return list(zip(x, y))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as ``(x, y)`` tensors (for small sets and tests)."""
        return self.transform(self.raw[self.indices]), self.labels[self.indices]


def build_image_splits(name: str, raw: torch.Tensor, labels: np.ndarray | torch.Tensor,
                       split_indices: dict[str, np.ndarray], *, num_classes: int,
                       classes: list[str] | None, info: dict, scale: float = 255.0,
                       size: int | tuple[int, int] | None = None, channels: int | None = None
                       ) -> DatasetSplits:
    """Wrap raw pixels ``(N, C, H, W)`` and ``split_indices`` (train/val/test) as DatasetSplits."""
    if raw.ndim != 4:
        raise DataError(f"{name}: images must be (N, C, H, W), got shape {tuple(raw.shape)}; "
                        "this is a bug in the loader")
    size_hw = parse_size(size)
    check_channels(raw.shape[1], channels)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    transform = ImageTransform(scale=scale, size=size_hw, channels=channels)
    transform.fit(raw[torch.as_tensor(split_indices["train"], dtype=torch.long)])
    out_c = channels or raw.shape[1]
    out_hw = size_hw or tuple(raw.shape[-2:])
    splits = {k: ImageDataset(raw, labels_t, split_indices[k], transform)
              for k in ("train", "val", "test")}
    info = dict(info)
    prep = [f"pixels / {scale:g}"]
    if channels is not None and channels != raw.shape[1]:
        prep.append("grey plane repeated to 3 channels" if channels == 3
                    else "RGB -> luminance (0.299 R + 0.587 G + 0.114 B)")
    if size_hw is not None and tuple(raw.shape[-2:]) != size_hw:
        prep.append(f"bilinear resize {raw.shape[-2]}x{raw.shape[-1]} -> {size_hw[0]}x{size_hw[1]}"
                    + (" (antialiased)" if size_hw[0] < raw.shape[-2] or size_hw[1] < raw.shape[-1] else ""))
    prep.append("per-channel mean/std of the train split")
    info.update({
        "native_shape": list(raw.shape[1:]),
        "preprocessing": "; ".join(prep),
        "normalisation": {"mean": [round(v, 6) for v in transform.mean.tolist()],
                          "std": [round(v, 6) for v in transform.std.tolist()]},
        "sizes": {k: len(v) for k, v in splits.items()},
    })
    return DatasetSplits(name=name, train=splits["train"], val=splits["val"], test=splits["test"],
                         input_shape=(out_c, *out_hw), num_classes=num_classes, kind="image",
                         classes=classes, info=info)
