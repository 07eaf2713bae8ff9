"""``uci-har:DIR``: UCI Human Activity Recognition with smartphones (Anguita et al. 2013).

Layout: DIR (or ``DIR/UCI HAR Dataset``) with ``train/`` and ``test/``, each holding
``y_<split>.txt``, ``subject_<split>.txt`` and ``Inertial Signals/<signal>_<axis>_<split>.txt``
for signal in body_acc, body_gyro, total_acc and axis in x, y, z (128 values per row: 2.56 s
windows at 50 Hz, 50 % overlap, as published). Optional ``activity_labels.txt`` gives names.

Input: the 9 raw inertial channels, shape (9, 128), in the order body_acc x,y,z, body_gyro x,y,z,
total_acc x,y,z (``info["channel_groups"]``). Labels 1..6 -> 0..5.
Split: test = the official test subjects; val = all train windows of a fixed ~20 % of the
train SUBJECTS (drawn with a constant seed from the sorted subject ids), so one person's windows
never straddle train and val. Preprocessing: per-channel standardisation with train statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .files import find_root
from .registry import register_dataset
from .series import build_series_splits
from .splits import SPLIT_SEED

SIGNALS = ("body_acc", "body_gyro", "total_acc")
CHANNELS = [f"{s}_{a}" for s in SIGNALS for a in "xyz"]
CHANNEL_GROUPS = {s: [3 * i, 3 * i + 1, 3 * i + 2] for i, s in enumerate(SIGNALS)}
WINDOW = 128
VAL_SUBJECT_FRACTION = 0.2


def _files(split: str) -> list[str]:
    return ([f"{split}/y_{split}.txt", f"{split}/subject_{split}.txt"]
            + [f"{split}/Inertial Signals/{c}_{split}.txt" for c in CHANNELS])


def _read(path: Path, columns: int | None) -> np.ndarray:
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"file {path} is malformed ({str(exc).splitlines()[0][:120]}): it must hold "
                        "whitespace-separated numbers; replace it with the official file") from None
    if columns is not None and arr.shape[1] != columns:
        raise DataError(f"file {path} has {arr.shape[1]} values per row, expected {columns}: "
                        "replace it with the official file")
    return arr


def _load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _read(root / split / f"y_{split}.txt", 1)[:, 0].astype(np.int64)
    subjects = _read(root / split / f"subject_{split}.txt", 1)[:, 0].astype(np.int64)
    signals = []
    for c in CHANNELS:
        path = root / split / "Inertial Signals" / f"{c}_{split}.txt"
        arr = _read(path, WINDOW)
        if len(arr) != len(y):
            raise DataError(f"file {path} has {len(arr)} rows but y_{split}.txt has {len(y)}: "
                            "one of them is truncated; replace it with the official file")
        signals.append(arr)
    if len(subjects) != len(y):
        raise DataError(f"subject_{split}.txt has {len(subjects)} rows but y_{split}.txt has {len(y)}: "
                        "one of them is truncated")
    if y.min() < 1 or y.max() > 6:
        raise DataError(f"y_{split}.txt has labels outside 1..6 ({y.min()}..{y.max()}): "
                        "is this the UCI HAR dataset?")
    return np.stack(signals, axis=1), y - 1, subjects


def val_subjects(subjects: np.ndarray, fraction: float = VAL_SUBJECT_FRACTION) -> list[int]:
    """The fixed subset of train subjects used for validation (constant seed)."""
    uniq = np.unique(subjects)
    if len(uniq) < 2:
        raise DataError("uci-har: the train split has one subject: at least 2 are needed for a "
                        "subject-wise validation split")
    k = max(1, min(len(uniq) - 1, round(fraction * len(uniq))))
    return sorted(int(s) for s in np.random.RandomState(SPLIT_SEED).choice(uniq, size=k, replace=False))


@register_dataset("uci-har", kind="series", arg="DIR",
                  summary="UCI HAR 9x128 inertial windows, 6 activities, subject-wise val")
def load_uci_har(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    root = find_root(arg, ["UCI HAR Dataset"], _files("train") + _files("test"), "uci-har",
                     describe="train/ and test/, each with y_<split>.txt, subject_<split>.txt and "
                              "'Inertial Signals'/{body_acc,body_gyro,total_acc}_{x,y,z}_<split>.txt")
    x_tr, y_tr, s_tr = _load_split(root, "train")
    x_te, y_te, _ = _load_split(root, "test")
    held = val_subjects(s_tr)
    is_val = np.isin(s_tr, held)
    x = {"train": x_tr[~is_val], "val": x_tr[is_val], "test": x_te}
    y = {"train": y_tr[~is_val], "val": y_tr[is_val], "test": y_te}
    classes = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
    names = root / "activity_labels.txt"
    if names.is_file():
        pairs = [ln.split(None, 1) for ln in names.read_text().splitlines() if ln.strip()]
        if len(pairs) == 6 and all(len(p) == 2 for p in pairs):
            classes = [p[1].strip() for p in sorted(pairs, key=lambda p: int(p[0]))]
    info = {"source": f"official 'UCI HAR Dataset' folder {root} (Inertial Signals)",
            "split": f"test = official test subjects; val = train windows of subjects {held} "
                     f"(fixed ~20% of train subjects, seed {SPLIT_SEED})",
            "val_subjects": held, "channels": CHANNELS, "channel_groups": CHANNEL_GROUPS,
            "preprocessing": "raw inertial windows (9x128, as published); per-channel "
                             "standardisation with train mean/std"}
    return build_series_splits(name, x, y, num_classes=6, classes=classes, info=info)
