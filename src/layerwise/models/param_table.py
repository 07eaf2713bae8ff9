"""The papers' parameter counts beside the zoo's (``layerwise list --params``).

Each entry names a model, the input and class count the paper used, the published count and
where it is printed. ``parameter_rows`` builds every model on PyTorch's ``meta`` device (shapes
only, no memory, no init cost) and counts its parameters. Published counts are rounded (25.6M);
``within`` says whether ours is within the tolerance of that (1 % by default).

Sources: ELA = Li & Huang, "Enhancing Layer Attention Efficiency through Pruning Redundant
Retrievals" (Table 1 CIFAR-10, Table 2 ImageNet-1K); UnIT = Neth et al., the UnIT paper, Table 1
(layer shapes only: the count is the sum of those weights plus one bias per output unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .registry import build_model

IMAGENET = ((3, 224, 224), 1000)
CIFAR10 = ((3, 32, 32), 10)


@dataclass(frozen=True)
class PaperCount:
    model: str
    input_shape: tuple[int, ...]
    num_classes: int
    published: int | None      # None: the paper prints no count for this model
    source: str
    note: str = ""
    rounded: bool = True       # printed rounded (25.6M); False: exact, from the paper's layer shapes


PAPER_COUNTS = [
    PaperCount("resnet50", *IMAGENET, 25_600_000, "ELA Table 2"),
    PaperCount("resnet50-mrla-b", *IMAGENET, 25_700_000, "ELA Table 2"),
    PaperCount("resnet50-mrla-l", *IMAGENET, 25_700_000, "ELA Table 2"),
    PaperCount("resnet50-ela", *IMAGENET, 25_700_000, "ELA Table 2"),
    PaperCount("resnet101", *IMAGENET, 44_500_000, "ELA Table 2"),
    PaperCount("resnet101-mrla-b", *IMAGENET, None, "none published",
               "ELA Table 3 times it only; same parameters as resnet101-ela"),
    PaperCount("resnet101-mrla-l", *IMAGENET, 44_900_000, "ELA Table 2"),
    PaperCount("resnet101-ela", *IMAGENET, 44_900_000, "ELA Table 2"),
    PaperCount("resnet20", *CIFAR10, 220_000, "ELA Table 1"),
    PaperCount("resnet56", *CIFAR10, 590_000, "ELA Table 1"),
    PaperCount("resnet110", *CIFAR10, 1_150_000, "ELA Table 1"),
    PaperCount("resnet20-mrla-l", *CIFAR10, 230_000, "ELA Table 1"),
    PaperCount("resnet56-mrla-l", *CIFAR10, 620_000, "ELA Table 1"),
    PaperCount("resnet110-mrla-l", *CIFAR10, 1_210_000, "ELA Table 1"),
    PaperCount("resnet20-ela", *CIFAR10, 230_000, "ELA Table 1"),
    PaperCount("resnet56-ela", *CIFAR10, 620_000, "ELA Table 1"),
    PaperCount("resnet110-ela", *CIFAR10, 1_210_000, "ELA Table 1"),
    # UnIT Table 1 shapes: conv weights + biases, FC weights + biases
    PaperCount("tiny-cnn", (1, 28, 28), 10, 6 * 25 + 6 + 16 * 6 * 25 + 16 + 256 * 10 + 10, "UnIT Table 1 (MNIST)", rounded=False),
    PaperCount("tiny-cnn", (3, 32, 32), 10, 6 * 75 + 6 + 16 * 6 * 25 + 16 + 400 * 10 + 10, "UnIT Table 1 (CIFAR-10)", rounded=False),
    PaperCount("kws-cnn", (1, 126, 80), 12, 6 * 25 + 6 + 16 * 6 * 25 + 16 + 7616 * 12 + 12, "UnIT Table 1 (KWS)", rounded=False),
    PaperCount("widar-lenet", (22, 20, 20), 6, 32 * 22 * 36 + 32 + 64 * 32 * 9 + 64 + 96 * 64 * 9 + 96
               + 1536 * 128 + 128 + 128 * 6 + 6, "UnIT Table 1 (WiDaR)", rounded=False),
]


@dataclass(frozen=True)
class ParamRow:
    entry: PaperCount
    params: int

    @property
    def difference(self) -> float | None:
        """(ours - published) / published, or None when nothing is published."""
        p = self.entry.published
        return None if p is None else (self.params - p) / p

    def within(self, tolerance: float = 0.01) -> bool | None:
        d = self.difference
        return None if d is None else abs(d) <= tolerance


def count_parameters(name: str, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Parameters of ``name`` built for that input, on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = build_model(name, input_shape, num_classes)
    return sum(p.numel() for p in model.parameters())


def parameter_rows(pattern: str | None = None) -> list[ParamRow]:
    """One row per ``PAPER_COUNTS`` entry whose model matches the shell glob ``pattern``."""
    from fnmatch import fnmatchcase

    return [ParamRow(e, count_parameters(e.model, e.input_shape, e.num_classes))
            for e in PAPER_COUNTS if pattern is None or fnmatchcase(e.model, pattern)]
