"""Image resizing, channel conversion and per-channel normalisation.

- Resize: bilinear ``F.interpolate`` (``align_corners=False``), with antialiasing whenever a side
  shrinks, so that e.g. 64x64 -> 32x32 does not alias.
- Channels 1 -> 3: the grey plane is repeated. 3 -> 1: luminance, the ITU-R BT.601 weighted mean
  0.299 R + 0.587 G + 0.114 B.
- Normalisation: per-channel mean and standard deviation of the TRAIN split, measured after
  resizing and channel conversion, applied to every split.

Both conversions are linear per pixel or per plane, so their order does not change the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DataError

LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601


def parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``28`` -> ``(28, 28)``; ``(h, w)`` kept; checks both sides are positive integers."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise DataError(f"size {size!r} is not valid: pass one positive int (e.g. 32) or a pair (height, width)")
    return pair  # type: ignore[return-value]


def check_channels(native: int, channels: int | None) -> None:
    if channels is None or channels == native:
        return
    if (native, channels) not in ((1, 3), (3, 1)):
        raise DataError(f"cannot convert {native}-channel images to {channels} channels: "
                        "pass channels=1 or channels=3 (1->3 repeats the plane, 3->1 takes luminance)")


def convert_images(x: torch.Tensor, size: tuple[int, int] | None, channels: int | None) -> torch.Tensor:
    """Resize and convert a float batch ``(N, C, H, W)``; returns a float32 batch."""
    x = x.float()
    if channels is not None and channels != x.shape[1]:
        if x.shape[1] == 3 and channels == 1:
            w = torch.tensor(LUMINANCE, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * w).sum(dim=1, keepdim=True)
    if size is not None and tuple(x.shape[-2:]) != size:
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    if channels is not None and channels != x.shape[1]:
        if x.shape[1] == 1 and channels == 3:
            x = x.repeat(1, 3, 1, 1)
    return x


@dataclass
class ImageTransform:
    """raw (uint8 or small-int) batch -> normalised float32 batch of the requested shape."""

    scale: float  # raw values are divided by this first (255 for uint8, 16 for sklearn digits)
    size: tuple[int, int] | None = None
    channels: int | None = None
    mean: torch.Tensor | None = None  # (C,) after conversion; set by fit()
    std: torch.Tensor | None = None

    def unnormalised(self, raw: torch.Tensor) -> torch.Tensor:
        return convert_images(raw.float() / self.scale, self.size, self.channels)

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        x = self.unnormalised(raw)
        if self.mean is not None:
            x = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return x

    def fit(self, raw: torch.Tensor, chunk: int = 2048) -> None:
        """Per-channel mean and std over ``raw`` (the train split), in chunks to bound memory."""
        total = total_sq = None
        count = 0
        for start in range(0, len(raw), chunk):
            x = self.unnormalised(raw[start:start + chunk]).double()
            s = x.sum(dim=(0, 2, 3))
            sq = (x * x).sum(dim=(0, 2, 3))
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        self.mean = mean.float()
        self.std = var.sqrt().float().clamp_min(1e-6)
