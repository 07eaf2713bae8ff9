"""``imagenet:DIR``: ImageNet-1K (ILSVRC 2012) from the standard class-folder layout.

Layout: DIR with ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the official validation
images moved into one folder per class, as the usual preparation script does). Classes are the
``train`` folders in sorted wnid order; every ``val`` folder must be one of them.

Splits: test = the official val set (what ELA Table 2 and MRLA report); val = a fixed stratified
1 % of train (at least one image per class when possible; 12,812 of 1,281,167); train = the rest.

Images are decoded per item (1.28M JPEGs do not fit in memory) with Pillow, converted to RGB,
and cropped and resized with Pillow's antialiased bilinear ``resize(box=...)``; no torchvision.
The papers' augmentation (He et al. 2016; the public PyTorch ImageNet recipe both MRLA and ELA
train with):

* train: random-resized crop (area 8 %-100 % of the image, aspect ratio 3/4-4/3 log-uniform, ten
  tries then a centre crop clamped to that ratio; Szegedy et al. 2015) to ``size`` x ``size``, and a
  horizontal flip with probability 1/2; the draws depend only on (seed, epoch, index, how many
  times this process has fetched that index), so every fetch of an image draws a new crop and a
  rerun draws the same ones (``set_epoch(e)`` as ``DistributedSampler.set_epoch`` also works);
* val and test: shorter side resized to ``size * 256 / 224`` (256 for 224), centre crop ``size``.

Then ``/ 255`` and the ImageNet channel mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
``size`` is 224 unless ``load_dataset(..., size=S)`` (``--size``) asks for another (square only).
``--augment`` is not needed (and would add the CIFAR pad-and-crop on top): the train split is
always augmented.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .base import DatasetSplits
from .registry import register_dataset
from .splits import SPLIT_SEED, fixed_split

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP = 224
RESIZE_RATIO = 256 / 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
VAL_FRACTION = 0.01
EXTENSIONS = (".jpeg", ".jpg", ".png")


def random_resized_box(width: int, height: int, rng: np.random.Generator, scale=SCALE, ratio=RATIO
                       ) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop of area ``scale`` x image and aspect ``ratio`` (log-uniform)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height   # fallback: the centre crop of the largest box within the ratio range
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def center_box(width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """Resize target (W', H') with the shorter side ``round(size * 256 / 224)`` and the box, in
    ORIGINAL pixels, of the centre ``size`` x ``size`` crop of that resized image."""
    short = int(round(size * RESIZE_RATIO))
    if width <= height:
        rw, rh = short, int(short * height / width)
    else:
        rw, rh = int(short * width / height), short
    left, top = int(round((rw - size) / 2.0)), int(round((rh - size) / 2.0))
    sx, sy = width / rw, height / rh
    return (rw, rh), (left * sx, top * sy, (left + size) * sx, (top + size) * sy)


def decode(path: Path, channels: int | None = None):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"imagenet: image {path} cannot be decoded ({type(exc).__name__}: "
                        f"{str(exc)[:80]}): it is truncated or not an image; replace it") from None


class ImageFolderSplit(Dataset):
    """Files + labels of one split; ``augment`` picks the train or the eval transform."""

    def __init__(self, files: list[Path], labels: np.ndarray, size: int, augment: bool, seed: int = 0,
                 channels: int | None = None):
        self.files = files
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.indices = torch.arange(len(files))   # labels[indices]: labels without decoding (--train-limit)
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.draws = np.zeros(len(files), dtype=np.int64)   # fetches of each index so far (train)
        self.channels = channels
        c = 1 if channels == 1 else 3
        mean = (sum(w * m for w, m in zip((0.299, 0.587, 0.114), MEAN)),) if c == 1 else MEAN
        std = (sum(w * s for w, s in zip((0.299, 0.587, 0.114), STD)),) if c == 1 else STD
        self.mean = torch.tensor(mean).view(c, 1, 1)
        self.std = torch.tensor(std).view(c, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws for ``epoch`` (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image

        im = decode(self.files[i], self.channels)
        s = self.size
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, int(i), int(self.draws[i]), SPLIT_SEED])
            self.draws[i] += 1
            left, top, w, h = random_resized_box(im.width, im.height, rng)
            im = im.resize((s, s), Image.BILINEAR, box=(left, top, left + w, top + h))
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            _, box = center_box(im.width, im.height, s)
            im = im.resize((s, s), Image.BILINEAR, box=box)
        arr = np.asarray(im, dtype=np.uint8)
        x = torch.from_numpy(arr.copy()).float().div_(255.0)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        return (x - self.mean) / self.std, self.labels[i]


def _images(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if e.is_file() and e.name.lower().endswith(EXTENSIONS))


def _side(size) -> int:
    if size is None:
        return CROP
    if isinstance(size, tuple) and size[0] != size[1]:
        raise DataError(f"imagenet crops are square: pass one --size (e.g. 224), not {size[0]}x{size[1]}")
    side = size if isinstance(size, int) else size[0]
    if side < 8:
        raise DataError(f"imagenet: --size {side} is too small for a crop: use at least 8 (224 as the papers)")
    return side


@register_dataset("imagenet", kind="image", arg="DIR",
                  summary="ImageNet-1K train/val class folders, random-resized crops + flips, decoded per item")
def load_imagenet(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    root = Path(arg).expanduser()
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        missing = [d for d in ("train", "val") if not (root / d).is_dir()]
        raise DataError(f"imagenet: folder {root} has no {' or '.join(d + '/' for d in missing)}: pass the folder "
                        "that holds train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val images sorted into class folders)")
    side = _side(size)
    wnids = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not wnids:
        raise DataError(f"imagenet: {root / 'train'} has no class folders: expected train/<wnid>/*.JPEG")
    index = {w: i for i, w in enumerate(wnids)}
    files: dict[str, list[Path]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for split, folder in (("train", "train"), ("test", "val")):
        for d in sorted(p for p in (root / folder).iterdir() if p.is_dir()):
            if d.name not in index:
                raise DataError(f"imagenet: {d} is not a class of train/ (no train/{d.name}): the val images "
                                "must sit in the same wnid folders as train")
            found = _images(d)
            if split == "train" and not found:
                raise DataError(f"imagenet: no images in {d}: every class folder needs *.JPEG files")
            files[split] += found
            labels[split] += [index[d.name]] * len(found)
    if not files["test"]:
        raise DataError(f"imagenet: no images under {root / 'val'}: expected val/<wnid>/*.JPEG")
    y_train = np.array(labels["train"], dtype=np.int64)
    n_val = max(math.ceil(VAL_FRACTION * len(y_train)), min(len(wnids), len(y_train) // 2))
    keep, val, strat = fixed_split(y_train, int(n_val))
    tr_files = files["train"]
    splits = {
        "train": ImageFolderSplit([tr_files[i] for i in keep], y_train[keep], side, True, seed, channels),
        "val": ImageFolderSplit([tr_files[i] for i in val], y_train[val], side, False, seed, channels),
        "test": ImageFolderSplit(files["test"], np.array(labels["test"]), side, False, seed, channels),
    }
    info = {"source": f"ImageNet class folders {root}",
            "split": f"test = official val/; val = fixed {'stratified ' if strat else ''}1% of train "
                     f"(seed {SPLIT_SEED}); train = the rest",
            "preprocessing": f"train: random-resized crop (area {SCALE[0]:g}-{SCALE[1]:g}, ratio 3/4-4/3) to "
                             f"{side}x{side} + horizontal flip; val/test: shorter side "
                             f"{int(round(side * RESIZE_RATIO))}, centre crop {side}; /255, ImageNet mean/std",
            "sizes": {k: len(v) for k, v in splits.items()}, "wnids": len(wnids)}
    return DatasetSplits(name=name, train=splits["train"], val=splits["val"], test=splits["test"],
                         input_shape=(1 if channels == 1 else 3, side, side), num_classes=len(wnids),
                         kind="image", classes=wnids, info=info)
