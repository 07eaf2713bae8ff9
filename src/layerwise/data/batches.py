"""One way to read a user's DataLoader: ``(x, y)`` pairs out of whatever its batches look like.

Every method's Python API (``layerwise.<method>.apply``) takes a ``torch.utils.data.DataLoader``,
map-style or iterable, and reads it through :func:`iter_batches`, one batch at a time, so that a
calibration never holds a whole split in memory. A batch may be

- a tensor: the inputs, with no targets;
- a tuple or list ``(x, y, ...)``: the first item is the input, the second the target, the rest
  are ignored;
- a dict (Hugging Face style): ``input_key`` names the input, ``target_key`` the target.

Anything else is refused with a :class:`~layerwise.errors.DataError` that says what was found and
which keys to pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..errors import DataError


@dataclass(frozen=True)
class BatchKeys:
    """Where the input and the target sit in a dict batch (``None``: not a dict loader)."""

    input_key: str | None = None
    target_key: str | None = None


def split_batch(batch, keys: BatchKeys = BatchKeys()) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, y)`` of one batch; ``y`` is ``None`` when the batch carries no target."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        if keys.input_key is None:
            raise DataError(f"the loader yields dict batches with keys {sorted(map(str, batch))}: "
                            "pass input_key= (and target_key=) to say which holds the input")
        missing = [k for k in (keys.input_key, keys.target_key) if k is not None and k not in batch]
        if missing:
            raise DataError(f"dict batch has no key {missing[0]!r} (keys: {sorted(map(str, batch))}): "
                            "fix input_key= / target_key=")
        x = batch[keys.input_key]
        y = batch[keys.target_key] if keys.target_key is not None else None
    elif isinstance(batch, (tuple, list)) and batch:
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
    else:
        raise DataError(f"cannot read a batch of type {type(batch).__name__}: yield a tensor, a tuple "
                        "(x, y) or a dict with input_key/target_key")
    if not isinstance(x, torch.Tensor):
        raise DataError(f"the batch input is a {type(x).__name__}, not a tensor: convert it in the "
                        "Dataset or the DataLoader's collate_fn")
    if y is not None and not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    return x, y


def iter_batches(loader: Iterable, keys: BatchKeys = BatchKeys(), *, max_batches: int | None = None,
                 need_targets: bool = False, device: str | torch.device | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Stream ``(x, y)`` from ``loader``, at most ``max_batches`` of them.

    ``need_targets=True`` refuses a batch without targets (a step that needs labels, such as a
    fine-tune or an accuracy). Raises :class:`DataError` when the loader yields nothing.
    """
    if isinstance(loader, Dataset) and not isinstance(loader, DataLoader) and not hasattr(loader, "__iter__"):
        raise DataError("expected a DataLoader (or any iterable of batches), got a Dataset: wrap it in "
                        "torch.utils.data.DataLoader(dataset, batch_size=...)")
    seen = 0
    for batch in loader:
        if max_batches is not None and seen >= max_batches:
            break
        x, y = split_batch(batch, keys)
        if need_targets and y is None:
            raise DataError("this step needs targets, but the loader's batches carry none: yield (x, y) "
                            "or pass target_key= for dict batches")
        if device is not None:
            x = x.to(device)
            y = y.to(device) if y is not None else None
        seen += 1
        yield x, y
    if seen == 0:
        raise DataError("the loader yielded no batch: check the dataset is not empty and drop_last "
                        "does not drop its only batch")


def first_input(loader: Iterable, keys: BatchKeys = BatchKeys()) -> torch.Tensor:
    """One example input at batch 1 (the first sample of the first batch), for tracing and shapes."""
    x, _ = next(iter_batches(loader, keys, max_batches=1))
    return x[:1]


class _Pairs(IterableDataset):
    """The ``(x, y)`` batches of a user's loader, streamed through :func:`iter_batches`."""

    def __init__(self, loader: Iterable, keys: BatchKeys, need_targets: bool) -> None:
        self.loader, self.keys, self.need_targets = loader, keys, need_targets

    def __iter__(self):
        yield from iter_batches(self.loader, self.keys, need_targets=self.need_targets)


def pair_loader(loader: Iterable, keys: BatchKeys = BatchKeys(), *, need_targets: bool = True) -> DataLoader:
    """A DataLoader yielding ``(x, y)`` batches of ``loader`` as they come (no re-batching, no
    worker), so code written for ``(x, y)`` loaders (``layerwise.train.evaluate``, the AdaLayerNet
    probes) reads a dict or iterable loader without holding the split in memory."""
    return DataLoader(_Pairs(loader, keys, need_targets), batch_size=None)


@torch.no_grad()
def loader_accuracy(model: nn.Module, loader: Iterable, keys: BatchKeys = BatchKeys(),
                    *, max_batches: int | None = None) -> tuple[float | None, int]:
    """(top-1 accuracy or ``None`` without targets, samples) of ``model`` over ``loader``, streamed.

    Runs in eval mode and restores the model's train/eval mode afterwards."""
    from ..train.evaluation import logits_of

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    correct, n, labelled = 0, 0, True
    try:
        for x, y in iter_batches(loader, keys, max_batches=max_batches, device=device):
            logits = logits_of(model(x))
            n += int(x.shape[0])
            if y is None:
                labelled = False
                continue
            correct += int((logits.argmax(dim=1) == y.reshape(-1)).sum())
    finally:
        model.train(was_training)
    return (correct / n if labelled and n else None), n


def check_reiterable(**loaders) -> None:
    """DataError when a loader is a one-shot iterator (a generator): the methods read their loaders
    several times (calibration, then validation passes), and a second pass would find it empty."""
    for name, loader in loaders.items():
        if isinstance(loader, Iterator):
            raise DataError(f"{name} is a one-shot iterator ({type(loader).__name__}), read empty after one pass: "
                            "pass a torch.utils.data.DataLoader (or any re-iterable of batches)")
