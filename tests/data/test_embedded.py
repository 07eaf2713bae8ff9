import random

import numpy as np
import pytest

from layerwise.data import aeon_sets, load_dataset
from layerwise.errors import DataError


def test_basic_motions(checked):
    d = load_dataset("basic-motions")
    assert d.input_shape == (6, 100) and d.num_classes == 4 and d.kind == "series"
    assert d.classes == ["badminton", "running", "standing", "walking"]
    checked(d, sizes={"train": 30, "val": 10, "test": 40})
    assert d.info["channel_groups"] == {"accelerometer": [0, 1, 2], "gyroscope": [3, 4, 5]}
    _, y = d.val.tensors
    assert sorted(np.bincount(y.numpy(), minlength=4).tolist()) == [2, 2, 3, 3]  # stratified


def test_bundled_list_has_known_sets():
    bundled = aeon_sets.bundled_classification_sets()
    assert {"BasicMotions", "JapaneseVowels", "GunPoint"} <= set(bundled)
    assert "Covid3Month" not in bundled  # a regression set


def test_variable_length_set_is_padded_to_longest_train_series(checked):
    d = load_dataset("aeon:JapaneseVowels")
    assert d.input_shape[0] == 12 and d.num_classes == 9
    x, _ = d.train.tensors
    # at least one train series fills the whole length, shorter ones end in zeros
    last = x[:, :, -1].abs().sum(1)
    assert (last > 0).any() and (last == 0).any()
    assert "zero-padded at the end" in d.info["preprocessing"]
    for split in (d.val, d.test):
        assert split.tensors[0].shape[1:] == x.shape[1:]


def test_aeon_name_is_case_insensitive_and_labels_sort_numerically():
    d = load_dataset("aeon:pickupgesturewiimotez")
    assert d.classes == [str(i) for i in range(1, 11)]


def test_not_bundled_aeon_set_never_touches_the_network(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("aeon was asked to load (and would download)")
    monkeypatch.setattr(aeon_sets, "_load_split", boom)
    with pytest.raises(DataError, match="not shipped offline.*BasicMotions"):
        load_dataset("aeon:FordA")


def test_mnist1d_shape_and_global_rng_untouched(checked):
    random.seed(7)
    np.random.seed(7)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(7)
    np.random.seed(7)
    d = load_dataset("mnist1d")
    assert random.random() == expect_py and np.random.rand() == expect_np
    assert d.input_shape == (1, 40) and d.num_classes == 10
    checked(d, sizes={"train": 3200, "val": 800, "test": 1000})
