"""Bad input at the API: one-line LayerwiseError subclasses that name the problem and the fix, and
nothing on disk changed. Checkpoint fields, checkpoints of another run, TrainConfig values,
load_dataset arguments, model/dataset class-count mismatches; hypothesis fuzzing of the
checkpoint loader (only CheckpointError comes out)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from layerwise.data import load_dataset
from layerwise.data.base import DatasetSplits
from layerwise.errors import CheckpointError, ConfigError, DataError, LayerwiseError, ShapeMismatchError
from layerwise.train import TrainConfig, evaluate, load_checkpoint, load_weights, train
from layerwise.train.checkpoint import dataset_identity

DIM, CLASSES = 8, 4
CONFIG = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=3)  # 10 batches per epoch


def make_splits(name: str = "blobs", n_train: int = 320, seed: int = 0, classes: int = CLASSES) -> DatasetSplits:
    gen = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(classes, DIM, generator=gen)

    def split(n: int) -> TensorDataset:
        y = torch.randint(0, classes, (n,), generator=gen)
        return TensorDataset((centers[y] + 0.7 * torch.randn(n, DIM, generator=gen)).float(), y.long())

    return DatasetSplits(name=name, train=split(n_train), val=split(128), test=split(128), input_shape=(DIM,),
                         num_classes=classes, kind="series")


def make_model(seed: int = 0, out: int = CLASSES, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(DIM, 32), nn.BatchNorm1d(32), act(), nn.Dropout(0.2), nn.Linear(32, out))


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def splits() -> DatasetSplits:
    return make_splits()


def stop_before_epoch(k: int):
    """A progress factory that raises KeyboardInterrupt (as Ctrl-C) before the first batch of epoch k."""
    calls = itertools.count()

    def factory(iterable, total=None, desc=None, leave=False):
        if next(calls) == k:
            raise KeyboardInterrupt
        return iterable

    return factory


@pytest.fixture(scope="module")
def run_dir(splits, tmp_path_factory) -> Path:
    """A run of CONFIG stopped after 2 of its 3 epochs."""
    out = tmp_path_factory.mktemp("run")
    result = train(make_model(0), splits, CONFIG, out_dir=out, progress=stop_before_epoch(2))
    assert result.interrupted and result.epochs_completed == 2
    return out


@pytest.fixture(scope="module")
def valid_ck(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def reference(splits) -> dict:
    model = make_model(0)
    train(model, splits, CONFIG)
    return state_of(model)


def resume_fails(tmp_path: Path, ck: dict, splits, config: TrainConfig = CONFIG, **kw) -> str:
    """Save ``ck`` as the run's checkpoint, resume: CheckpointError, file and model untouched."""
    path = tmp_path / "checkpoint.pt"
    torch.save(ck, path)
    before = digest(path)
    model = make_model(7)
    untouched = state_of(model)
    with pytest.raises(CheckpointError) as info:
        train(model, splits, config, out_dir=tmp_path, resume=True, **kw)
    assert digest(path) == before, "the checkpoint on disk changed"
    assert same_state(state_of(model), untouched), "the model was half-loaded"
    return one_line(info.value)


# ---- 1. every checkpoint field is checked -----------------------------------------------------------

def _set(*keys, value):
    def fn(ck):
        node = ck
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value(node[keys[-1]]) if callable(value) else value
    return fn


def _param0(ck):  # optimizer state of the first parameter (0.weight, 32 x 8)
    return ck["optimizer"]["state"][0]


FIELD_CASES = {
    "epoch str": (_set("epoch", value="x"), "'epoch' is 'x', not an integer >= 0"),
    "epoch float": (_set("epoch", value=2.0), "'epoch' is 2.0, not an integer"),
    "epoch bool": (_set("epoch", value=True), "'epoch' is True"),
    "epoch negative": (_set("epoch", value=-1), "'epoch' is -1"),
    "epoch beyond history": (_set("epoch", value=5), "'history' holds 2 epoch records but 'epoch' is 5"),
    "step str": (_set("step", value="3"), "'step' is '3'"),
    "step past the epoch": (_set("step", value=11), "'step' is 11, but an epoch of 320 samples has 10 batches"),
    "history str": (_set("history", value="abc"), "'history' is 'abc', not a list of epoch records"),
    "history record missing fields": (_set("history", value=[{"epoch": 0}, {"epoch": 1}]),
                                      "'history[0]' does not hold the epoch-record fields (missing train_loss"),
    "history extra field": (_set("history", 1, value=lambda h: {**h, "bogus": 1}), "unexpected bogus"),
    "history value str": (_set("history", 0, "val_acc", value="x"), "'history[0].val_acc' is 'x'"),
    "history accuracy range": (_set("history", 1, "train_acc", value=1.5), "'history[1].train_acc' is 1.5, outside"),
    "history nan": (_set("history", 1, "val_loss", value=float("nan")), "'history[1].val_loss' is nan"),
    "history order": (_set("history", 1, "epoch", value=0), "'history[1].epoch' is 0, expected 1"),
    "rng wrong size": (_set("rng", "torch", value=torch.zeros(10, dtype=torch.uint8)),
                       "'rng.torch' is a torch.uint8 tensor of shape (10,), not the 5056-byte"),
    "rng wrong dtype": (_set("rng", "torch", value=lambda t: t.float()), "'rng.torch' is a torch.float32 tensor"),
    "rng str": (_set("rng", value="seed"), "'rng' is 'seed', not a dict of RNG states"),
    "rng cuda": (_set("rng", "cuda", value=["x"]), "'rng.cuda' is ['x'], not a list of uint8 CUDA generator states"),
    "partial str": (_set("partial", "loss_sum", value="a"), "'partial.loss_sum' is 'a', not a finite number"),
    "partial key": (_set("partial", "bogus", value=1.0), "'partial.bogus' is not one of"),
    "partial negative": (_set("partial", "seen", value=-3.0), "'partial.seen' is -3.0, not a finite number >= 0"),
    "partial correct": (_set("partial", value={"correct": 5.0, "seen": 2.0}), "exceeds 'partial.seen'"),
    "config str": (_set("config", value="abc"), "'config' is 'abc', not a dict of TrainConfig fields"),
    "config epochs": (_set("config", "epochs", value=2.5), "'config' does not hold a valid TrainConfig (invalid "
                      "training config: epochs=2.5 is not an integer"),
    "config lr": (_set("config", "lr", value=-1.0), "lr=-1.0"),
    "model list": (_set("model", value=[1, 2]), "'model' is [1, 2], not a non-empty state_dict"),
    "model value": (_set("model", "0.weight", value="w"), "'model' entry '0.weight' is 'w', not a tensor"),
    "model nan": (_set("model", "0.weight", value=lambda t: t * float("nan")), "'model.0.weight' holds NaN or inf"),
    "model shape": (_set("model", "4.weight", value=torch.zeros(3, 32)), "4.weight is (3, 32) in the file but (4, 32)"),
    "optimizer str": (_set("optimizer", value="abc"), "'optimizer' is 'abc', not an optimizer state_dict"),
    "optimizer no groups": (_set("optimizer", "param_groups", value=[]), "'optimizer.param_groups' is an empty list, not"),
    "optimizer params": (_set("optimizer", "param_groups", 0, "params", value="x"),
                         "'optimizer.param_groups[0].params' is 'x'"),
    "optimizer group count": (_set("optimizer", "param_groups", 0, "params", value=lambda p: p + [6]),
                              "lists 7 parameters, the model has 6"),
    "optimizer state key": (_set("optimizer", "state", value=lambda s: {**s, 99: {}}),
                            "'optimizer.state' key 99 is not a parameter index"),
    "optimizer state shape": (lambda ck: _param0(ck).update(exp_avg=torch.zeros(3)),
                              "'optimizer.state[0].exp_avg' is a torch.float32 tensor of shape (3,), the parameter "
                              "is (32, 8)"),
    "optimizer state dtype": (lambda ck: _param0(ck).update(exp_avg_sq=torch.zeros(32, 8, dtype=torch.long)),
                              "'optimizer.state[0].exp_avg_sq' is a torch.int64 tensor"),
    "optimizer state nan": (lambda ck: _param0(ck).update(exp_avg=torch.full((32, 8), float("inf"))),
                            "'optimizer.state[0].exp_avg' holds NaN or inf"),
    "optimizer foreign state": (lambda ck: _param0(ck).update(momentum_buffer=torch.zeros(32, 8)),
                                "'optimizer.state[0].momentum_buffer' is not part of the adam optimizer's state"),
    "optimizer step": (lambda ck: _param0(ck).update(step=torch.tensor(-1.0)), "'optimizer.state[0].step' is"),
    "optimizer missing moment": (lambda ck: _param0(ck).pop("exp_avg_sq"), "lacks step, exp_avg or exp_avg_sq"),
    "optimizer lr": (_set("optimizer", "param_groups", 0, "lr", value=-0.1), "'optimizer.param_groups[0].lr' is"),
    "optimizer betas": (_set("optimizer", "param_groups", 0, "betas", value=(0.9,)),
                        "'optimizer.param_groups[0].betas' is (0.9,), expected a value like (0.9, 0.999)"),
    "optimizer betas range": (_set("optimizer", "param_groups", 0, "betas", value=(0.9, 2.0)),
                              "'optimizer.param_groups[0].betas' is (0.9, 2.0), not two numbers in [0, 1)"),
    "optimizer neither": (lambda ck: ck["optimizer"]["param_groups"][0].pop("betas"),
                          "'optimizer.param_groups' hold neither Adam nor SGD hyper-parameters"),
    "scheduler str": (_set("scheduler", value="abc"), "'scheduler' is 'abc', not a scheduler state_dict"),
    "scheduler epoch": (_set("scheduler", "last_epoch", value=1), "'scheduler.last_epoch' is 1, but 'epoch' is 2"),
    "scheduler T_max": (_set("scheduler", "T_max", value="x"), "'scheduler.T_max' is 'x', expected a value like 3"),
    "scheduler T_max range": (_set("scheduler", "T_max", value=0), "'scheduler.T_max' is 0, not an integer >= 1"),
    "scheduler kind": (_set("scheduler", value={"milestones": {1: 1}, "gamma": 0.1, "base_lrs": [0.01],
                                                 "last_epoch": 2}),
                       "'scheduler' is a step schedule, this run uses 'cosine'; resume with --schedule step"),
    "global_batch": (_set("global_batch", value=0), "'global_batch' is 0, not an integer >= 1"),
    "world_size": (_set("world_size", value="2"), "'world_size' is '2'"),
    "run str": (_set("run", value="x"), "'run' is 'x', not a dict of model, architecture"),
    "run seed": (_set("run", "seed", value="3"), "'run.seed' is '3', not an integer >= 0"),
    "format": (_set("format", value="layerwise.checkpoint/9"), "has format 'layerwise.checkpoint/9'"),
}


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_bad_checkpoint_field_is_one_checkpoint_error(case, valid_ck, splits, tmp_path):
    fn, words = FIELD_CASES[case]
    ck = copy.deepcopy(valid_ck)
    fn(ck)
    msg = resume_fails(tmp_path, ck, splits)
    assert words in msg
    assert "checkpoint.pt" in msg


def test_sgd_resume_of_an_adam_run(run_dir, valid_ck, splits, tmp_path, caplog, reference):
    """Was ``KeyError: 'momentum'`` at the first step."""
    sgd = dataclasses.replace(CONFIG, optimizer="sgd", lr=0.1)
    msg = resume_fails(tmp_path, copy.deepcopy(valid_ck), splits, sgd)
    assert "belongs to another run (optimizer 'adam' -> 'sgd')" in msg and "--resume-any" in msg
    older = {k: v for k, v in copy.deepcopy(valid_ck).items() if k not in ("run", "config")}  # no run record
    msg = resume_fails(tmp_path, older, splits, sgd)
    assert "'optimizer' is the state of adam, this run uses sgd; resume with --optimizer adam" in msg
    # allowed: the weights continue under a fresh SGD optimizer and the cosine schedule at epoch 3
    torch.save(valid_ck, tmp_path / "checkpoint.pt")
    model = make_model(5)
    with caplog.at_level(logging.WARNING, logger="layerwise.train.loop"):
        result = train(model, splits, sgd, out_dir=tmp_path, resume=True, allow_foreign_checkpoint=True)
    assert not result.interrupted and result.epochs_completed == 3
    assert result.history[2].lr == pytest.approx(0.1 * (1 + np.cos(np.pi * 2 / 3)) / 2)
    assert any("optimizer adam -> sgd" in r.getMessage() for r in caplog.records)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["run"]["optimizer"] == "sgd" and "momentum" in ck["optimizer"]["param_groups"][0]


# ---- 2. a checkpoint of another run is refused unless allowed -------------------------------------

class OtherNet(nn.Sequential):
    pass


FOREIGN = {
    "seed": (lambda: (make_model(0), make_splits(), dataclasses.replace(CONFIG, seed=4)), "seed 3 -> 4"),
    "dataset": (lambda: (make_model(0), make_splits(name="other"), CONFIG), "dataset 'blobs' -> 'other'"),
    "dataset size": (lambda: (make_model(0), make_splits(n_train=352), CONFIG), "train size 320 -> 352"),
    "architecture": (lambda: (make_model(0, act=nn.GELU), make_splits(), CONFIG),
                     "architecture (layer types or parameter shapes) differs"),
    "model class": (lambda: (OtherNet(*make_model(0)), make_splits(), CONFIG),
                    "another run (model 'Sequential' -> 'OtherNet')"),
    "optimizer": (lambda: (make_model(0), make_splits(), dataclasses.replace(CONFIG, optimizer="sgd")),
                  "optimizer 'adam' -> 'sgd'"),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_checkpoint_of_another_run_is_refused(case, run_dir, tmp_path, caplog):
    build, words = FOREIGN[case]
    (tmp_path / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    before = digest(tmp_path / "checkpoint.pt")
    model, data, config = build()
    untouched = state_of(model)
    with pytest.raises(CheckpointError) as info:
        train(model, data, config, out_dir=tmp_path, resume=True)
    msg = one_line(info.value)
    assert "belongs to another run" in msg and words in msg
    assert "--resume-any" in msg and "allow_foreign_checkpoint=True" in msg
    assert digest(tmp_path / "checkpoint.pt") == before and same_state(state_of(model), untouched)
    with caplog.at_level(logging.WARNING, logger="layerwise.train.loop"):
        result = train(model, data, config, out_dir=tmp_path, resume=True, allow_foreign_checkpoint=True)
    assert result.epochs_completed == 3 and not result.interrupted
    assert any("written by another run" in r.getMessage() and words in r.getMessage() for r in caplog.records)


def test_older_checkpoint_without_run_record_resumes_exactly_with_a_warning(valid_ck, splits, tmp_path, caplog,
                                                                             reference):
    old = {k: v for k, v in valid_ck.items() if k != "run"}
    torch.save(old, tmp_path / "checkpoint.pt")
    model = make_model(9)
    with caplog.at_level(logging.WARNING, logger="layerwise.train.loop"):
        train(model, splits, CONFIG, out_dir=tmp_path, resume=True)
    assert any("predates run records" in r.getMessage() for r in caplog.records)
    assert same_state(state_of(model), reference)
    assert "run" in load_checkpoint(tmp_path / "checkpoint.pt")  # rewritten with a run record
    torch.save(old, tmp_path / "checkpoint.pt")  # the older file still knows its seed (from its config)
    with pytest.raises(CheckpointError, match="seed 3 -> 5"):
        train(make_model(9), splits, dataclasses.replace(CONFIG, seed=5), out_dir=tmp_path, resume=True)


def test_dataset_identity_ignores_the_data_folder():
    assert dataset_identity("cifar10:/data/a") == dataset_identity("cifar10:/mnt/b") == "cifar10:DIR"
    assert dataset_identity("aeon:BasicMotions") != dataset_identity("aeon:Epilepsy")
    assert dataset_identity("digits") == "digits"


def test_resume_rejects_a_non_bool_allow_flag(splits, tmp_path):
    with pytest.raises(LayerwiseError, match="allow_foreign_checkpoint='yes'"):
        train(make_model(), splits, CONFIG, out_dir=tmp_path, allow_foreign_checkpoint="yes")  # type: ignore


# ---- 4. TrainConfig.validate --------------------------------------------------------------------

CONFIG_CASES = [
    ({"momentum": -0.1}, "momentum=-0.1; use a value in [0, 1)"),
    ({"momentum": 1.5}, "momentum=1.5"),
    ({"weight_decay": -1e-4}, "weight_decay=-0.0001; use 0 or a small positive"),
    ({"epochs": 2.5}, "epochs=2.5 is not an integer"),
    ({"epochs": "3"}, "epochs='3' is not an integer"),
    ({"epochs": -1}, "epochs=-1; use 0 or more"),
    ({"batch_size": 0}, "batch_size=0; use 1 or more"),
    ({"batch_size": 32.0}, "batch_size=32.0 is not an integer"),
    ({"lr": 0.0}, "lr=0.0; use a positive finite learning rate"),
    ({"lr": -1}, "lr=-1"),
    ({"lr": float("nan")}, "lr=nan"),
    ({"lr": float("inf")}, "lr=inf"),
    ({"lr": "0.1"}, "lr='0.1'"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0; use a value in [0, 1)"),
    ({"label_smoothing": -0.1}, "label_smoothing=-0.1"),
    ({"grad_clip": 0.0}, "grad_clip=0.0; use a positive finite norm"),
    ({"grad_clip": -1.0}, "grad_clip=-1.0"),
    ({"grad_clip": float("inf")}, "grad_clip=inf"),
    ({"step_gamma": 0.0}, "step_gamma=0.0; use a factor in (0, 1]"),
    ({"step_milestones": (2, "x")}, "step_milestones=(2, 'x')"),
    ({"step_milestones": 3}, "step_milestones=3"),
    ({"seed": -1}, "seed=-1; use 0 or more"),
    ({"seed": 1.5}, "seed=1.5 is not an integer"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'; use 'sgd' or 'adam'"),
    ({"schedule": "linear"}, "schedule='linear'"),
    ({"device": None}, "device=None; use 'cpu' or 'cuda'"),
    ({"momentum": True}, "momentum=True"),
]


@pytest.mark.parametrize("fields,words", CONFIG_CASES, ids=[next(iter(f)) + "=" + repr(next(iter(f.values())))
                                                            for f, _ in CONFIG_CASES])
def test_bad_train_config_is_one_line(fields, words, splits, tmp_path):
    config = TrainConfig(**{**dataclasses.asdict(CONFIG), **fields})
    with pytest.raises(ConfigError) as info:
        config.validate()
    msg = one_line(info.value)
    assert msg.startswith("invalid training config: ") and words in msg
    with pytest.raises(LayerwiseError, match="invalid training config"):
        train(make_model(), splits, config, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_good_train_configs_pass():
    for fields in ({"momentum": 0.0}, {"weight_decay": 0}, {"epochs": np.int64(2)}, {"grad_clip": 1},
                   {"step_milestones": [1, 2]}, {"step_gamma": 1.0}, {"lr": np.float32(0.1)}):
        TrainConfig(**{**dataclasses.asdict(CONFIG), **fields}).validate()
    assert TrainConfig.from_dict({"epochs": 4, "step_milestones": [2], "unknown": 1}).step_milestones == (2,)


# ---- 5. load_dataset arguments ------------------------------------------------------------------

DATASET_CASES = [
    ((None,), {}, "dataset name None is not a string (NoneType): pass a registry name such as 'digits'"),
    ((5,), {}, "dataset name 5 is not a string (int)"),
    (("",), {}, "dataset name is empty"),
    (("digits",), {"size": 28.0}, "size=28.0 is not valid: pass one positive integer (e.g. 32) or a pair"),
    (("digits",), {"size": "28"}, "size='28' is not valid"),
    (("digits",), {"size": (28,)}, "size=(28,) is not valid"),
    (("digits",), {"size": (28, 28.5)}, "size=(28, 28.5) is not valid"),
    (("digits",), {"size": 0}, "size=0 is out of range: each side must be between 1 and 1024 pixels"),
    (("digits",), {"size": 100_000}, "size=100000 is out of range: each side must be between 1 and 1024"),
    (("digits",), {"size": (16, 4096)}, "size=(16, 4096) is out of range"),
    (("digits",), {"channels": 0}, "channels=0 is not valid: pass 1 (grey) or 3 (RGB)"),
    (("digits",), {"channels": 3.0}, "channels=3.0 is not valid"),
    (("digits",), {"channels": True}, "channels=True is not valid"),
    (("digits",), {"channels": 2}, "cannot convert 1-channel images to 2 channels"),
    (("digits",), {"seed": -1}, "seed=-1 is not valid: pass a non-negative integer"),
    (("digits",), {"seed": "0"}, "seed='0' is not valid"),
]


@pytest.mark.parametrize("args,kwargs,words", DATASET_CASES, ids=[f"{a}{k}" for a, k, _ in DATASET_CASES])
def test_bad_load_dataset_arguments_are_one_data_error(args, kwargs, words):
    with pytest.raises(DataError) as info:
        load_dataset(*args, **kwargs)
    assert words in one_line(info.value)


def test_load_dataset_accepts_numpy_ints_and_lists():
    assert load_dataset("digits", size=np.int64(12)).input_shape == (1, 12, 12)
    assert load_dataset("digits", size=[12, 10], channels=np.int32(3)).input_shape == (3, 12, 10)


# ---- 6. model output width vs the dataset's classes ---------------------------------------------

def test_model_with_too_few_classes_fails_up_front(splits, tmp_path):
    model = make_model(0, out=3)
    before = state_of(model)
    with pytest.raises(ShapeMismatchError) as info:
        train(model, splits, CONFIG, out_dir=tmp_path)
    msg = one_line(info.value)
    assert "the model outputs shape (32, 3)" in msg and "dataset blobs has 4 classes" in msg
    assert "num_classes=4" in msg
    assert list(tmp_path.iterdir()) == []  # no checkpoint written
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if not k.startswith("1."))
    with pytest.raises(ShapeMismatchError, match="outputs 3 classes but the data has label 3"):
        evaluate(model, splits.test)


def test_model_with_too_many_classes_fails_in_train(splits):
    with pytest.raises(ShapeMismatchError, match=r"outputs shape \(32, 6\).*has 4 classes"):
        train(make_model(0, out=6), splits, CONFIG)


def test_five_class_model_on_ten_class_digits():
    from layerwise.models import build_model

    data = load_dataset("digits", size=28)
    model = build_model("tiny-cnn", data.input_shape, 5)
    with pytest.raises(ShapeMismatchError, match="dataset digits has 10 classes: build the model with num_classes=10"):
        train(model, data, TrainConfig(epochs=1))
    with pytest.raises(ShapeMismatchError, match="outputs 5 classes but the data has label"):
        evaluate(model, data.test)


def test_labels_beyond_the_declared_classes_are_a_data_error(splits):
    bad = dataclasses.replace(splits, num_classes=3)
    with pytest.raises(DataError, match=r"the train split of dataset blobs has label 3, outside 0\.\.2"):
        train(make_model(0, out=3), bad, CONFIG)


# ---- fuzzing the checkpoint loader ----------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4000))
def test_fuzz_random_bytes_into_the_checkpoint_loader(tmp_path, data):
    path = tmp_path / "fuzz.pt"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    one_line(info.value)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10 ** 7), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 10 ** 7))
def test_fuzz_mutated_checkpoint_bytes(run_dir, tmp_path, edits, cut):
    """Byte edits (and truncation) of a valid checkpoint: it loads (and then passes every check) or
    it is a CheckpointError; load_weights likewise."""
    data = bytearray((run_dir / "checkpoint.pt").read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path / "fuzz.pt"
    path.write_bytes(bytes(data))
    for load in (load_checkpoint, lambda p: load_weights(make_model(0), p)):
        try:
            load(path)
        except CheckpointError as exc:
            one_line(exc)


def _tensor_values():
    shapes = st.lists(st.integers(0, 4), max_size=3)
    dtypes = st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool])
    fill = st.sampled_from([0.0, 1.0, -1.0, float("nan"), float("inf")])
    return st.builds(lambda s, d, f: torch.full(s, f).to(d) if d.is_floating_point else torch.zeros(s, dtype=d),
                     shapes, dtypes, fill)


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=6) | _tensor_values(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(-2, 10), inner,
                                                                 max_size=3),
    max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


RUNS = itertools.count()  # hypothesis reseeds `random` for every example: a counter names the folders


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_fuzz_forged_checkpoint_fields_then_resume(valid_ck, splits, tmp_path, data):
    """Any field of a valid checkpoint replaced (or deleted) by any value: resuming from it either
    trains to the end or raises CheckpointError; never another exception, never a changed file."""
    ck = copy.deepcopy(valid_ck)
    paths = [p for p in _paths(ck) if p]
    path = data.draw(st.sampled_from(paths))
    node = ck
    for k in path[:-1]:
        node = node[k]
    if isinstance(node, tuple):  # betas: rebuild the tuple
        return
    if isinstance(node, dict) and data.draw(st.booleans()):
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(VALUES)
    out = tmp_path / f"run{next(RUNS)}"
    out.mkdir()
    buf = io.BytesIO()
    torch.save(ck, buf)
    (out / "checkpoint.pt").write_bytes(buf.getvalue())
    try:
        result = train(make_model(1), splits, CONFIG, out_dir=out, resume=True)
    except CheckpointError as exc:
        one_line(exc)
        assert (out / "checkpoint.pt").read_bytes() == buf.getvalue()
    else:
        assert result.epochs_completed == 3
