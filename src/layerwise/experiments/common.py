"""What every experiment runner shares: threads, seeds, data + model set-up, output folders."""

from __future__ import annotations

import argparse
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


@dataclass
class CommandReport:
    """What a command hands back to ``cli.py``: the text to print and the exit code."""

    text: str
    exit_code: int = 0


def add_common_arguments(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    """The flags every command takes (DESIGN.md, "Command line")."""
    if model:
        p.add_argument("--model", required=True, help="model registry name (see `layerwise list`)")
        p.add_argument("--checkpoint", type=Path, help="start from trained weights instead of training / random init")
    p.add_argument("--dataset", required=True,
                   help="dataset registry name, e.g. digits, basic-motions, mnist1d, aeon:NAME, cifar10:DIR")
    p.add_argument("--size", type=int,
                   help="resize image data to SIZE x SIZE (28 for MNIST-shaped models, 32 for CIFAR-shaped)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image channels (3 repeats a grey image)")
    p.add_argument("--out", type=Path, help="results directory (default runs/COMMAND-MODEL-DATASET)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    return RunSpec(model=args.model, dataset=args.dataset, size=args.size, channels=args.channels,
                   device=args.device, seed=args.seed, threads=args.threads, out=args.out,
                   checkpoint=getattr(args, "checkpoint", None))


def fmt_count(n: int | None) -> str:
    """1234567 -> '1.23M'."""
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def fmt_shape(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "-"


def text_table(rows: list[list], header: list[str], left: int = 2) -> str:
    """A plain-text table; the first ``left`` columns left-aligned, the rest right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


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
