"""``ela.apply(model, train_loader, stages=...)``: MRLA layer attention + ELA on any ResNet-like model.

1. :func:`~layerwise.ela.attach.attach_layer_attention` puts an MRLA-B (or MRLA-L) attention layer
   after every block of the given stages (a copy of the model).
2. :func:`~layerwise.ela.train_ela` trains it with ELA's skipping (Li & Huang, "Enhancing Layer
   Attention Efficiency through Pruning Redundant Retrievals", arXiv:2503.06473): in each KL window
   the attention distributions are captured, the KL between adjacent layers (eq. 8) is averaged
   over the window and, at its end, Algorithm 1 (EBQM) removes the redundant attention layers.
   The loop is ``layerwise.train.train`` reading the user's loaders
   (:class:`~layerwise.train.loaders.LoaderSplits`).
3. The report holds what was decided: every removed layer with its KL and the window it was
   decided in, every window's decision, and the accuracy before (the model as given) and after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.batches import BatchKeys, check_reiterable, first_input, iter_batches
from ..errors import LayerwiseError
from ..train import TrainConfig
from ..train.evaluation import logits_of
from ..train.loaders import LoaderSplits
from .attach import attach_layer_attention
from .capture import find_attention_layers
from .config import ElaConfig
from .training import train_ela

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedLayer:
    """One attention layer ELA removed, and the measurement that removed it."""

    name: str  # the block's name in the returned model
    epoch: int  # 1-based epoch at whose end it was removed (gone from the next epoch on)
    window: tuple[int, int]  # the KL window the decision was made in (1-based epochs, inclusive)
    kl: float  # window-mean eq. (8) KL to the previous not-skipped layer of its stage
    kl_uniform: float | None  # the same KL / the KL of uniform attention at its position
    kl_norm: str  # which of the two the decision used


@dataclass(frozen=True)
class ELAReport:
    """What :func:`apply` trained and decided."""

    variant: str  # "b" (MRLA-B, the layer ELA prunes) or "l" (MRLA-L)
    attention_layers: tuple[str, ...]  # every attention layer attached, in forward order
    skipped: tuple[SkippedLayer, ...]  # the removed ones, in the order they were removed
    windows: tuple[tuple[int, int], ...]  # the KL windows used
    strategy: str
    epochs: int  # epochs trained
    interrupted: bool  # Ctrl-C: training stopped early (the model is the last completed state)
    val_split: str  # "val_loader", or "train_loader" when no val_loader was given
    val_accuracy_before: float  # the model as given (no attention), on the val split
    val_accuracy_after: float  # the returned model, on the val split
    events: tuple[dict, ...] = ()  # every window's decision: KL of every candidate, EBQM's quantile, ...
    history: tuple[dict, ...] = ()  # per epoch: train/val loss and accuracy, time, lr

    @property
    def skipped_names(self) -> list[str]:
        return [s.name for s in self.skipped]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attention_layers"] = list(self.attention_layers)
        d["skipped"] = [{**asdict(s), "window": list(s.window)} for s in self.skipped]
        d["windows"] = [list(w) for w in self.windows]
        d["events"] = [dict(e) for e in self.events]
        d["history"] = [dict(h) for h in self.history]
        return d


@torch.no_grad()
def _accuracy(model: nn.Module, loader, keys: BatchKeys, device) -> float:
    was = model.training
    model.eval()
    correct = n = 0
    try:
        for x, y in iter_batches(loader, keys, need_targets=True, device=device):
            correct += int((logits_of(model(x)).argmax(1) == y).sum())
            n += len(x)
    finally:
        model.train(was)
    return correct / max(n, 1)


def apply(model: nn.Module, train_loader: Iterable, *, stages, val_loader: Iterable | None = None,
          input_key: str | None = None, target_key: str | None = None, variant: str = "b", values: str = "sum",
          epochs: int = 10, train_config: TrainConfig | None = None, config: ElaConfig | None = None,
          num_classes: int | None = None, out_dir: str | Path | None = None, progress: Callable | None = None,
          device: str = "cpu", inplace: bool = False) -> tuple[nn.Module, ELAReport]:
    """Attach MRLA layer attention to ``model``'s ``stages`` and train it with ELA's skipping.

    ``stages``: a list of stages, each a list of the model's blocks in forward order (modules or
    names, e.g. ``[list(model.layer1), list(model.layer2)]``) or one container whose children are
    the blocks. ``train_loader`` / ``val_loader``: DataLoaders (map-style or iterable) of
    ``(x, y)`` batches, or dict batches read through ``input_key`` / ``target_key``; without
    ``val_loader`` the per-epoch validation and the report use the training loader (labelled so).
    ``train_config``: the optimiser, schedule, epochs and device (default: Adam, cosine, ``epochs``
    on ``device``; its ``augment``
    must stay False: augment in the loader). ``config``: ELA's windows, EBQM's settings
    (:class:`ElaConfig`; default: the paper's windows scaled to the epochs). ``num_classes``:
    default, the width of the model's output. Returns ``(model_with_attention, report)``; the
    model is a trained copy unless ``inplace``.
    """
    check_reiterable(train_loader=train_loader, val_loader=val_loader)
    keys = BatchKeys(input_key, target_key)
    cfg = train_config if train_config is not None else TrainConfig(epochs=epochs, device=device)
    device = cfg.device
    if cfg.augment:
        raise LayerwiseError("train_config.augment is for the built-in datasets; with your own loader, augment in "
                             "its Dataset or collate_fn and leave augment=False")
    x1 = first_input(train_loader, keys).to(device)
    model = model.to(device)
    with torch.no_grad():
        was = model.training
        model.eval()
        out = logits_of(model(x1))
        model.train(was)
    if num_classes is None:
        if out.dim() != 2:
            raise LayerwiseError(f"the model outputs shape {tuple(out.shape)}: ELA trains a classifier with "
                                 "(batch, num_classes) logits")
        num_classes = int(out.shape[1])
    val = val_loader if val_loader is not None else train_loader
    split = "val_loader" if val_loader is not None else "train_loader"
    before = _accuracy(model, val, keys, device)
    net = attach_layer_attention(model, stages, x1, variant=variant, values=values, inplace=inplace)
    layers = find_attention_layers(net)
    data = LoaderSplits(train_loader, val, num_classes, tuple(x1.shape[1:]), keys)
    result = train_ela(net, data, cfg, config, out_dir=out_dir, progress=progress)
    after = _accuracy(net, val, keys, device)
    skipped = []
    for event in result.schedule.events:
        for name in event.skipped:
            skipped.append(SkippedLayer(name, event.epoch, tuple(event.window), float(event.kl[name]),
                                        event.kl_uniform.get(name), event.kl_norm))
    report = ELAReport(
        variant=variant, attention_layers=tuple(layer.name for layer in layers), skipped=tuple(skipped),
        windows=tuple(tuple(w) for w in result.schedule.windows), strategy=result.schedule.config.strategy,
        epochs=result.train.epochs_completed, interrupted=result.train.interrupted, val_split=split,
        val_accuracy_before=before, val_accuracy_after=after,
        events=tuple(e.to_json() for e in result.schedule.events),
        history=tuple(asdict(h) for h in result.train.history))
    log.info("ELA: %d of %d attention layers removed (%s); %s accuracy %.4f (as given) -> %.4f", len(skipped),
             len(layers), ", ".join(s.name for s in skipped) or "none", split, before, after)
    return net, report
