"""The A_l of eq. (1): probe score, log normalisation, the cache shared by both metrics."""

import math

import pytest
import torch
from torch import nn
from hypothesis import given, settings
from hypothesis import strategies as st

from layerwise.adalayer import AdaLayerConfig, normalise
from layerwise.adalayer.importance import probe_score
from layerwise.adalayer.pipeline import analyse
from layerwise.adalayer.uniform import UniformCandidate, same_size
from layerwise.errors import LayerwiseError


def test_log_normalisation_on_hand_worked_scores():
    a = normalise({"a": 0.0, "b": 1.0, "c": 10.0, "d": 100.0, "e": -1.0}, "log")  # median of positives = 10
    assert a["a"] == 0.0 and a["e"] == 0.0 and a["d"] == pytest.approx(1.0)
    assert a["b"] == pytest.approx(math.log1p(0.1) / math.log1p(10.0))
    assert a["c"] == pytest.approx(math.log(2.0) / math.log1p(10.0))
    # the linear normalisation squashes the same scores: b is 0.01 there, 0.04 here
    assert normalise({"b": 1.0, "d": 100.0}, "max")["b"] == pytest.approx(0.01)
    assert normalise({"x": 0.0, "y": -2.0}, "log") == {"x": 0.0, "y": 0.0}
    assert normalise({"x": 3.0, "y": 3.0}, "log") == {"x": pytest.approx(1.0), "y": pytest.approx(1.0)}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=3), st.floats(-1.0, 1e4, allow_nan=False), min_size=1,
                       max_size=12))
def test_log_normalisation_is_monotone_and_in_unit_interval(scores):
    a = normalise(scores, "log")
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in a.values())
    keys = sorted(scores, key=scores.get)
    for lo, hi in zip(keys, keys[1:]):
        assert a[lo] <= a[hi] + 1e-12
    if max(scores.values()) > 0:
        assert max(a.values()) == pytest.approx(1.0)


def test_probe_score_metric_and_fallback():
    drops, losses = {"x": 0.02, "y": -0.01, "z": 0.0}, {"x": 0.5, "y": 0.1, "z": -0.2}
    assert probe_score(drops, losses, "loss") == {"x": 0.5, "y": 0.1, "z": 0.0}
    assert probe_score(drops, losses, "accuracy") == {"x": 0.02, "y": 0.0, "z": 0.0}
    # every accuracy drop 0: the loss increase is used instead
    assert probe_score({"x": 0.0, "y": 0.0}, {"x": 0.3, "y": 0.1}, "accuracy") == {"x": 0.3, "y": 0.1}


def test_bad_metric_or_normalisation_is_a_clear_error():
    with pytest.raises(LayerwiseError, match="probe_metric='acc'; use 'loss' or 'accuracy'"):
        AdaLayerConfig(probe_metric="acc").validate()
    with pytest.raises(LayerwiseError, match="normalisation='rank'; use 'log' or 'max'"):
        AdaLayerConfig(normalisation="rank").validate()


def _class_mean_model(data):
    """A constructed classifier: layer 1 = centred class means (a template matcher), layer 2 = 5 * I.
    Compressing the template layer at 80 % / 2 bits makes its predictions worse."""
    xs = torch.stack([data.train[i][0] for i in range(300)]).flatten(1)
    ys = torch.tensor([int(data.train[i][1]) for i in range(300)])
    mu = xs.mean(0)
    means = torch.stack([xs[ys == c].mean(0) - mu for c in range(data.num_classes)])
    model = nn.Sequential(nn.Flatten(), nn.Linear(xs.shape[1], data.num_classes),
                          nn.Linear(data.num_classes, data.num_classes))
    with torch.no_grad():
        model[1].weight.copy_(means / means.norm(dim=1, keepdim=True))
        model[1].bias.copy_(-(model[1].weight @ mu))
        model[2].weight.copy_(5.0 * torch.eye(data.num_classes))
        model[2].bias.zero_()
    return model.eval()


def test_loss_probe_separates_every_layer_and_shares_the_cache(digits28, tmp_path):
    model = _class_mean_model(digits28)
    x1 = digits28.val[0][0].unsqueeze(0)
    loss_cfg = AdaLayerConfig(probe_ratio=0.8, probe_bits=2, probe_metric="loss", normalisation="log")
    an = analyse(model, digits28, x1, loss_cfg, cache_dir=tmp_path)
    assert an.sensitivity.cached is False
    raw = an.sensitivity.loss_increase
    assert an.sensitivity.score == {k: max(v, 0.0) for k, v in raw.items()}
    assert an.accuracy_contribution == pytest.approx(normalise(an.sensitivity.score, "log"))
    assert an.sensitivity.base_accuracy > 0.6  # the constructed model really classifies
    assert raw["1"] > 0  # the template layer measurably matters
    # layer 2 is 5 * I: pruning 80 % of its 100 weights removes only its 90 zeros' smallest 80, so the
    # probe leaves it unchanged (s = 0, A = 0); the template layer is the most sensitive (A = 1)
    assert raw["2"] == pytest.approx(0.0, abs=1e-9)
    assert an.accuracy_contribution == {"1": pytest.approx(1.0), "2": 0.0}
    acc_cfg = AdaLayerConfig(probe_ratio=0.8, probe_bits=2, probe_metric="accuracy", normalisation="max")
    again = analyse(model, digits28, x1, acc_cfg, cache_dir=tmp_path)
    assert again.sensitivity.cached is True and len(list(tmp_path.glob("sensitivity-*.json"))) == 1
    assert again.sensitivity.score == probe_score(again.sensitivity.accuracy_drop, raw, "accuracy")
    other_probe = AdaLayerConfig(probe_ratio=0.5, probe_bits=3)
    assert analyse(model, digits28, x1, other_probe, cache_dir=tmp_path).sensitivity.cached is False
    assert len(list(tmp_path.glob("sensitivity-*.json"))) == 2


def test_uniform_same_size_keeps_only_candidates_near_the_largest():
    c = [UniformCandidate(4, 0.0, 128_082), UniformCandidate(5, 0.37, 132_416), UniformCandidate(6, 0.47, 132_421),
         UniformCandidate(2, 0.0, 73_881)]
    assert [x.bits for x in same_size(c)] == [5, 6]
    assert [x.bits for x in same_size(c, band=0.05)] == [4, 5, 6]
    assert same_size([]) == []
