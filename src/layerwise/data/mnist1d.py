"""``mnist1d``: the MNIST-1D benchmark (Greydanus 2020), generated locally by the ``mnist1d``
package with its default arguments (5,000 series of length 40, 10 classes, generation seed 42).

Nothing is downloaded: only ``make_dataset`` is called, never ``get_dataset`` (which may fetch a
pickle from the web). The generator reseeds Python's and NumPy's global RNGs; their state is
saved and restored around it. The ``seed`` argument does not change the data: MNIST-1D is used as
the canonical benchmark so that runs compare.

Split: test = the package's own 1,000 test series; val = a fixed stratified 20 % of its 4,000
train series (800). Preprocessing: per-channel standardisation with train statistics.
Shape (1, 40).
"""

from __future__ import annotations

import random

import numpy as np

from .registry import register_dataset
from .series import build_series_splits
from .splits import SPLIT_SEED, fixed_split


def _generate() -> dict:
    from mnist1d.data import get_dataset_args, make_dataset  # imports requests; makes no request

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        return make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@register_dataset("mnist1d", kind="series", summary="MNIST-1D, generated locally, 1x40, 10 classes")
def load_mnist1d(name: str, arg: None, *, size=None, channels=None, seed: int = 0):
    data = _generate()
    x_all = np.asarray(data["x"], dtype=np.float64)[:, None, :]
    y_all = np.asarray(data["y"], dtype=np.int64)
    train, val, strat = fixed_split(y_all, 0.2)
    x = {"train": x_all[train], "val": x_all[val],
         "test": np.asarray(data["x_test"], dtype=np.float64)[:, None, :]}
    y = {"train": y_all[train], "val": y_all[val], "test": np.asarray(data["y_test"], dtype=np.int64)}
    info = {"source": "mnist1d.data.make_dataset(get_dataset_args()) (generation seed 42, local)",
            "split": f"test = mnist1d test split; val = fixed stratified 20% of its train (seed {SPLIT_SEED})",
            "stratified": strat,
            "preprocessing": "per-channel standardisation with train mean/std"}
    return build_series_splits(name, x, y, num_classes=10, classes=[str(i) for i in range(10)],
                               info=info)
