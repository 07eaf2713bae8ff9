"""What every experiment runner shares: threads, seeds, data + model set-up, output folders.

Output folders. ``prepared_out_dir`` is what a run does with its folder before any expensive work:
check that it can be written (exists or can be created, is a folder, not under a file), take its
run lock for the whole run (:mod:`layerwise.runlock`), remove leftover temporary files of
interrupted atomic writes, and refuse to start a fresh run over a folder that holds another run's
checkpoint unless the user said ``--resume`` or ``--overwrite``. The command line does this for
every command before it calls the runner; ``out_dir`` (what runners call) checks the folder too.

Limits. Flags that size an allocation (``--size``, batch sizes) are capped in ``check_limits``, so a
typo such as ``--size 3000`` is one line, not a 38.8 GB allocation and an out-of-memory kill.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from ..data import DatasetSplits, load_dataset
from ..errors import LayerwiseError, ShapeMismatchError
from ..models import build_model, preferred_input_shape
from ..runlock import RunLock
from ..storage import check_checkpoint_file, ensure_writable_dir, remove_if_empty, remove_stale_tmp
from ..train import load_weights

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """The options every command shares (--model, --dataset, --device, --seed, --threads)."""

    model: str
    dataset: str
    size: int | None = None
    channels: int | None = None
    device: str = "cpu"
    seed: int = 0
    threads: int | None = None
    out: Path | None = None
    checkpoint: Path | None = None
    train_limit: int | None = None     # a stratified subset of the training split (shorter runs)
    val_limit: int | None = None       # a stratified subset of the validation split (cheaper calibration)
    test_limit: int | None = None      # a stratified subset of the test split (smoke runs; wider intervals)
    augment: bool = False              # random crop (and flip where the data allows) when training
    split: str | None = None           # a dataset's named evaluation protocol (e.g. widar's cross-room)


@dataclass
class CommandReport:
    """What a command hands back to ``cli.py``: the text to print and the exit code."""

    text: str
    exit_code: int = 0


def add_common_arguments(p: argparse.ArgumentParser, *, model: bool = True, training: bool = False) -> None:
    """The flags every command takes; ``training`` adds the flags of
    commands that train a model."""
    if model:
        p.add_argument("--model", required=True,
                       help="model registry name (see `layerwise list`), or your own: path/to/file.py:factory "
                            "or package.module:factory")
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
    p.add_argument("--train-limit", type=int, metavar="N",
                   help="train on a fixed, stratified subset of N training samples (shorter runs; "
                        "the test split is never cut)")
    p.add_argument("--val-limit", type=int, metavar="N",
                   help="calibrate and select on a fixed, stratified subset of N validation samples")
    p.add_argument("--test-limit", type=int, metavar="N",
                   help="evaluate on a fixed, stratified subset of N test samples (smoke runs: every test "
                        "accuracy is then on N samples, and its interval says so)")
    p.add_argument("--split", metavar="PROTOCOL",
                   help="a dataset's named evaluation protocol instead of its default split, e.g. "
                        "cross-room for widar:DIR (train on room 1's train users, test on room 2's "
                        "held-out users); default: the dataset's fixed split")
    if training:
        p.add_argument("--augment", action="store_true",
                       help="train with random crops (4-pixel zero padding) and, where the dataset allows "
                            "it (fashion-mnist, not digits), horizontal flips")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    return RunSpec(model=args.model, dataset=args.dataset, size=args.size, channels=args.channels,
                   device=args.device, seed=args.seed, threads=args.threads, out=args.out,
                   checkpoint=getattr(args, "checkpoint", None),
                   train_limit=getattr(args, "train_limit", None), val_limit=getattr(args, "val_limit", None),
                   test_limit=getattr(args, "test_limit", None),
                   augment=bool(getattr(args, "augment", False)), split=getattr(args, "split", None))


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


def _labels_of(ds) -> np.ndarray:
    if hasattr(ds, "labels") and hasattr(ds, "indices"):          # ImageDataset
        return np.asarray(ds.labels[ds.indices])
    if hasattr(ds, "tensors"):                                     # TensorDataset
        return np.asarray(ds.tensors[1])
    return np.asarray([int(ds[i][1]) for i in range(len(ds))])


def limit_split(data: DatasetSplits, split: str, n: int | None) -> DatasetSplits:
    """``data`` with ``split`` cut to a fixed, stratified subset of ``n`` samples (the same subset
    for every run, seed and command); unchanged when ``n`` is None or not smaller."""
    from torch.utils.data import Subset

    from ..data.splits import fixed_split

    if n is None:
        return data
    ds = getattr(data, split)
    if n < 1:
        raise LayerwiseError(f"--{split}-limit {n}: keep at least 1 sample")
    if n >= len(ds):
        return data
    _, keep, stratified = fixed_split(_labels_of(ds), int(n))
    info = dict(data.info)
    info[f"{split}_limit"] = (f"{len(keep)} of {len(ds)} {split} samples, fixed "
                              f"{'stratified ' if stratified else ''}subset")
    log.info("%s: using %s", data.name, info[f"{split}_limit"])
    return dataclasses.replace(data, **{split: Subset(ds, keep.tolist())}, info=info)


def load_data_for_model(spec: RunSpec) -> DatasetSplits:
    """Load ``spec.dataset``; an image set too small for the model is resized to the model's input.

    Only when the user gave no ``--size``: e.g. ``tiny-cnn`` (UnIT Table 1, 28x28 MNIST network)
    on ``digits`` (8x8) runs on digits resized to 28x28, and the results record that shape.
    ``--train-limit`` / ``--val-limit`` / ``--test-limit`` cut those splits to fixed stratified
    subsets (the test split only when asked: smoke runs).
    """
    data = _load_for_model(spec)
    data = limit_split(data, "train", spec.train_limit)
    data = limit_split(data, "val", spec.val_limit)
    return limit_split(data, "test", spec.test_limit)


def _load_for_model(spec: RunSpec) -> DatasetSplits:
    data = load_dataset(spec.dataset, size=spec.size, channels=spec.channels, seed=spec.seed, split=spec.split)
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
    return load_dataset(spec.dataset, size=tuple(preferred[1:]), channels=channels, seed=spec.seed,
                        split=spec.split)


def build_for_data(spec: RunSpec, data: DatasetSplits, **model_kwargs) -> nn.Module:
    seed_everything(spec.seed)
    model = build_model(spec.model, data.input_shape, data.num_classes, **model_kwargs)
    if spec.checkpoint is not None:
        load_weights(model, spec.checkpoint)
    return model.to(spec.device)


# Flags that size an allocation: (attribute, flag, most, unit). Every one must also be >= 1.
LIMITS = (
    ("size", "--size", 1024, "pixels per side"),
    ("batch_size", "--batch-size", 16384, "samples per batch"),
    ("base_batch_size", "--base-batch-size", 16384, "samples per batch"),
    ("batched", "--batched", 16384, "samples per batch"),
    ("threads", "--threads", 1024, "threads"),
)


def check_limits(args: argparse.Namespace) -> None:
    """Refuse allocation-driving flags outside their limits (see ``LIMITS``), before any work."""
    for attr, flag, most, unit in LIMITS:
        value = getattr(args, attr, None)
        if value is None or isinstance(value, bool) or not isinstance(value, int):
            continue
        if value < 1:
            raise LayerwiseError(f"{flag} must be at least 1, not {value}")
        if value > most:
            raise LayerwiseError(f"{flag} {value} exceeds the limit of {most} {unit}: use a value up to {most}")


def default_out(command: str, model: str, dataset: str) -> Path:
    """``runs/COMMAND-MODEL-DATASET``: where a command writes without ``--out``."""
    from ..models.user import slug
    return Path("runs") / f"{command}-{slug(model)}-{dataset.split(':')[0]}"


# Checkpoints a fresh run of a command would overwrite, as globs under its folder. A command listed
# here takes ``--overwrite`` (cli.py adds the flag where the command does not).
FRESH_RUN_CHECKPOINTS = {
    "train": ("checkpoint.pt",),
    "ela": ("seed*/*/checkpoint.pt",),
}


def existing_checkpoints(folder: Path, command: str) -> list[Path]:
    return sorted(p for pattern in FRESH_RUN_CHECKPOINTS.get(command, ()) for p in folder.glob(pattern) if p.is_file())


def check_fresh_run(folder: Path, command: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """A fresh run never overwrites another run's checkpoint unless asked to (``--overwrite``)."""
    if resume and overwrite:
        raise LayerwiseError("--resume and --overwrite contradict each other: --resume continues the saved run, "
                             "--overwrite replaces it; pass one of them")
    if resume and command == "train":
        if not (folder / "checkpoint.pt").is_file():
            raise LayerwiseError(f"cannot resume: {folder / 'checkpoint.pt'} does not exist; --resume needs a "
                                 "previous run with the same --out (drop --resume to start afresh)")
        check_checkpoint_file(folder / "checkpoint.pt")  # e.g. 0 bytes: one line now, not after loading data
    if resume or overwrite:
        return
    found = existing_checkpoints(folder, command)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        how = "--resume to continue that run, " if command == "train" else ""
        raise LayerwiseError(f"--out {folder} already holds another run's checkpoint ({found[0]}{more}): pass {how}"
                             f"--overwrite to replace it, or choose another --out")


@contextlib.contextmanager
def prepared_out_dir(folder: str | Path, command: str, *, resume: bool = False, overwrite: bool = False,
                     what: str = "--out") -> Iterator[Path]:
    """Hold ``folder`` ready for one run of ``command`` (see the module docstring); yields it.

    Re-entrant in one process (the command line prepares the folder, the runner may again). A
    folder this call created and the run left empty is removed again at the end.
    """
    folder = Path(folder)
    created = ensure_writable_dir(folder, what)
    try:
        with RunLock(folder, what=what) as lock:
            if lock.fresh:
                remove_stale_tmp(folder)
            check_fresh_run(folder, command, resume=resume, overwrite=overwrite)
            yield folder
    finally:
        remove_if_empty(created)


def out_dir(spec: RunSpec, command: str) -> Path:
    """The run's results folder (``--out``, else ``runs/COMMAND-MODEL-DATASET``), checked writable.

    The command line has already locked and prepared it (``prepared_out_dir``); called from the
    API, this checks and creates the folder (a one-line LayerwiseError if it cannot be written).
    """
    path = spec.out if spec.out is not None else default_out(command, spec.model, spec.dataset)
    ensure_writable_dir(path)
    return path


def train_cached(model: nn.Module, data: DatasetSplits, config, base_dir: Path, progress=None):
    """Train ``model`` once into ``base_dir/checkpoint.pt`` (resuming a partial run there); a
    checkpoint that already reached ``config.epochs`` is loaded instead. Returns the training result,
    or ``None`` when the cached weights were loaded."""
    from ..train import load_checkpoint, train

    ck = Path(base_dir) / "checkpoint.pt"
    if ck.is_file() and int(load_checkpoint(ck)["epoch"]) >= config.epochs:
        load_weights(model, ck)
        return None
    return train(model, data, config, out_dir=base_dir, resume=ck.is_file(), progress=progress)


def example_input(data: DatasetSplits, batch: int = 1, device: str = "cpu") -> torch.Tensor:
    """The first ``batch`` validation samples (real data, not noise)."""
    n = len(data.val)
    xs = [data.val[i % n][0] for i in range(batch)]
    return torch.stack(xs).to(device)


def run_step(parser: argparse.ArgumentParser, argv: list[str], what: str, progress=None) -> CommandReport:
    """Run one command line through ``parser`` (the parser a user types into), its ``--out``
    checked and held like a command's own (a rerun replaces it); LayerwiseError naming ``what``
    when it stops with a non-zero exit code. For commands composed of other commands (demo, bench)."""
    args = parser.parse_args(argv)
    with prepared_out_dir(args.out, args.command, overwrite=True):
        report = args.func(args, progress)
    if report.exit_code != 0:
        raise LayerwiseError(f"{what} stopped with exit code {report.exit_code}: {report.text[-300:]}")
    return report


def percentile_list(text: str) -> tuple[float, ...]:
    """``--sweep 10,20,40`` -> (10.0, 20.0, 40.0); a one-line error for anything else."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise LayerwiseError(f"--sweep {text!r}: give comma-separated percentiles, e.g. 10,20,40") from exc


# ---------------------------------------------------------------------------------------------------
# one flag name per concept: the old names, kept as deprecated aliases for one release

class DeprecatedAlias(argparse.Action):
    """An old flag name kept for one release: it sets the new flag's destination(s), converted to
    the new flag's unit where that changed, and logs a warning that names the new flag."""

    def __init__(self, option_strings, dest, *, new: str, convert=None, also: tuple[str, ...] = (),
                 note: str = "", **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.convert, self.also, self.note = new, convert, tuple(also), note

    def __call__(self, parser, namespace, values, option_string=None):
        log.warning("%s is deprecated and will be removed in the next release: use %s%s", option_string,
                    self.new, f" ({self.note})" if self.note else "")
        value = self.convert(values) if self.convert is not None else values
        for dest in (self.dest, *self.also):
            setattr(namespace, dest, value)


def deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, *, convert=None, also: tuple[str, ...] = (),
                     note: str = "") -> None:
    """Add ``old`` to ``p`` as a deprecated alias of its flag ``new`` (same destination, hidden from
    ``--help``; the new flag's help names it). ``convert`` maps an old value to the new unit;
    ``also`` lists further destinations the old flag set."""
    target = p._option_string_actions[new]  # noqa: SLF001 - argparse keeps no public map
    p.add_argument(old, dest=target.dest, type=target.type, nargs=target.nargs, metavar=target.metavar,
                   action=DeprecatedAlias, new=new, convert=convert, also=also, note=note,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
