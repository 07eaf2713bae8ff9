"""The shallower-network baseline: the base's own family with fewer blocks per stage.

LWAC's rival at equal latency is not only a static cut of the same weights (``static-drop-K``,
:mod:`layerwise.lwac.static`) but the network a practitioner would train instead: the same
architecture with fewer blocks, trained from scratch with the base's recipe. For the zoo's CIFAR
ResNets that is the depth series of He et al. ("Deep Residual Learning for Image Recognition",
arXiv:1512.03385, Sec. 4.2): basic blocks, depth 6n+2 (resnet8-basic, resnet14-basic, ...), and
the bottleneck form, depth 9n+2 (resnet11, resnet20, resnet29, ...), n blocks in each of the
three stages.

A network's batch-1 latency does not depend on its weights, so the depths worth training are
chosen BEFORE any training: every shallower candidate is timed untrained (interleaved with the
base), and :func:`pick_depths` keeps those nearest to LWAC's operating points.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from ..models.blocks import BasicBlock, Bottleneck, ResidualBlock, finish_residual_model
from ..models.cifar_resnet import CifarResNet
from ..models.shapes import expect_image
from .config import LWACError

_FAMILIES = {  # suffix -> (block, depth per block count: depth = a * n + 2, shortcut)
    "": (Bottleneck, 9, "projection"),
    "-basic": (BasicBlock, 6, "pad"),
}
_NAME = re.compile(r"^resnet(\d+)(-basic)?$")


@dataclass(frozen=True)
class ShallowFamily:
    """A model name's depth family: ``n`` blocks per stage now, depth ``a * n + 2``."""

    base: str
    n: int
    block: type[ResidualBlock]
    per_block: int  # a: layers per block (3 for a bottleneck, 2 for a basic block)
    shortcut: str
    suffix: str

    def name(self, n: int) -> str:
        return f"resnet{self.per_block * n + 2}{self.suffix}"

    def candidates(self) -> list[int]:
        """Blocks per stage of every shallower member: 1 .. n - 1."""
        return list(range(1, self.n))

    def build(self, n: int, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
        """The member with ``n`` blocks per stage, initialised as the zoo initialises the base
        (``kwargs``: ``drop_path``, ``drop_path_schedule``, ``zero_init_residual``)."""
        if not 1 <= n:
            raise LWACError(f"a shallower {self.base} needs >= 1 block per stage, not {n}")
        c, _, _ = expect_image(self.name(n), input_shape)
        model = CifarResNet(self.block, n, c, int(num_classes), self.shortcut)
        return finish_residual_model(model, **kwargs)


def shallow_family(model_name: str, model: nn.Module | None = None) -> ShallowFamily | None:
    """The depth family of a zoo CIFAR ResNet name (``resnet20``, ``resnet56-basic``, ...), or None
    for a model with no shallower sibling here (user models, multi-branch, MobileNet, the ImageNet
    ResNets). ``model``: the built base, checked to be that CIFAR ResNet (``resnet101`` is not)."""
    m = _NAME.match(model_name)
    if not m or (model is not None and not isinstance(model, CifarResNet)):
        return None
    depth, suffix = int(m.group(1)), m.group(2) or ""
    block, a, shortcut = _FAMILIES[suffix]
    if (depth - 2) % a or depth <= 2:
        return None
    if model is not None and not (len(model.layer1) == (depth - 2) // a and isinstance(model.layer1[0], block)):
        return None
    return ShallowFamily(model_name, (depth - 2) // a, block, a, shortcut, suffix)


def pick_depths(candidate_ratios: dict[int, float], targets: list[float], limit: int = 3) -> list[int]:
    """Blocks-per-stage counts to train: for each LWAC operating point (latency ratio to dense in
    ``targets``), the candidate whose measured latency ratio is nearest; deduplicated, at most
    ``limit``, shallowest first. ``candidate_ratios``: n -> measured latency / dense latency."""
    if not candidate_ratios:
        return []
    chosen: list[int] = []
    for t in sorted(targets):
        n = min(candidate_ratios, key=lambda k: (abs(candidate_ratios[k] - t), -k))
        if n not in chosen:
            chosen.append(n)
    if not chosen:  # no operating point: the deepest shallower member
        chosen = [max(candidate_ratios)]
    chosen = sorted(chosen, key=lambda k: min(abs(candidate_ratios[k] - t) for t in targets) if targets else 0)[:limit]
    return sorted(chosen)


def nearest_by_latency(latency_ms: float, rivals: dict[str, float]) -> str:
    """The name in ``rivals`` (name -> measured median ms) whose latency is nearest ``latency_ms``."""
    if not rivals:
        raise LWACError("no LWAC operating point to compare the shallower network with")
    return min(rivals, key=lambda k: (abs(rivals[k] - latency_ms), k))
