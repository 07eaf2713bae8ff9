import numpy as np
import pytest
import torch
from PIL import Image

from layerwise.data import load_dataset
from layerwise.errors import DataError

WNIDS = ["n02", "n01", "n03"]  # deliberately unsorted in wnids.txt


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path / "cache"))


def write_tiny(root, per_class=10, val_per_class=3):
    rng = np.random.default_rng(0)
    r = root / "tiny-imagenet-200"
    (r / "val" / "images").mkdir(parents=True)
    (r / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (r / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby cat\nn03\tbus\nn99\tother\n")
    for w in WNIDS:
        d = r / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            img = Image.fromarray(arr)
            if w == "n03" and i == 0:
                img = img.convert("L")  # the official set has a few greyscale JPEGs
            img.save(d / f"{w}_{i}.JPEG", quality=95)
        (r / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for j in range(val_per_class * len(WNIDS)):
        w = WNIDS[j % len(WNIDS)]
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            r / "val" / "images" / f"val_{j}.JPEG")
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t63\t63")
    (r / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return r


def test_tiny_imagenet_layout(tmp_path, checked):
    write_tiny(tmp_path)
    d = load_dataset(f"tiny-imagenet:{tmp_path}")
    assert d.input_shape == (3, 64, 64) and d.num_classes == 3
    assert d.classes == ["goldfish, Carassius auratus", "tabby cat", "bus"]  # sorted wnid order
    assert d.train.raw.dtype.is_floating_point is False  # uint8 kept in memory
    checked(d, sizes={"train": 27, "val": 3, "test": 9}, atol=1e-3)
    assert sorted(d.val.labels[d.val.indices].tolist()) == [0, 1, 2]
    # test = official val, labels from val_annotations.txt in sorted-wnid indices (n02 -> 1)
    assert d.test.labels[d.test.indices].tolist() == [1, 0, 2] * 3
    # greyscale JPEG became 3 equal planes
    grey = [i for i, lab in enumerate(d.train.labels.tolist()) if lab == 2][0]
    raw = d.train.raw[grey].int()
    assert raw.shape == (3, 64, 64) and (raw[0] == raw[1]).all() and (raw[1] == raw[2]).all()


def test_tiny_imagenet_resized_down(tmp_path):
    write_tiny(tmp_path, per_class=4, val_per_class=1)
    d = load_dataset(f"tiny-imagenet:{tmp_path / 'tiny-imagenet-200'}", size=32)
    assert d.input_shape == (3, 32, 32) and tuple(d.test[0][0].shape) == (3, 32, 32)


def test_tiny_imagenet_errors(tmp_path):
    r = write_tiny(tmp_path, per_class=2, val_per_class=1)
    (r / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataError, match="missing val/val_annotations.txt"):
        load_dataset(f"tiny-imagenet:{tmp_path}")
    r2 = write_tiny(tmp_path / "b", per_class=2, val_per_class=1)
    (r2 / "train" / "n01" / "images" / "n01_0.JPEG").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DataError, match="n01_0.JPEG cannot be decoded"):
        load_dataset(f"tiny-imagenet:{tmp_path / 'b'}")
    with pytest.raises(DataError, match="wnids.txt"):
        load_dataset(f"tiny-imagenet:{tmp_path / 'b' / 'tiny-imagenet-200' / 'train'}")


def test_decoded_once_then_cached_and_rebuilt_when_a_jpeg_changes(tmp_path, caplog):
    import logging

    r = write_tiny(tmp_path, per_class=3, val_per_class=1)
    name = f"tiny-imagenet:{tmp_path}"
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        first = load_dataset(name)
    assert "decoding 12 Tiny ImageNet JPEGs" in caplog.text
    (cache,) = (tmp_path / "cache").iterdir()
    assert {p.name for p in cache.iterdir()} == {"images.npy", "labels.npy", "meta.json"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        again = load_dataset(name)
    assert "decoding" not in caplog.text and "from the cache" in caplog.text
    assert torch.equal(first.train.raw, again.train.raw) and again.train.raw.dtype == torch.uint8
    # a replaced JPEG changes the fingerprint: decoded again, and its pixels are the new ones
    jpeg = r / "train" / "n02" / "images" / "n02_1.JPEG"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(jpeg, quality=95)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        changed = load_dataset(name)
    assert "source files changed" in caplog.text and "decoding 12" in caplog.text
    files = sorted((r / "train" / "n01" / "images").glob("*.JPEG")) + sorted((r / "train" / "n02" / "images").glob("*.JPEG"))
    k = [f.name for f in files].index("n02_1.JPEG")       # train order: sorted wnids, then files
    assert int(changed.train.raw[k].max()) <= 8 and int(first.train.raw[k].max()) > 8
    # a damaged cache file fails its checksum: rebuilt, never used
    data = bytearray((cache / "images.npy").read_bytes())
    data[-5] ^= 0xFF
    (cache / "images.npy").write_bytes(bytes(data))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="layerwise.data"):
        repaired = load_dataset(name)
    assert "checksum mismatch" in caplog.text
    assert torch.equal(repaired.train.raw, changed.train.raw)
