"""Synthetic domain shifts for UnIT's robustness table (the paper's Table 2 idea).

The paper trains on one WiDaR room and tests on the other. With no such data here, we shift the
TEST inputs of an embedded set while calibration stays on clean validation data:

* images: rotation by an angle drawn uniformly from ``[-degrees, degrees]`` per sample
  (``affine_grid`` + bilinear ``grid_sample``, border padding so the background stays background),
  and additive Gaussian noise of ``noise`` standard deviations (the data are standardised);
* series: per-sample, per-channel amplitude scaling by a factor drawn uniformly from
  ``[1 - scale, 1 + scale]`` (sensor gain / placement), and additive Gaussian noise.

Every shift is seeded: the same ``(spec, seed)`` gives the same shifted set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ..errors import LayerwiseError


@dataclass(frozen=True)
class ShiftSpec:
    """One shift: ``degrees`` (images), ``scale`` (series), ``noise`` (both, in std units)."""

    name: str
    degrees: float = 0.0
    scale: float = 0.0
    noise: float = 0.0


IMAGE_SHIFTS = (ShiftSpec("rotate 12deg", degrees=12.0), ShiftSpec("noise 0.3", noise=0.3),
                ShiftSpec("rotate 12deg + noise 0.3", degrees=12.0, noise=0.3))
SERIES_SHIFTS = (ShiftSpec("scale 30%", scale=0.3), ShiftSpec("noise 0.3", noise=0.3),
                 ShiftSpec("scale 30% + noise 0.3", scale=0.3, noise=0.3))


def default_shifts(kind: str) -> tuple[ShiftSpec, ...]:
    if kind == "image":
        return IMAGE_SHIFTS
    if kind == "series":
        return SERIES_SHIFTS
    raise LayerwiseError(f"no default shifts for data kind {kind!r}; use 'image' or 'series'")


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate a batch ``[B, C, H, W]`` by ``degrees[B]`` about the centre (border padding)."""
    a = degrees.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shift_tensor(x: torch.Tensor, spec: ShiftSpec, generator: torch.Generator) -> torch.Tensor:
    """Apply ``spec`` to a batch (images ``[B, C, H, W]`` or series ``[B, C, T]``)."""
    if spec.degrees < 0 or spec.scale < 0 or spec.noise < 0 or spec.scale >= 1:
        raise LayerwiseError(f"shift {spec.name!r}: degrees, noise >= 0 and 0 <= scale < 1 expected")
    b = x.shape[0]
    if spec.degrees:
        if x.dim() != 4:
            raise LayerwiseError(f"shift {spec.name!r} rotates images; the data are {x.dim() - 1}-d samples")
        ang = (torch.rand(b, generator=generator) * 2 - 1) * spec.degrees
        x = rotate(x, ang)
    if spec.scale:
        shape = (b, x.shape[1]) + (1,) * (x.dim() - 2)
        x = x * (1 + (torch.rand(shape, generator=generator) * 2 - 1) * spec.scale)
    if spec.noise:
        x = x + spec.noise * torch.randn(x.shape, generator=generator)
    return x


def shifted_dataset(dataset, spec: ShiftSpec, seed: int = 0) -> TensorDataset:
    """A shifted copy of ``dataset`` (an indexable of ``(x, y)``) as a TensorDataset."""
    if len(dataset) == 0:
        raise LayerwiseError("cannot shift an empty dataset")
    xs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    ys = torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])
    gen = torch.Generator().manual_seed(seed)
    return TensorDataset(shift_tensor(xs, spec, gen), ys)
