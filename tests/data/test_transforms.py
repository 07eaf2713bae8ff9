import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.data.splits import fixed_split
from layerwise.data.transforms import convert_images


def test_three_to_one_is_luminance():
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.25
    out = convert_images(x, None, 1)
    assert out.shape == (1, 1, 4, 4)
    assert torch.allclose(out, torch.full_like(out, 0.299 + 0.587 * 0.5 + 0.114 * 0.25))


def test_one_to_three_repeats():
    x = torch.rand(2, 1, 5, 5)
    out = convert_images(x, None, 3)
    assert out.shape == (2, 3, 5, 5) and all(torch.equal(out[:, c], x[:, 0]) for c in range(3))


def test_shrinking_is_antialiased():
    # every 4th column lit: plain bilinear 16 -> 4 samples between unlit columns and sees 0,
    # antialiasing averages the footprint and sees about 1/4
    x = (torch.arange(16) % 4 == 0).float().expand(1, 1, 16, 16).contiguous()
    aliased = torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    assert aliased.abs().max() == 0
    out = convert_images(x, (4, 4), None)
    assert torch.allclose(out[..., 1:3], torch.full_like(out[..., 1:3], 0.25), atol=0.05)


def test_constant_image_stays_constant_when_resized():
    x = torch.full((1, 3, 8, 8), 0.7)
    assert torch.allclose(convert_images(x, (32, 32), None), torch.full((1, 3, 32, 32), 0.7))


@settings(max_examples=30, deadline=None)
@given(n_per_class=st.integers(4, 30), n_classes=st.integers(2, 5), frac=st.floats(0.1, 0.5))
def test_fixed_split_partitions_and_is_deterministic(n_per_class, n_classes, frac):
    y = np.repeat(np.arange(n_classes), n_per_class)
    a_keep, a_held, _ = fixed_split(y, frac)
    b_keep, b_held, _ = fixed_split(y, frac)
    assert np.array_equal(a_keep, b_keep) and np.array_equal(a_held, b_held)
    assert sorted(np.concatenate([a_keep, a_held]).tolist()) == list(range(len(y)))
    assert len(a_held) == int(np.ceil(frac * len(y)))


def test_fixed_split_falls_back_when_a_class_is_a_singleton():
    y = np.array([0] * 10 + [1])
    keep, held, stratified = fixed_split(y, 3)
    assert not stratified and len(held) == 3 and len(keep) == 8
