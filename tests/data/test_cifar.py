import os
import pickle

import numpy as np
import pytest

from layerwise.data import load_dataset
from layerwise.data.safe_pickle import safe_pickle_load, safe_pickle_loads
from layerwise.errors import DataError

N_PER_BATCH, N_TEST = 20, 20


def _images(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10_bin(root, rng):
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    labels = {}
    for name, n in [(f"data_batch_{i}.bin", N_PER_BATCH) for i in range(1, 6)] + [("test_batch.bin", N_TEST)]:
        y = np.arange(n, dtype=np.uint8) % 10
        labels[name] = y
        (d / name).write_bytes(np.concatenate([y[:, None], _images(rng, n)], axis=1).tobytes())
    (d / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
    return d, labels


def test_cifar10_binary_from_parent_folder(tmp_path, checked):
    _, labels = write_cifar10_bin(tmp_path, np.random.default_rng(0))
    d = load_dataset(f"cifar10:{tmp_path}")
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.classes == [f"class{i}" for i in range(10)]
    # 10 % of 100 train images held out, stratified: one per class
    checked(d, sizes={"train": 90, "val": 10, "test": 20})
    assert sorted(d.val.labels[d.val.indices].tolist()) == list(range(10))
    assert d.test.labels[d.test.indices].tolist() == labels["test_batch.bin"].tolist()


def test_cifar10_binary_pixels_are_planar_rgb(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    rec = np.zeros((10, 3073), dtype=np.uint8)
    rec[:, 0] = np.arange(10)
    rec[:, 1:1025] = 255  # red plane full
    for f in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (d / f).write_bytes(rec.tobytes())
    s = load_dataset(f"cifar10:{d}")
    raw = s.train.raw[0]
    assert raw[0].min() == 255 and raw[1].max() == 0 and raw[2].max() == 0


def test_cifar100_binary_uses_fine_labels(tmp_path, checked):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    for name, n in [("train.bin", 300), ("test.bin", 50)]:
        fine = np.arange(n, dtype=np.uint8) % 100
        coarse = fine // 5
        (d / name).write_bytes(np.concatenate([coarse[:, None], fine[:, None], _images(rng, n)], 1).tobytes())
    (d / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    s = load_dataset(f"cifar100:{tmp_path}", size=16, channels=1)
    assert s.num_classes == 100 and s.input_shape == (1, 16, 16) and s.classes[99] == "f99"
    checked(s, sizes={"train": 270, "val": 30, "test": 50})
    assert s.test.labels[s.test.indices].tolist() == (np.arange(50) % 100).tolist()


def write_cifar10_py(root, rng, protocol=2):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", N_PER_BATCH) for i in range(1, 6)] + [("test_batch", N_TEST)]:
        batch = {b"batch_label": b"x", b"labels": [i % 10 for i in range(n)], b"data": _images(rng, n),
                 b"filenames": [b"f%d.png" % i for i in range(n)]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    (d / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072}, protocol=protocol))
    return d


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_python_pickles(tmp_path, protocol, checked):
    write_cifar10_py(tmp_path, np.random.default_rng(2), protocol)
    d = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}")
    assert d.classes == [f"c{i}" for i in range(10)]
    checked(d, sizes={"train": 90, "val": 10, "test": 20})


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_rejects_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker)}, protocol=2)
    with pytest.raises(DataError, match=r"(posix|os|nt)\.system"):
        safe_pickle_loads(payload, source="test")
    assert not marker.exists()
    # and inside a dataset folder
    d = write_cifar10_py(tmp_path, np.random.default_rng(3))
    (d / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_3.*system"):
        load_dataset(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_restricted_unpickler_loads_numpy(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    for protocol in (2, 4, 5):
        p = tmp_path / f"a{protocol}.pkl"
        p.write_bytes(pickle.dumps({"a": arr, "b": [1, (2, 3)], "s": {1}}, protocol=protocol))
        out = safe_pickle_load(p)
        assert np.array_equal(out["a"], arr) and out["b"] == [1, (2, 3)] and out["s"] == {1}
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(DataError, match="a5.pkl is not a readable pickle"):
        safe_pickle_load(p)


def test_truncated_binary_batch_is_named(tmp_path):
    d, _ = write_cifar10_bin(tmp_path, np.random.default_rng(4))
    data = (d / "data_batch_2.bin").read_bytes()
    (d / "data_batch_2.bin").write_bytes(data[:-100])
    with pytest.raises(DataError, match="data_batch_2.bin is truncated"):
        load_dataset(f"cifar10:{tmp_path}")


def test_missing_files_are_named(tmp_path):
    d, _ = write_cifar10_bin(tmp_path, np.random.default_rng(5))
    (d / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="missing test_batch.bin"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(DataError, match="cifar-100-binary/.*train.bin, test.bin"):
        load_dataset(f"cifar100:{tmp_path}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
