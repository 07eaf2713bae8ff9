"""What every experiment runner shares: threads, seeds, data + model set-up, output folders."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import DatasetSplits, load_dataset
from ..errors import LayerwiseError, ShapeMismatchError
from ..models import build_model, preferred_input_shape
from ..train import load_weights

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """The options every command shares (DESIGN.md: --model, --dataset, --device, --seed, --threads)."""

    model: str
    dataset: str
    size: int | None = None
    channels: int | None = None
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None
    out: Path | None = None
    checkpoint: Path | None = None


def set_threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise LayerwiseError(f"--threads must be at least 1, not {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LayerwiseError(f"--device {device} asked for, but no CUDA GPU is visible: use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise LayerwiseError(f"--device must be 'cpu' or 'cuda[:N]', not {device!r}")
    return device


def load_data_for_model(spec: RunSpec) -> DatasetSplits:
    """Load ``spec.dataset``; an image set too small for the model is resized to the model's input.

    Only when the user gave no ``--size``: e.g. ``tiny-cnn`` (UnIT Table 1, 28x28 MNIST network)
    on ``digits`` (8x8) runs on digits resized to 28x28, and the results record that shape.
    """
    data = load_dataset(spec.dataset, size=spec.size, channels=spec.channels, seed=spec.seed)
    if data.kind != "image" or spec.size is not None:
        return data
    try:
        build_model(spec.model, data.input_shape, data.num_classes)
        return data
    except ShapeMismatchError:
        preferred = preferred_input_shape(spec.model, data.input_shape)
        if preferred is None:
            raise
    channels = spec.channels if spec.channels is not None else preferred[0]
    log.warning("%s is %s; %s needs a larger input: resizing to %s (pass --size to choose)",
                spec.dataset, "x".join(map(str, data.input_shape)), spec.model,
                "x".join(map(str, (channels, *preferred[1:]))))
    return load_dataset(spec.dataset, size=tuple(preferred[1:]), channels=channels, seed=spec.seed)


def build_for_data(spec: RunSpec, data: DatasetSplits, **model_kwargs) -> nn.Module:
    seed_everything(spec.seed)
    model = build_model(spec.model, data.input_shape, data.num_classes, **model_kwargs)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint)
    return model.to(spec.device)


def out_dir(spec: RunSpec, command: str) -> Path:
    path = spec.out if spec.out is not None else Path("runs") / f"{command}-{spec.model}-{spec.dataset.split(':')[0]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def example_input(data: DatasetSplits, batch: int = 1, device: str = "cpu") -> torch.Tensor:
    """The first ``batch`` validation samples (real data, not noise)."""
    n = len(data.val)
    xs = [data.val[i % n][0] for i in range(batch)]
    return torch.stack(xs).to(device)
