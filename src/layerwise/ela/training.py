"""Train an MRLA network with ELA's skipping, on top of the one training loop (layerwise.train).

``train`` has no per-epoch callback; ELA needs one, so it hands ``train`` a progress factory that
``train`` calls once at the start of each epoch's batches: it attaches the distribution hooks in
window epochs and, once the epoch's last batch is done (before validation), computes the KL and
applies the skipping. The time this takes is outside the per-epoch training time ``train``
records (it is a few milliseconds per window); the hooks' cost during window epochs is inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..data.base import DatasetSplits
from ..errors import LayerwiseError
from ..train import TrainConfig, TrainResult, train
from .capture import AttentionCapture, find_attention_layers
from .config import ElaConfig
from .schedule import SkipSchedule


@dataclass
class ElaTrainResult:
    train: TrainResult
    schedule: SkipSchedule

    @property
    def skipped(self) -> list[str]:
        return self.schedule.skipped


class _EpochBatches:
    """Iterates one epoch's batches; calls ``on_end`` after the last one."""

    def __init__(self, inner, total: int, on_end: Callable[[], None]):
        self.inner, self.total, self.on_end = inner, total, on_end

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        yield from self.inner
        self.on_end()

    def set_postfix(self, **kw) -> None:
        if hasattr(self.inner, "set_postfix"):
            self.inner.set_postfix(**kw)


def train_ela(model: nn.Module, data: DatasetSplits, config: TrainConfig, ela: ElaConfig | None = None, *,
              out_dir: str | Path | None = None, progress: Callable | None = None,
              count_source: Callable[[int], int] | None = None) -> ElaTrainResult:
    """Train ``model`` (an MRLA network) while removing redundant attention layers (ELA).

    Every skipped layer's ``skip_attention`` is True when this returns (and saved with the weights:
    it is a buffer of the model); ``result.schedule.events`` records when and why each was
    skipped. ``count_source(window_index)`` gives the count-matched strategies (fixed, random,
    position) their count at each window's end. Single process only (the skip decision is local).
    """
    ela = ela or ElaConfig()
    layers = find_attention_layers(model)
    schedule = SkipSchedule(layers, ela, config.epochs, count_source=count_source)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise LayerwiseError("ELA's skipping runs in a single process: train without torchrun")
    capture = AttentionCapture(layers)
    epoch = [0]

    def per_epoch(iterable, total=None, desc=None, leave=None):
        epoch[0] += 1
        e = epoch[0]
        inner = progress(iterable, total=total, desc=desc, leave=leave) if progress is not None else iterable
        if schedule.captures(e):
            capture.reset()
            capture.__enter__()

        def end() -> None:
            if schedule.captures(e):
                capture.__exit__(None, None, None)
                schedule.end_epoch(e, capture.means())
        return _EpochBatches(inner, total, end)

    try:
        result = train(model, data, config, out_dir=out_dir, progress=per_epoch)
    finally:
        capture.__exit__(None, None, None)
    return ElaTrainResult(result, schedule)
