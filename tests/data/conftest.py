"""Shared checks for the dataset tests."""

import pytest
import torch
from torch.utils.data import TensorDataset

from layerwise.data.images import ImageDataset


def split_tensors(ds):
    if isinstance(ds, ImageDataset):
        return ds.tensors()
    if isinstance(ds, TensorDataset):
        return ds.tensors
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.stack(ys)


def check_splits(splits, sizes=None, atol=1e-4):
    """Shapes, label range, disjoint splits (no sample in two splits), train normalised."""
    tensors = {k: split_tensors(getattr(splits, k)) for k in ("train", "val", "test")}
    for k, (x, y) in tensors.items():
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == splits.input_shape, k
        assert int(y.min()) >= 0 and int(y.max()) < splits.num_classes
    if sizes is not None:
        assert {k: len(v[0]) for k, v in tensors.items()} == sizes
    rows = torch.cat([x.flatten(1) for x, _ in tensors.values()])
    assert len(torch.unique(rows, dim=0)) == len(rows), "a sample appears in two splits"
    if isinstance(splits.train, ImageDataset):
        for k in ("val", "test"):
            assert not set(getattr(splits, k).indices.tolist()) & set(splits.train.indices.tolist())
        assert not set(splits.val.indices.tolist()) & set(splits.test.indices.tolist())
    x = tensors["train"][0].double()
    dims = (0, 2, 3) if x.ndim == 4 else (0, 2)
    assert torch.allclose(x.mean(dims), torch.zeros(x.shape[1], dtype=x.dtype), atol=atol)
    assert torch.allclose(x.std(dims, unbiased=False), torch.ones(x.shape[1], dtype=x.dtype), atol=1e-3)
    return tensors


@pytest.fixture
def checked():
    return check_splits
