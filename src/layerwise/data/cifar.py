"""``cifar10:DIR`` and ``cifar100:DIR``: CIFAR from the official files the user already has.

Accepted layouts (DIR may be the extracted folder itself or its parent):
- binary: ``cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin`` (records of 1 label byte
  + 3,072 pixel bytes, R, G, B planes of 32x32), ``batches.meta.txt`` for class names;
  ``cifar-100-binary/train.bin, test.bin`` (coarse label byte, fine label byte, 3,072 pixel
  bytes; the FINE labels are used), ``fine_label_names.txt``;
- python: ``cifar-10-batches-py/data_batch_{1..5}, test_batch, batches.meta`` and
  ``cifar-100-python/train, test, meta``, pickles read ONLY through
  :class:`~layerwise.data.safe_pickle.RestrictedUnpickler` (numpy arrays and plain containers).

Split: test = the official test set; val = a fixed stratified 5,000 of the 50,000 training images
(10 %, the same fraction for a smaller copy), train = the other 45,000.
Preprocessing: pixels / 255, optional resize/channel conversion, per-channel train mean/std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .files import find_root
from .images import build_image_splits
from .registry import register_dataset
from .safe_pickle import safe_pickle_load
from .splits import SPLIT_SEED, fixed_split, fraction_count

PIXELS = 3 * 32 * 32
VAL_FRACTION = 5000 / 50000

LAYOUTS = {
    10: {"bin": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
         "py": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"])},
    100: {"bin": ("cifar-100-binary", ["train.bin"], ["test.bin"]),
          "py": ("cifar-100-python", ["train"], ["test"])},
}


def _read_binary(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    n_label = 1 if n_classes == 10 else 2
    record = n_label + PIXELS
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0 or data.size % record:
        raise DataError(f"file {path} is truncated or not a CIFAR-{n_classes} binary batch: "
                        f"{data.size} bytes is not a whole number of {record}-byte records; "
                        "replace it with the official file")
    data = data.reshape(-1, record)
    labels = data[:, n_label - 1].astype(np.int64)  # cifar100: byte 0 coarse, byte 1 fine
    return data[:, n_label:].reshape(-1, 3, 32, 32), labels


def _read_pickle(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _str_keys(safe_pickle_load(path))
    key = "labels" if n_classes == 10 else "fine_labels"
    if "data" not in batch or key not in batch:
        raise DataError(f"file {path} is not a CIFAR-{n_classes} python batch: it lacks 'data' or "
                        f"'{key}'; replace it with the official file")
    try:
        raw = np.asarray(batch["data"])
        lab = np.asarray(batch[key])
        if raw.dtype.kind not in "ui" or lab.dtype.kind not in "ui" or lab.ndim != 1:
            raise TypeError("non-integer data or labels")
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError("pixel values outside 0..255")
        data = raw.astype(np.uint8)
        labels = lab.astype(np.int64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"file {path} holds malformed 'data' or '{key}' ({exc}); expected uint8 "
                        f"pixels (N, {PIXELS}) and N integer labels: replace it with the official "
                        "file") from None
    if data.ndim != 2 or data.shape[1] != PIXELS or len(data) != len(labels):
        raise DataError(f"file {path} holds data of shape {data.shape} with {len(labels)} labels; "
                        f"expected (N, {PIXELS}) and N labels: replace it with the official file")
    return data.reshape(-1, 3, 32, 32), labels


def _str_keys(obj) -> dict:
    if not isinstance(obj, dict):
        raise DataError(f"a CIFAR python batch must be a dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _class_names(root: Path, fmt: str, n_classes: int) -> list[str] | None:
    if fmt == "bin":
        f = root / ("batches.meta.txt" if n_classes == 10 else "fine_label_names.txt")
        if not f.is_file():
            return None
        names = [ln.strip() for ln in f.read_text(errors="replace").splitlines() if ln.strip()]
    else:
        f = root / ("batches.meta" if n_classes == 10 else "meta")
        if not f.is_file():
            return None
        meta = _str_keys(safe_pickle_load(f))
        raw = meta.get("label_names" if n_classes == 10 else "fine_label_names", [])
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in raw]
    return names if len(names) == n_classes else None


def _find(directory: str, n_classes: int) -> tuple[Path, str]:
    layouts = LAYOUTS[n_classes]
    base = Path(directory).expanduser()
    for fmt in ("bin", "py"):
        sub, train, test = layouts[fmt]
        for root in (base, base / sub):
            if any((root / f).is_file() for f in train + test):
                return find_root(root, [], train + test, f"cifar{n_classes}"), fmt
    if not base.is_dir():
        raise DataError(f"cifar{n_classes}: folder {base} does not exist: pass the folder holding "
                        f"{layouts['bin'][0]}/ or {layouts['py'][0]}/ (the official archives, extracted)")
    b, p = layouts["bin"], layouts["py"]
    raise DataError(f"cifar{n_classes}: no CIFAR-{n_classes} files in {base}: expected "
                    f"{b[0]}/{{{', '.join(b[1] + b[2])}}} or {p[0]}/{{{', '.join(p[1] + p[2])}}} "
                    "(DIR may be that folder or its parent)")


def load_cifar(name: str, directory: str, n_classes: int, *, size=None, channels=None):
    root, fmt = _find(directory, n_classes)
    _, train_files, test_files = LAYOUTS[n_classes][fmt]
    read = _read_binary if fmt == "bin" else _read_pickle
    parts = [read(root / f, n_classes) for f in train_files + test_files]
    for f, (_, lab) in zip(train_files + test_files, parts):
        if lab.size and (lab.min() < 0 or lab.max() >= n_classes):
            raise DataError(f"file {root / f} has label {int(lab.max())} outside 0..{n_classes - 1}: "
                            f"it is not a CIFAR-{n_classes} file")
    n_train = sum(len(p[1]) for p in parts[:len(train_files)])
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = np.concatenate([p[1] for p in parts])
    keep, val, strat = fixed_split(labels[:n_train], fraction_count(VAL_FRACTION, n_train))
    indices = {"train": keep, "val": val, "test": np.arange(n_train, len(labels))}
    info = {"source": f"official CIFAR-{n_classes} {'binary' if fmt == 'bin' else 'python'} files in {root}",
            "split": f"test = official test; val = fixed stratified {len(val)} of {n_train} train "
                     f"(10%, 5000 of the official 50000; seed {SPLIT_SEED})",
            "stratified": strat}
    return build_image_splits(name, images, labels, indices, num_classes=n_classes,
                              classes=_class_names(root, fmt, n_classes), info=info,
                              size=size, channels=channels)


@register_dataset("cifar10", kind="image", arg="DIR", summary="CIFAR-10 from the official files")
def _cifar10(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    return load_cifar(name, arg, 10, size=size, channels=channels)


@register_dataset("cifar100", kind="image", arg="DIR", summary="CIFAR-100 (fine labels) from the official files")
def _cifar100(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    return load_cifar(name, arg, 100, size=size, channels=channels)
