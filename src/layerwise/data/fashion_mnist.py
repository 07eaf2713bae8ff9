"""``fashion-mnist``: Zalando's Fashion-MNIST (60,000 train / 10,000 test 28x28 grey photos of
products, 10 classes), from the four official gzipped IDX files.

``fashion-mnist`` reads Debian's folder (``apt-get install dataset-fashion-mnist`` puts the files
in ``/usr/share/datasets/fashion-mnist``); ``fashion-mnist:DIR`` any other folder holding them
(or ``DIR/raw``). Nothing is downloaded. Split, checks and preprocessing are those of ``mnist:DIR``
(:mod:`layerwise.data.mnist`): test = the official 10,000; val = a fixed, stratified, seeded
5,000 of the 60,000 training images, never the test split. Horizontal flips keep a garment's
class, so ``info["hflip_ok"]`` is True (training augmentation may flip; MNIST digits may not).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .mnist import _locate, load_idx_set
from .registry import register_dataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def _load(name: str, directory: Path, size, channels):
    return load_idx_set(name, _locate(str(directory), label="fashion-mnist"), label="fashion-mnist",
                        classes=list(CLASSES), size=size, channels=channels,
                        info={"hflip_ok": True, "dataset": "Fashion-MNIST (Zalando)"})


@register_dataset("fashion-mnist", kind="image",
                  summary=f"Fashion-MNIST from {DEBIAN_DIR} (Debian package dataset-fashion-mnist)")
def load_fashion_mnist_debian(name: str, arg, *, size=None, channels=None, seed: int = 0):
    if not DEBIAN_DIR.is_dir():
        raise DataError(f"fashion-mnist: {DEBIAN_DIR} does not exist: install it with "
                        "'apt-get install dataset-fashion-mnist', or pass fashion-mnist:DIR with the "
                        "four official IDX files")
    return _load(name, DEBIAN_DIR, size, channels)


@register_dataset("fashion-mnist", kind="image", arg="DIR",
                  summary="Fashion-MNIST from a folder with the official IDX files")
def load_fashion_mnist_dir(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    return _load(name, Path(arg), size, channels)
