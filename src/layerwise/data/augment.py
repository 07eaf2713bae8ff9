"""Standard training augmentation for image batches: random crop with zero padding, and a
horizontal flip where it keeps the class.

``augment_batch(x, pad=4, hflip=True, generator=g)`` pads every image of ``x (B, C, H, W)`` by
``pad`` zeros on each side (zero is the training mean after normalisation), cuts a random
``H x W`` window from it and, with ``hflip``, mirrors it left-right with probability 1/2. The
draws come from ``generator`` only, so a batch's augmentation is a function of the seed the
training loop gives it (``(seed, epoch, batch, rank)``): a resumed run augments exactly as an
uninterrupted one. Flips are for datasets whose ``info["hflip_ok"]`` is True (garments, natural
images), never for digits, whose mirror image is another character.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import LayerwiseError


def augment_batch(x: Tensor, *, pad: int = 4, hflip: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
    """A randomly cropped (and maybe mirrored) copy of the image batch ``x``."""
    if x.dim() != 4:
        raise LayerwiseError(f"augmentation needs image batches (B, C, H, W), got shape {tuple(x.shape)}; "
                             "drop --augment for this dataset")
    if pad < 0:
        raise LayerwiseError(f"augmentation padding {pad} must be >= 0")
    b, _, h, w = x.shape
    out = x
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    if hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def batch_generator(seed: int, epoch: int, batch: int, rank: int = 0) -> torch.Generator:
    """The generator of one training batch's augmentation (a pure function of its position)."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + batch) * 131 + rank)
