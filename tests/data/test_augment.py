"""Training augmentation: random crop with zero padding, flips only where the data allows them,
the same draws for the same batch position (exact resume)."""

from __future__ import annotations

import pytest
import torch

from layerwise.data.augment import augment_batch, batch_generator
from layerwise.errors import LayerwiseError


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, pad=2, hflip=False, generator=g)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        # some window of the padded image, found by an explicit search
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(padded[i, :, dy:dy + 5, dx:dx + 5], out[i])]
        assert hits, "the output is not a window of the padded image"


def test_flip_mirrors_left_right_and_pad_zero_keeps_the_image():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = augment_batch(x, pad=0, hflip=True, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, x[0].flip(-1)) for o in out]
    kept = [torch.equal(o, x[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54                      # about half of 64
    assert torch.equal(augment_batch(x, pad=0, hflip=False), x)


def test_same_batch_position_same_augmentation():
    x = torch.randn(8, 3, 6, 6)
    a = augment_batch(x, pad=4, hflip=True, generator=batch_generator(3, 2, 7))
    b = augment_batch(x, pad=4, hflip=True, generator=batch_generator(3, 2, 7))
    c = augment_batch(x, pad=4, hflip=True, generator=batch_generator(3, 2, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_series_batches_are_refused_with_the_fix():
    with pytest.raises(LayerwiseError, match="drop --augment"):
        augment_batch(torch.zeros(4, 6, 100))


def test_resume_with_augmentation_is_exact(tmp_path):
    # interrupted after epoch 1 and resumed = uninterrupted, with augmentation on
    from layerwise.data import load_dataset
    from layerwise.models import build_model
    from layerwise.train import TrainConfig, train

    data = load_dataset("digits", size=16)
    cfg1 = TrainConfig(epochs=1, batch_size=64, augment=True, seed=2, schedule="none")
    cfg2 = TrainConfig(epochs=2, batch_size=64, augment=True, seed=2, schedule="none")
    torch.manual_seed(0)
    a = build_model("tiny-cnn", (1, 16, 16), 10)
    torch.manual_seed(0)
    b = build_model("tiny-cnn", (1, 16, 16), 10)
    train(a, data, cfg2, out_dir=tmp_path / "a")
    train(b, data, cfg1, out_dir=tmp_path / "b")
    train(b, data, cfg2, out_dir=tmp_path / "b", resume=True)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)


def test_the_flag_changes_what_is_trained(tmp_path):
    from layerwise.data import load_dataset
    from layerwise.models import build_model
    from layerwise.train import TrainConfig, train

    data = load_dataset("digits", size=16)
    out = []
    for aug in (False, True):
        torch.manual_seed(0)
        m = build_model("tiny-cnn", (1, 16, 16), 10)
        train(m, data, TrainConfig(epochs=1, batch_size=64, augment=aug, seed=2))
        out.append(m.state_dict())
    assert any(not torch.equal(a, b) for a, b in zip(out[0].values(), out[1].values()))
    with pytest.raises(LayerwiseError, match="augment"):
        TrainConfig(augment="yes").validate()
