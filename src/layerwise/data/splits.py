"""Fixed train/validation splits.

Every split in ``layerwise.data`` is drawn with the constant :data:`SPLIT_SEED`, never with the
user's ``seed``: two runs (or two methods) on the same dataset see exactly the same validation
and test samples, so their numbers compare.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

SPLIT_SEED = 20240531  # constant on purpose: see the module docstring


def fixed_split(labels: np.ndarray, val: float | int, *, stratify: bool = True
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split ``range(len(labels))`` into (keep, held_out) index arrays, both sorted.

    ``val`` is a fraction (float in (0, 1)) or a count (int). The split is stratified by label
    when every class can be represented; otherwise (tiny or very unbalanced sets) it falls back to
    a plain seeded random split. The third value says whether it was stratified.
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    n_val = int(val) if isinstance(val, int) and not isinstance(val, bool) else math.ceil(val * n)
    if not 0 < n_val < n:
        raise DataError(f"cannot hold out {n_val} of {n} samples for a validation split: the "
                        f"training data has too few samples ({n}); use a larger dataset")
    idx = np.arange(n)
    if stratify:
        try:
            keep, held = train_test_split(idx, test_size=n_val, stratify=labels,
                                          random_state=SPLIT_SEED)
            return np.sort(keep), np.sort(held), True
        except ValueError as exc:  # a class with one sample, or fewer held-out than classes
            log.info("stratified split impossible (%s); using a plain seeded split", exc)
    keep, held = train_test_split(idx, test_size=n_val, random_state=SPLIT_SEED)
    return np.sort(keep), np.sort(held), False


def fraction_count(fraction: float, n: int) -> int:
    """``round(fraction * n)`` clamped to ``[1, n - 1]``: the held-out size for a fraction."""
    return max(1, min(n - 1, round(fraction * n)))
