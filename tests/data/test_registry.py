import numpy as np
import pytest
import torch

from layerwise.data import DatasetSplits, list_datasets, load_dataset, make_loader
from layerwise.errors import DataError, UnknownNameError


def test_list_datasets_shows_argument_placeholders():
    names = list_datasets()
    for n in ["digits", "basic-motions", "mnist1d", "aeon:NAME", "cifar10:DIR", "cifar100:DIR",
              "mnist:DIR", "tiny-imagenet:DIR", "uci-har:DIR", "mhealth:DIR"]:
        assert n in names


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError, match="digits.*mnist1d|Valid datasets: .*digits"):
        load_dataset("digitz")
    with pytest.raises(UnknownNameError, match="cifar10:DIR"):
        load_dataset("imagenet21k:/x")


def test_prefix_without_argument_says_how():
    with pytest.raises(DataError, match="cifar10:DIR"):
        load_dataset("cifar10")


def test_size_on_series_dataset_is_refused():
    with pytest.raises(DataError, match="image datasets only"):
        load_dataset("mnist1d", size=28)
    with pytest.raises(DataError, match="image datasets only"):
        load_dataset("basic-motions", channels=3)


def test_digits_native(checked):
    d = load_dataset("digits")
    assert isinstance(d, DatasetSplits)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10 and d.kind == "image"
    checked(d, sizes={"train": 1077, "val": 360, "test": 360})
    assert d.label == "digits[1x8x8]"
    assert "60/20/20" in d.info["split"] and "normalisation" in d.info


@pytest.mark.parametrize("size,channels,shape", [(28, None, (1, 28, 28)), (32, 3, (3, 32, 32)),
                                                 ((16, 12), 1, (1, 16, 12))])
def test_digits_resized(size, channels, shape, checked):
    d = load_dataset("digits", size=size, channels=channels)
    assert d.input_shape == shape
    x, y = d.train[0]
    assert tuple(x.shape) == shape and y.dtype == torch.int64
    checked(d)
    batch = next(iter(make_loader(d.val, batch_size=16)))
    assert tuple(batch[0].shape) == (16, *shape)


def test_digits_split_is_stratified_and_fixed():
    a, b = load_dataset("digits"), load_dataset("digits", seed=123)
    for k in ("train", "val", "test"):
        assert torch.equal(getattr(a, k).indices, getattr(b, k).indices)
    labels = a.train.labels
    whole = np.bincount(labels.numpy(), minlength=10) / len(labels)
    for k in ("train", "val", "test"):
        frac = np.bincount(labels[getattr(a, k).indices].numpy(), minlength=10) / len(getattr(a, k))
        assert np.abs(frac - whole).max() < 0.01


def test_invalid_size_and_channels():
    with pytest.raises(DataError, match="size"):
        load_dataset("digits", size=0)
    with pytest.raises(DataError, match="channels"):
        load_dataset("digits", channels=2)
