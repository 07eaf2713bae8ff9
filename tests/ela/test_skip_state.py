"""ELA's skip set is part of the model: saved with the weights, restored on load."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from torch.utils.data import Subset

from layerwise.data import load_dataset
from layerwise.ela import ElaConfig, train_ela
from layerwise.models import build_model
from layerwise.models.mrla import mrla_blocks
from layerwise.train import TrainConfig, predict
from layerwise.train.checkpoint import load_weights


@pytest.fixture(scope="module")
def tiny_digits():
    d = load_dataset("digits", size=8, channels=3)
    return dataclasses.replace(d, train=Subset(d.train, range(32)), val=Subset(d.val, range(16)),
                               test=Subset(d.test, range(64)))


def _skipped(model):
    return [n for n, b in mrla_blocks(model) if b.skip_attention]


def test_a_reloaded_ela_checkpoint_scores_what_the_trained_model_scored(tiny_digits, tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20-ela", tiny_digits.input_shape, tiny_digits.num_classes)
    res = train_ela(model, tiny_digits, TrainConfig(epochs=2, batch_size=16), ElaConfig(windows=((1, 1),), gamma=1.0),
                    out_dir=tmp_path)
    assert res.skipped, "the run must remove at least one layer for this test to mean anything"
    before = predict(model, tiny_digits.test)
    fresh = build_model("resnet20-ela", tiny_digits.input_shape, tiny_digits.num_classes)
    assert _skipped(fresh) == []
    load_weights(fresh, tmp_path / "checkpoint.pt")  # the file the training loop wrote
    assert _skipped(fresh) == res.skipped
    after = predict(fresh, tiny_digits.test)
    assert torch.equal(after.predicted, before.predicted)
    torch.testing.assert_close(after.logits, before.logits)
    # without the skip set the same weights give other outputs: the set is what made them equal
    for _, b in mrla_blocks(fresh):
        b.skip_attention = False
    assert not torch.allclose(predict(fresh, tiny_digits.test).logits, before.logits)


def test_the_skip_set_is_a_state_dict_buffer_and_old_state_dicts_load_as_none_skipped(caplog):
    model = build_model("resnet20-ela", (3, 8, 8), 10)
    dict(mrla_blocks(model))["layer2.1"].skip_attention = True
    state = model.state_dict()
    assert state["layer2.1.attention_skip"].item() is True and state["layer1.1.attention_skip"].item() is False
    again = build_model("resnet20-ela", (3, 8, 8), 10)
    again.load_state_dict(state)
    assert _skipped(again) == ["layer2.1"]
    old = {k: v for k, v in state.items() if not k.endswith("attention_skip")}
    dict(mrla_blocks(again))["layer3.1"].skip_attention = True
    with caplog.at_level(logging.WARNING, logger="layerwise.models.mrla"):
        again.load_state_dict(old)  # strict: the missing buffers are filled in, not an error
    assert _skipped(again) == []
    assert "no ELA skip set" in caplog.text and "no attention layer skipped" in caplog.text


def test_an_ela_checkpoint_saved_before_the_skip_set_existed_loads_with_nothing_skipped(tmp_path, caplog):
    import torch
    from layerwise.models import build_model
    from layerwise.train import load_weights
    model = build_model("resnet20-ela", (3, 32, 32), 10)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith(".attention_skip")}
    assert len(old) < len(model.state_dict())          # the buffers exist in the model
    path = tmp_path / "old.pt"
    torch.save(old, path)
    fresh = build_model("resnet20-ela", (3, 32, 32), 10)
    for k, v in fresh.state_dict().items():
        if k.endswith(".attention_skip"):
            v.fill_(True)
    with caplog.at_level("WARNING"):
        load_weights(fresh, path)
    skips = [v for k, v in fresh.state_dict().items() if k.endswith(".attention_skip")]
    assert skips and not any(bool(v.any()) for v in skips)
    assert "no ELA skip set" in caplog.text
