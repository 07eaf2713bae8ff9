"""A user's DataLoaders in place of a :class:`~layerwise.data.base.DatasetSplits`, for ``train``.

:func:`layerwise.train.train` reads a DatasetSplits by index (an exactly resumable order per
epoch). A user's loaders are read as they come instead, through
:func:`layerwise.data.batches.iter_batches` (tuple, tensor or dict batches, map-style or
iterable), one batch at a time: the loader's own batch size, shuffling and transforms apply.
Resuming in the middle of an epoch skips the batches already done, which is exact only when the
loader's order is the same on every pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..data.batches import BatchKeys, iter_batches


def _size(loader) -> int | None:
    dataset = getattr(loader, "dataset", None)
    for obj in (dataset, loader):
        try:
            return len(obj)  # samples of a map-style dataset (or, failing that, batches of the loader)
        except TypeError:
            continue
    return None


@dataclass
class LoaderSplits:
    """``train`` and ``val`` DataLoaders with what ``train`` needs to know about them."""

    train: Iterable
    val: Iterable
    num_classes: int
    input_shape: tuple[int, ...]
    keys: BatchKeys = field(default_factory=BatchKeys)
    name: str = "user-loader"
    kind: str = "loader"
    classes: list[str] | None = None
    info: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}[{'x'.join(str(s) for s in self.input_shape)}]"

    @property
    def train_size(self) -> int | None:
        """Samples in the training set when the loader can tell (a map-style dataset), else None."""
        return _size(self.train)

    def train_batches(self, skip: int = 0):
        """The training loader's ``(x, y)`` batches, the first ``skip`` left out (a resumed epoch)."""
        for i, batch in enumerate(iter_batches(self.train, self.keys, need_targets=True)):
            if i >= skip:
                yield batch

    def val_batches(self):
        return iter_batches(self.val, self.keys, need_targets=True)

    def train_batch_count(self) -> int | None:
        try:
            return len(self.train)
        except TypeError:
            return None
