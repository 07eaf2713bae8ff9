"""``mnist:DIR``: MNIST (or Fashion-MNIST, same format) from the official IDX files.

DIR (or ``DIR/raw``, torchvision's layout) holds ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
optionally gzipped (``.gz``). Each IDX header is parsed and checked: two zero bytes, the type
code (0x08 = unsigned byte is required), the number of dimensions, the big-endian uint32 sizes,
and that the payload holds exactly that many values.

Split: test = the official t10k set; val = a fixed stratified 5,000 of the 60,000 training images
(1/12, the same fraction for a smaller copy). Preprocessing: pixels / 255, optional
resize/channel conversion, per-channel train mean/std. Native shape (1, 28, 28).
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import build_image_splits
from .registry import register_dataset
from .splits import SPLIT_SEED, fixed_split, fraction_count

FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
         "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
VAL_FRACTION = 5000 / 60000


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read one IDX file (plain or .gz) and check its header; returns the array."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"file {path} cannot be read ({type(exc).__name__}: {exc}): "
                        "it is truncated or not gzip: replace it with the official file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"file {path} is not an IDX file (bad magic {raw[:4].hex() or 'empty'}; expected "
                        f"00 00 <type> <ndim>): replace it with the official file")
    dtype, dims = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    if dtype != np.uint8 or dims != ndim:
        raise DataError(f"file {path} holds {dims}-d {dtype} data; expected {ndim}-d unsigned bytes "
                        "(IDX type 0x08): is it the right file?")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"file {path} is truncated inside its header: replace it with the official file")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=dims, offset=4))
    expected = math.prod(shape) * dtype.itemsize      # Python ints: no int64 wrap-around
    if len(raw) - header != expected:
        raise DataError(f"file {path} is truncated or padded: header says shape {shape} ({expected} "
                        f"bytes) but {len(raw) - header} bytes follow; replace it with the official file")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _locate(directory: str, label: str = "mnist") -> dict[str, Path]:
    base = Path(directory).expanduser()
    expected = ", ".join(f"{f}[.gz]" for f in FILES.values())
    if not base.is_dir():
        raise DataError(f"{label}: folder {base} does not exist: pass the folder holding {expected}")
    for root in (base, base / "raw"):
        found = {}
        for key, f in FILES.items():
            for cand in (root / f, root / f"{f}.gz"):
                if cand.is_file():
                    found[key] = cand
                    break
        if len(found) == len(FILES):
            return found
        if found:
            missing = [f"{FILES[k]}[.gz]" for k in FILES if k not in found]
            raise DataError(f"{label}: folder {root} is incomplete: missing {', '.join(missing)}; "
                            f"it needs {expected}")
    raise DataError(f"{label}: no IDX files in {base}: expected {expected} (in it or in {base / 'raw'})")


def load_idx_set(name: str, paths: dict[str, Path], *, label: str, classes: list[str],
                 size=None, channels=None, info: dict | None = None):
    """DatasetSplits of one MNIST-format set from its four located IDX files (module docstring)."""
    arrays = {k: read_idx(p, 3 if k.endswith("x") else 1) for k, p in paths.items()}
    for split in ("train", "test"):
        nx, ny = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if nx != ny:
            raise DataError(f"{label}: {paths[f'{split}_x'].name} has {nx} images but "
                            f"{paths[f'{split}_y'].name} has {ny} labels: the files do not belong together")
    tr, te = arrays["train_x"].shape[1:], arrays["test_x"].shape[1:]
    if tr != te:
        raise DataError(f"{label}: training images are {tr[0]}x{tr[1]} but test images {te[0]}x{te[1]}: "
                        "the files do not belong together")
    labels = np.concatenate([arrays["train_y"], arrays["test_y"]]).astype(np.int64)
    if labels.max(initial=0) > 9:
        raise DataError(f"{label}: labels go up to {labels.max()}, expected 0..9: is it an MNIST-format set?")
    images = torch.from_numpy(np.concatenate([arrays["train_x"], arrays["test_x"]])).unsqueeze(1)
    n_train = len(arrays["train_y"])
    keep, val, strat = fixed_split(labels[:n_train], fraction_count(VAL_FRACTION, n_train))
    indices = {"train": keep, "val": val, "test": np.arange(n_train, len(labels))}
    root = paths["train_x"].parent
    meta = {"source": f"IDX files in {root}",
            "split": f"test = official t10k; val = fixed stratified {len(val)} of {n_train} train "
                     f"(1/12, 5000 of the official 60000; seed {SPLIT_SEED})",
            "stratified": strat, **(info or {})}
    return build_image_splits(name, images, labels, indices, num_classes=10, classes=classes,
                              info=meta, size=size, channels=channels)


@register_dataset("mnist", kind="image", arg="DIR", summary="MNIST / Fashion-MNIST from IDX files")
def load_mnist(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    return load_idx_set(name, _locate(arg), label="mnist", classes=[str(i) for i in range(10)],
                        size=size, channels=channels, info={"hflip_ok": False})
