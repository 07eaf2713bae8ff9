import gzip
import struct

import numpy as np
import pytest

from layerwise.data import load_dataset
from layerwise.data.mnist import read_idx
from layerwise.errors import DataError


def idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_mnist(root, n_train=120, n_test=30, gz=("train-images-idx3-ubyte",)):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if name in gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return arrays


def test_mnist_gz_and_plain(tmp_path, checked):
    arrays = write_mnist(tmp_path, gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    d = load_dataset(f"mnist:{tmp_path}")
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    checked(d, sizes={"train": 110, "val": 10, "test": 30})  # val = 1/12 of train
    assert np.array_equal(d.test.raw[d.test.indices, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert d.test.labels[d.test.indices].tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_mnist_in_raw_subfolder_resized(tmp_path):
    write_mnist(tmp_path / "raw", gz=())
    d = load_dataset(f"mnist:{tmp_path}", size=32, channels=3)
    assert d.input_shape == (3, 32, 32) and tuple(d.train[0][0].shape) == (3, 32, 32)


def test_idx_header_is_checked(tmp_path):
    arr = np.zeros((2, 3, 4), dtype=np.uint8)
    p = tmp_path / "x"
    p.write_bytes(idx_bytes(arr))
    assert read_idx(p, 3).shape == (2, 3, 4)
    with pytest.raises(DataError, match="expected 1-d"):
        read_idx(p, 1)
    p.write_bytes(b"\x01\x02" + idx_bytes(arr)[2:])
    with pytest.raises(DataError, match="bad magic"):
        read_idx(p, 3)
    p.write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(DataError, match="x is truncated"):
        read_idx(p, 3)
    bad = struct.pack(">BBBB", 0, 0, 0x0D, 1) + struct.pack(">I", 1) + b"\0\0\0\0"
    p.write_bytes(bad)
    with pytest.raises(DataError, match="unsigned bytes"):
        read_idx(p, 1)


def test_truncated_gzip_is_named(tmp_path):
    write_mnist(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset(f"mnist:{tmp_path}")


def test_missing_and_mismatched_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[.gz\]"):
        load_dataset(f"mnist:{tmp_path}")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset(f"mnist:{tmp_path / 'empty'}")
    write_mnist(tmp_path / "b", n_test=30)
    (tmp_path / "b" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, dtype=np.uint8)))
    with pytest.raises(DataError, match="30 images but .* 29 labels"):
        load_dataset(f"mnist:{tmp_path / 'b'}")
