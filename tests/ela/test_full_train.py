"""``layerwise ela --full-train``: train on train + val (the whole training split), on generated data."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from layerwise.data.base import DatasetSplits
from layerwise.data.images import build_image_splits
from layerwise.errors import LayerwiseError
from layerwise.experiments import ela_run
from layerwise.experiments.common import RunSpec
from layerwise.experiments.ela_run import ElaOptions, ela_data, whole_train_split


def _generated(n_train=40, n_val=10, n_test=12) -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    n = n_train + n_val + n_test
    raw = torch.randint(0, 256, (n, 1, 6, 6), generator=gen, dtype=torch.uint8)
    labels = np.arange(n) % 5
    idx = np.random.default_rng(0).permutation(n)
    splits = {"train": idx[:n_train], "val": idx[n_train:n_train + n_val], "test": idx[n_train + n_val:]}
    return build_image_splits("generated", raw, labels, splits, num_classes=5, classes=None, info={})


def _samples(ds) -> set[bytes]:
    return {ds[i][0].numpy().tobytes() + bytes([int(ds[i][1])]) for i in range(len(ds))}


def test_whole_train_split_trains_on_every_train_and_val_sample_and_leaves_test_alone():
    data = _generated()
    full = whole_train_split(data)
    assert len(full.train) == 50
    assert _samples(full.train) == _samples(data.train) | _samples(data.val)
    assert _samples(full.test) == _samples(data.test) and not (_samples(full.train) & _samples(full.test))
    assert full.val is data.val  # still monitored, but now inside the training set
    assert "not held out" in full.info["full_train"]
    xs, _ = zip(*full.train.__getitems__([0, 45]))  # batched reads still work on the merged set
    assert xs[0].shape == (1, 6, 6)


def test_whole_train_split_of_plain_tensor_datasets():
    data = _generated()
    t = DatasetSplits("t", TensorDataset(torch.zeros(7, 2), torch.zeros(7, dtype=torch.long)),
                      TensorDataset(torch.ones(3, 2), torch.ones(3, dtype=torch.long)), data.test,
                      (2,), 2, "series")
    full = whole_train_split(t)
    assert len(full.train) == 10 and float(sum(full.train[i][0].sum() for i in range(10))) == 6.0


def test_ela_data_full_train_cuts_only_the_monitored_val_and_refuses_a_train_limit(monkeypatch):
    data = _generated(n_val=20)
    seen = []

    def fake_load(spec):
        seen.append(spec)
        return data
    monkeypatch.setattr(ela_run, "load_data_for_model", fake_load)
    spec = RunSpec(model="resnet20", dataset="generated", val_limit=5)
    out = ela_data(spec, ElaOptions(full_train=True))
    assert seen[-1].val_limit is None  # the whole val joins train, not the cut one
    assert len(out.train) == 60 and len(out.val) == 5
    assert len(ela_data(spec, ElaOptions()).train) == 40  # the default: train only
    with pytest.raises(LayerwiseError, match="drop --train-limit"):
        ela_data(RunSpec(model="resnet20", dataset="generated", train_limit=30), ElaOptions(full_train=True))


def test_the_cli_flag_reaches_the_options():
    p = argparse.ArgumentParser()
    ela_run.add_arguments(p)
    args = p.parse_args(["--model", "resnet20", "--dataset", "digits", "--full-train"])
    assert ela_run.options_from_args(args).full_train is True
    args = p.parse_args(["--model", "resnet20", "--dataset", "digits"])
    assert ela_run.options_from_args(args).full_train is False
    assert ela_run.options_from_args(args).values == "sum"
