"""iter_batches: tuple, dict and tensor batches, map-style and iterable loaders, clear errors."""

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from layerwise.data.batches import BatchKeys, first_input, iter_batches
from layerwise.errors import DataError

X = torch.arange(24, dtype=torch.float32).reshape(6, 4)
Y = torch.tensor([0, 1, 2, 0, 1, 2])


class DictSet(torch.utils.data.Dataset):
    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return {"pixels": X[i], "label": int(Y[i])}


class Stream(IterableDataset):
    def __iter__(self):
        yield from zip(X, Y)


def test_tuple_batches_stream_in_order():
    got = list(iter_batches(DataLoader(TensorDataset(X, Y), batch_size=4)))
    assert [x.shape[0] for x, _ in got] == [4, 2]
    assert torch.equal(torch.cat([x for x, _ in got]), X) and torch.equal(torch.cat([y for _, y in got]), Y)


def test_dict_batches_with_keys_and_int_targets_become_tensors():
    got = list(iter_batches(DataLoader(DictSet(), batch_size=5), BatchKeys("pixels", "label")))
    assert torch.equal(torch.cat([x for x, _ in got]), X) and torch.equal(torch.cat([y for _, y in got]), Y)


def test_dict_batches_without_keys_name_the_keys():
    with pytest.raises(DataError, match=r"\['label', 'pixels'\].*input_key"):
        list(iter_batches(DataLoader(DictSet(), batch_size=5)))
    with pytest.raises(DataError, match="no key 'image'"):
        list(iter_batches(DataLoader(DictSet(), batch_size=5), BatchKeys("image")))


def test_iterable_loader_and_max_batches():
    got = list(iter_batches(DataLoader(Stream(), batch_size=2), max_batches=2))
    assert len(got) == 2 and torch.equal(got[1][0], X[2:4])


def test_tensor_batches_have_no_targets_and_need_targets_refuses():
    loader = DataLoader(X, batch_size=3)
    assert [y for _, y in iter_batches(loader)] == [None, None]
    with pytest.raises(DataError, match="needs targets"):
        list(iter_batches(loader, need_targets=True))


def test_empty_loader_and_bare_dataset_are_refused():
    with pytest.raises(DataError, match="no batch"):
        list(iter_batches(DataLoader(TensorDataset(X[:0], Y[:0]), batch_size=2)))
    with pytest.raises(DataError, match="got a Dataset"):
        list(iter_batches(TensorDataset(X, Y)))


def test_first_input_is_one_sample():
    assert torch.equal(first_input(DataLoader(TensorDataset(X, Y), batch_size=4)), X[:1])
