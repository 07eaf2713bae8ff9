"""``tiny-imagenet:DIR``: Tiny ImageNet (200 classes, 64x64 RGB) from the official folder.

Layout (DIR may be ``tiny-imagenet-200`` itself or its parent): ``wnids.txt``, optional
``words.txt`` (class names), ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` and
``val/val_annotations.txt`` (tab-separated: file, wnid, bounding box).

Split: the official test split has no labels, so test = the official val set (10,000), and
val = a fixed stratified 10 % of the official train set (10,000 of 100,000); train = the rest.
Classes are indexed in sorted wnid order. Images are decoded with Pillow, converted to RGB
(a few official JPEGs are greyscale) and kept as uint8 in memory (about 1.2 GB); conversion to
float happens per batch. Preprocessing: pixels / 255, optional resize/channel conversion,
per-channel train mean/std.

Decoding 110,000 JPEGs takes minutes, so the decoded array is cached on disk once
(:mod:`layerwise.data.cache`: ``$LAYERWISE_CACHE`` or ``~/.cache/layerwise``), checksummed, and
rebuilt when any source file (a JPEG, ``wnids.txt``, ``val_annotations.txt``) is added, removed or
changed; later loads read it back in seconds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .cache import ArrayCache, source_fingerprint
from .files import find_root
from .images import build_image_splits
from .registry import register_dataset
from .splits import SPLIT_SEED, fixed_split

log = logging.getLogger(__name__)
SIDE = 64


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (SIDE, SIDE):
                raise DataError(f"image {path} is {im.size[0]}x{im.size[1]}, expected {SIDE}x{SIDE}: "
                                "Tiny ImageNet images are 64x64; replace the file")
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"image {path} cannot be decoded ({type(exc).__name__}: {exc}): "
                        "it is truncated or not a JPEG; replace it with the official file") from None


def _images(files: list[Path]) -> torch.Tensor:
    """Decode into one preallocated uint8 tensor (no second copy of ~1.2 GB)."""
    out = torch.empty((len(files), 3, SIDE, SIDE), dtype=torch.uint8)
    view = out.numpy()
    for i, f in enumerate(files):
        view[i] = _decode(f)
    return out


@register_dataset("tiny-imagenet", kind="image", arg="DIR",
                  summary="Tiny ImageNet 200 classes 64x64 from the official folder")
def load_tiny_imagenet(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    required = ["wnids.txt", "train", "val/images", "val/val_annotations.txt"]
    root = find_root(arg, ["tiny-imagenet-200"], required, "tiny-imagenet")
    wnids = sorted({w.strip() for w in (root / "wnids.txt").read_text().splitlines() if w.strip()})
    if not wnids:
        raise DataError(f"tiny-imagenet: {root / 'wnids.txt'} is empty: it must list one wnid per line")
    index = {w: i for i, w in enumerate(wnids)}

    train_files, train_labels = [], []
    for w in wnids:
        folder = root / "train" / w / "images"
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
        if not files:
            raise DataError(f"tiny-imagenet: no JPEG images in {folder}: every wnid in wnids.txt "
                            "needs train/<wnid>/images/*.JPEG")
        train_files += files
        train_labels += [index[w]] * len(files)

    test_files, test_labels = [], []
    ann = root / "val" / "val_annotations.txt"
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise DataError(f"tiny-imagenet: {ann} line {n} is malformed or names a wnid not in "
                            f"wnids.txt ({line[:80]!r}); expected 'file<TAB>wnid<TAB>bbox'")
        f = root / "val" / "images" / fields[0].strip()
        if not f.is_file():
            raise DataError(f"tiny-imagenet: {ann} line {n} names {f}, which does not exist")
        test_files.append(f)
        test_labels.append(index[fields[1].strip()])
    if not test_files:
        raise DataError(f"tiny-imagenet: {ann} lists no images: it must hold 'file<TAB>wnid...' lines")

    labels = np.array(train_labels + test_labels, dtype=np.int64)
    sources = train_files + test_files + [root / "wnids.txt", ann]
    fingerprint = source_fingerprint(root, sources, {"side": SIDE, "order": "train (sorted wnids), then val"})
    cache = ArrayCache("tiny-imagenet", root)
    cached = cache.load(fingerprint)
    if cached is not None and np.array_equal(cached["labels"], labels):
        images = torch.from_numpy(cached["images"])
    else:
        log.info("decoding %d Tiny ImageNet JPEGs from %s", len(train_files) + len(test_files), root)
        images = _images(train_files + test_files)
        cache.store(fingerprint, {"images": images.numpy(), "labels": labels}, {"source": str(root)})
    n_train = len(train_files)
    keep, val, strat = fixed_split(labels[:n_train], 0.1)
    indices = {"train": keep, "val": val, "test": np.arange(n_train, len(labels))}

    classes = wnids
    words = root / "words.txt"
    if words.is_file():
        names = dict(line.split("\t", 1) for line in words.read_text(errors="replace").splitlines()
                     if "\t" in line)
        classes = [names.get(w, w).strip() for w in wnids]
    info = {"source": f"official tiny-imagenet-200 folder {root}",
            "split": "test = official val (the official test has no labels); val = fixed stratified "
                     f"10% of official train (seed {SPLIT_SEED})",
            "stratified": strat, "wnids": wnids, "cache": str(cache.folder)}
    return build_image_splits(name, images, labels, indices, num_classes=len(wnids),
                              classes=classes, info=info, size=size, channels=channels)
