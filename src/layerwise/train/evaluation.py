"""Accuracy and loss of a model on a dataset, and raw predictions for confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..data.base import make_loader
from ..errors import DataError, LayerwiseError, ShapeMismatchError

__all__ = ["Evaluation", "Predictions", "evaluate", "predict"]


@dataclass
class Evaluation:
    accuracy: float  # top-1, in [0, 1]
    loss: float  # mean cross-entropy (no label smoothing, no regulariser)
    n: int  # samples evaluated


@dataclass
class Predictions:
    logits: torch.Tensor  # (n, num_classes), float32, on the CPU
    targets: torch.Tensor  # (n,), int64

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)


def logits_of(outputs) -> torch.Tensor:
    """Models may return (logits, aux...): the first element holds the logits."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def check_labels(y: torch.Tensor, num_classes: int, where: str) -> None:
    """DataError if a class-index label of ``where`` is outside ``0..num_classes-1``."""
    if y.numel() and not y.is_floating_point() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{where} has label {bad}, outside 0..{num_classes - 1} of its {num_classes} classes: "
                        "the dataset's labels and num_classes disagree; fix its loader or its files")


def check_width(logits: torch.Tensor, y: torch.Tensor) -> None:
    """ShapeMismatchError if ``logits`` are not ``(batch, C)`` or a label ``y`` is not below C."""
    if logits.dim() != 2 or logits.shape[0] != y.shape[0]:
        raise ShapeMismatchError(f"the model outputs shape {tuple(logits.shape)} for {y.shape[0]} samples: "
                                 "evaluation needs (batch, num_classes) logits")
    if y.numel() and not y.is_floating_point() and int(y.max()) >= logits.shape[1]:
        raise ShapeMismatchError(f"the model outputs {logits.shape[1]} classes but the data has label "
                                 f"{int(y.max())}: evaluate a model built with the dataset's num_classes "
                                 "(the same --dataset it was trained on)")


def _as_loader(data, batch_size: int):
    """A map-style Dataset is batched here; a DataLoader or any iterable of ``(x, y)`` batches
    (e.g. :func:`layerwise.data.batches.iter_batches` of a user's loader) is read as it is."""
    if isinstance(data, DataLoader) or not isinstance(data, Dataset):
        return data
    return make_loader(data, batch_size=batch_size, shuffle=False)


def _batches(model: nn.Module, data: Dataset | DataLoader, device: str | torch.device, batch_size: int):
    """Yield (logits, targets) in eval mode without gradients; the model's mode is restored after."""
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            for x, y in _as_loader(data, batch_size):
                logits = logits_of(model(x.to(device)))
                check_width(logits, y)
                yield logits.float(), y.to(device)
    finally:
        model.train(was_training)


def evaluation_sums(model: nn.Module, data: Dataset | DataLoader, *, device: str | torch.device = "cpu",
                    batch_size: int = 256) -> tuple[float, float, int]:
    """(sum of cross-entropy, number correct, n): the additive parts, for all-reducing across ranks."""
    loss_sum, correct, n = 0.0, 0.0, 0
    for logits, y in _batches(model, data, device, batch_size):
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        n += y.numel()
    return loss_sum, correct, n


def evaluate(model: nn.Module, data: Dataset | DataLoader, *, device: str | torch.device = "cpu",
             batch_size: int = 256) -> Evaluation:
    """Top-1 accuracy and mean cross-entropy of ``model`` on a dataset or loader.

    The model is moved to ``device`` (in place) and put back in its previous train/eval mode.
    """
    loss_sum, correct, n = evaluation_sums(model, data, device=device, batch_size=batch_size)
    if n == 0:
        raise LayerwiseError("cannot evaluate on an empty dataset: check the split sizes of the dataset")
    return Evaluation(accuracy=correct / n, loss=loss_sum / n, n=n)


def predict(model: nn.Module, data: Dataset | DataLoader, *, device: str | torch.device = "cpu",
            batch_size: int = 256) -> Predictions:
    """All logits and targets of a dataset, in dataset order, on the CPU."""
    logits, targets = [], []
    for out, y in _batches(model, data, device, batch_size):
        logits.append(out.cpu())
        targets.append(y.cpu())
    if not logits:
        raise LayerwiseError("cannot predict on an empty dataset: check the split sizes of the dataset")
    return Predictions(torch.cat(logits), torch.cat(targets))
