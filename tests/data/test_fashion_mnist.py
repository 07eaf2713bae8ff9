"""fashion-mnist: the Debian folder by default, fashion-mnist:DIR otherwise, tiny generated IDX
files in the official layout; the real files when the Debian package is installed."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from layerwise.cli import main
from layerwise.data import fashion_mnist, load_dataset
from layerwise.errors import DataError

from .conftest import check_splits
from .test_mnist import write_mnist

GZ_ALL = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte")


def test_folder_with_the_official_files(tmp_path):
    arrays = write_mnist(tmp_path / "fm", n_train=240, n_test=40, gz=GZ_ALL)
    d = load_dataset(f"fashion-mnist:{tmp_path / 'fm'}")
    # val = 1/12 of train, stratified: 20 images, 2 per class; test = the t10k files, untouched
    check_splits(d, sizes={"train": 220, "val": 20, "test": 40})
    assert Counter(int(d.val[i][1]) for i in range(len(d.val))) == {c: 2 for c in range(10)}
    assert np.array_equal(d.test.raw[d.test.indices, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert d.info["hflip_ok"] is True and d.input_shape == (1, 28, 28)


def test_default_is_the_debian_folder(tmp_path, monkeypatch):
    write_mnist(tmp_path / "deb", n_train=120, n_test=20, gz=GZ_ALL)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "deb")
    d = load_dataset("fashion-mnist", size=32)
    assert len(d.test) == 20 and d.input_shape == (1, 32, 32)
    assert str(tmp_path / "deb") in d.info["source"]


def test_missing_folder_names_both_ways_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "fashion-mnist:DIR" in msg
    rc = main(["profile", "--model", "tiny-cnn", "--dataset", "fashion-mnist",
               "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "dataset-fashion-mnist" in lines[0]


def test_incomplete_folder_says_what_is_missing(tmp_path):
    write_mnist(tmp_path / "fm", gz=GZ_ALL)
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="fashion-mnist: .*missing t10k-labels-idx1-ubyte"):
        load_dataset(f"fashion-mnist:{tmp_path / 'fm'}")


@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir() and os.environ.get("CI") != "true",
                    reason="Debian package dataset-fashion-mnist not installed "
                           "(apt-get install dataset-fashion-mnist)")
def test_the_real_files():
    d = load_dataset("fashion-mnist")
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert Counter(int(y) for y in d.val.labels[d.val.indices]) == {c: 500 for c in range(10)}
    assert Counter(int(y) for y in d.test.labels[d.test.indices]) == {c: 1000 for c in range(10)}
