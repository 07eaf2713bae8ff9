"""``basic-motions`` and ``aeon:NAME``: UEA/UCR classification sets bundled inside aeon's wheel.

Only sets whose ``NAME_TRAIN.ts`` and ``NAME_TEST.ts`` ship in ``aeon/datasets/data`` are
accepted; that folder is checked BEFORE aeon is asked, because ``load_classification`` downloads
anything it does not find (and would hang or fail without a network). Any other name raises a
DataError listing the bundled ones.

Split: test = aeon's TEST file; val = a fixed stratified 25 % of aeon's TRAIN file (plain seeded
split when a class is too small to stratify); train = the rest.
Labels: the string labels map to class indices in sorted order (numeric labels sort as numbers);
``classes`` keeps the original labels.
Variable-length sets (aeon returns a list of (C, T_i) arrays, e.g. JapaneseVowels,
PickupGestureWiimoteZ): every series is padded with zeros AT THE END to the length of the longest
series in the TRAIN split; longer val/test series are cut at that length.
Preprocessing: per-channel standardisation with the mean/std of the real (unpadded) train values,
then padding, so padded steps sit at the channel mean. Missing values (NaN) become 0 afterwards.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DataError
from .registry import register_dataset
from .series import build_series_splits, channel_stats, label_indices, pad_or_cut
from .splits import SPLIT_SEED, fixed_split

CHANNEL_GROUPS = {"BasicMotions": {"accelerometer": [0, 1, 2], "gyroscope": [3, 4, 5]}}


def _bundled_dir() -> Path | None:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


@functools.lru_cache(maxsize=1)
def bundled_classification_sets() -> tuple[str, ...]:
    """Names of the classification sets shipped inside the installed aeon wheel."""
    root = _bundled_dir()
    if root is None or not root.is_dir():
        return ()
    names = []
    for d in sorted(root.iterdir()):
        train, test = d / f"{d.name}_TRAIN.ts", d / f"{d.name}_TEST.ts"
        if train.is_file() and test.is_file() and _is_classification(train):
            names.append(d.name)
    return tuple(names)


def _is_classification(ts_file: Path) -> bool:
    with open(ts_file, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
            if low.startswith("@data"):
                break
    return False


def _load_split(name: str, split: str):
    from aeon.datasets import load_classification

    try:
        return load_classification(name, split=split)
    except Exception as exc:
        raise DataError(f"aeon could not read its bundled set {name} ({type(exc).__name__}: {exc}); "
                        "reinstall aeon") from None


def load_aeon(name: str, problem: str):
    bundled = bundled_classification_sets()
    match = {b.lower(): b for b in bundled}.get(problem.lower())
    if match is None:
        raise DataError(f"aeon set {problem!r} is not shipped offline with the installed aeon (nothing "
                        f"is downloaded here): use one of {', '.join(bundled) or '(none: is aeon installed?)'}")
    x_tr, y_tr = _load_split(match, "train")
    x_te, y_te = _load_split(match, "test")
    _, classes = label_indices(np.concatenate([np.asarray(y_tr), np.asarray(y_te)]))
    lookup = {c: i for i, c in enumerate(classes)}
    y_train_all = np.array([lookup[str(v)] for v in y_tr], dtype=np.int64)
    y_test = np.array([lookup[str(v)] for v in y_te], dtype=np.int64)

    as_list = lambda x: [np.asarray(s, dtype=np.float64) for s in x]  # noqa: E731
    train_list, test_list = as_list(x_tr), as_list(x_te)
    keep, val, strat = fixed_split(y_train_all, 0.25)
    parts = {"train": [train_list[i] for i in keep], "val": [train_list[i] for i in val],
             "test": test_list}
    y = {"train": y_train_all[keep], "val": y_train_all[val], "test": y_test}

    lengths = {s.shape[1] for s in train_list + test_list}
    length = max(s.shape[1] for s in parts["train"])
    mean, std = channel_stats(parts["train"])
    x = {k: pad_or_cut([(s - mean[:, None]) / std[:, None] for s in v], length)
         for k, v in parts.items()}
    info = {"source": f"aeon.datasets.load_classification({match!r}) (bundled in the aeon wheel)",
            "split": f"test = aeon TEST; val = fixed stratified 25% of aeon TRAIN (seed {SPLIT_SEED})",
            "stratified": strat,
            "preprocessing": "per-channel standardisation with train mean/std",
            "normalisation": {"mean": [round(float(v), 6) for v in mean],
                              "std": [round(float(v), 6) for v in std]}}
    if len(lengths) > 1:
        info["preprocessing"] += (f"; variable length {min(lengths)}..{max(lengths)}: zero-padded at the "
                                  f"end (after standardising) to the longest train series ({length}), "
                                  "longer series cut")
    if match in CHANNEL_GROUPS:
        info["channel_groups"] = CHANNEL_GROUPS[match]
    return build_series_splits(name, x, y, num_classes=len(classes), classes=classes, info=info,
                               standardise=False)


@register_dataset("aeon", kind="series", arg="NAME",
                  summary="any UEA/UCR classification set bundled with aeon")
def _load_aeon_entry(name: str, arg: str, *, size=None, channels=None, seed: int = 0):
    return load_aeon(name, arg)


@register_dataset("basic-motions", kind="series",
                  summary="aeon BasicMotions: 6x100 accelerometer+gyroscope, 4 activities, 40+40")
def _load_basic_motions(name: str, arg: None, *, size=None, channels=None, seed: int = 0):
    return load_aeon(name, "BasicMotions")
