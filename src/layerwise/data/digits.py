"""``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (UCI optdigits), shipped offline.

Split: fixed stratified train/val/test = 60/20/20 (``train_test_split`` with a constant seed:
test = 20 % of all, then val = 25 % of the rest), identical in every run.
Preprocessing: pixel values 0..16 divided by 16, optional resize/channel conversion
(``size=28`` gives MNIST-shaped 1x28x28, ``size=32, channels=3`` CIFAR-shaped 3x32x32), then
per-channel mean/std of the train split. Native shape (1, 8, 8), 10 classes.
"""

from __future__ import annotations

import numpy as np
import torch

from .images import build_image_splits
from .registry import register_dataset
from .splits import SPLIT_SEED, fixed_split


@register_dataset("digits", kind="image", summary="sklearn 8x8 digits, 1797 images, 10 classes")
def load_digits(name: str, arg: None, *, size=None, channels=None, seed: int = 0):
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    raw = torch.from_numpy(bunch.images.astype(np.uint8)).unsqueeze(1)  # (1797, 1, 8, 8), 0..16
    y = bunch.target.astype(np.int64)
    rest, test, s1 = fixed_split(y, 0.2)
    train_r, val_r, s2 = fixed_split(y[rest], 0.25)
    indices = {"train": rest[train_r], "val": rest[val_r], "test": test}
    info = {"source": "sklearn.datasets.load_digits (UCI optdigits, 8x8, values 0..16)",
            "split": f"fixed stratified 60/20/20 train/val/test (seed {SPLIT_SEED})",
            "stratified": s1 and s2}
    return build_image_splits(name, raw, y, indices, num_classes=10,
                              classes=[str(i) for i in range(10)], info=info, scale=16.0,
                              size=size, channels=channels)
