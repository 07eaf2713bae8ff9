"""imagenet:DIR on a few JPEGs written in the standard train/val class-folder layout."""

import numpy as np
import pytest
import torch
from PIL import Image

from layerwise.data import load_dataset, make_loader
from layerwise.data.imagenet import MEAN, STD, center_box, random_resized_box
from layerwise.errors import DataError

WNIDS = ["n01440764", "n01443537", "n01484850"]


def write_imagenet(root, per_class=6, val_per_class=2):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c, w in enumerate(WNIDS):
            d = root / split / w
            d.mkdir(parents=True)
            for i in range(n):
                h, wd = int(rng.integers(40, 90)), int(rng.integers(40, 120))
                arr = np.full((h, wd, 3), 60 * c + 20, dtype=np.uint8)
                arr[: h // 2] += rng.integers(0, 40, (h // 2, wd, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{w}_{i}.JPEG", quality=95)
    return root


def test_layout_splits_and_shapes(tmp_path):
    write_imagenet(tmp_path)
    d = load_dataset(f"imagenet:{tmp_path}", size=32)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 3 and d.classes == WNIDS
    assert (len(d.train), len(d.val), len(d.test)) == (15, 3, 6)
    assert sorted(d.val.labels.tolist()) == [0, 1, 2]            # stratified hold-out of train
    assert d.test.labels.tolist() == [0, 0, 1, 1, 2, 2]          # official val, sorted wnids
    x, y = next(iter(make_loader(d.test, batch_size=6)))
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [0, 0, 1, 1, 2, 2]
    # eval is deterministic; each train fetch draws a new crop, the same ones in a rerun
    assert torch.equal(d.test[0][0], d.test[0][0])
    a, b = d.train[0][0], d.train[0][0]
    assert not torch.equal(a, b)
    rerun = load_dataset(f"imagenet:{tmp_path}", size=32)
    assert torch.equal(rerun.train[0][0], a) and torch.equal(rerun.train[0][0], b)
    # --train-limit takes a stratified subset from the labels alone (no decoding of the whole split)
    from layerwise.experiments.common import limit_split
    small = limit_split(d, "train", 3).train
    assert sorted(small.dataset.labels[small.indices].tolist()) == [0, 1, 2]


def test_eval_transform_is_resize_then_centre_crop():
    """A 300x200 image at size 64: shorter side -> round(64 * 256 / 224) = 73, so 109x73, then
    the centre 64x64 crop starts at (round(22.5), round(4.5)) = (22, 4) of the resized image."""
    (rw, rh), box = center_box(300, 200, 64)
    assert (rw, rh) == (109, 73)
    sx, sy = 300 / 109, 200 / 73
    assert box == pytest.approx((22 * sx, 4 * sy, 86 * sx, 68 * sy))
    # a flat grey image normalises to (v / 255 - mean) / std in every pixel
    assert center_box(224, 224, 224)[1] == pytest.approx((16 * 224 / 256, 16 * 224 / 256, 240 * 224 / 256,
                                                           240 * 224 / 256))


def test_random_resized_box_respects_area_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        left, top, w, h = random_resized_box(400, 300, rng)
        assert 0 <= left and left + w <= 400 and 0 <= top and top + h <= 300
        # rounding w and h moves the area and ratio by at most a pixel's worth
        assert 0.08 * 120_000 * 0.97 <= w * h <= 120_000
        assert 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    # a very wide image falls back to the centre box of ratio 4/3
    left, top, w, h = random_resized_box(1000, 10, np.random.default_rng(1))
    assert (w, h) == (13, 10) and left == (1000 - 13) // 2


def test_normalisation_of_a_flat_image(tmp_path):
    write_imagenet(tmp_path, per_class=2, val_per_class=1)
    img = tmp_path / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    Image.fromarray(np.full((50, 70, 3), (255, 0, 128), dtype=np.uint8)).save(img.with_suffix(".png"))
    img.unlink()
    d = load_dataset(f"imagenet:{tmp_path}", size=16)
    x = d.test[0][0]
    expect = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), MEAN, STD)]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expect), atol=1e-4)


def test_bad_layouts_and_files(tmp_path):
    with pytest.raises(DataError, match="has no train/ or val/"):
        load_dataset(f"imagenet:{tmp_path}")
    write_imagenet(tmp_path, per_class=2, val_per_class=1)
    (tmp_path / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999 is not a class of train/"):
        load_dataset(f"imagenet:{tmp_path}")
    (tmp_path / "val" / "n99999999").rmdir()
    bad = tmp_path / "val" / WNIDS[1] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    d = load_dataset(f"imagenet:{tmp_path}", size=16)
    i = [str(f) for f in d.test.files].index(str(bad))
    with pytest.raises(DataError, match=r"broken.JPEG cannot be decoded") as e:
        d.test[i]
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="crops are square"):
        load_dataset(f"imagenet:{tmp_path}", size=(16, 24))
