"""Structured mode cannot break a model: the output layer comes from the graph (not definition
order), every Torch-Pruning failure is one clear error, and the budget search lands near the budget."""

import copy

import pytest
import torch
from torch import nn

from layerwise.adalayer import AdaLayerConfig, Architecture, compress_model, find_targets, prune_channels
from layerwise.adalayer.graph import execution_order, output_layers
from layerwise.adalayer.structured import StructuredError
from layerwise.errors import LayerwiseError
from layerwise.data import load_dataset
from layerwise.train import evaluate


class AllConv(nn.Module):
    """No Linear at all: the last conv's 10 channels, averaged, are the class scores."""

    def __init__(self, classes=10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        return self.head(self.c2(self.c1(x).relu()).relu()).mean((2, 3))


class LinearFirst(nn.Module):
    """The output Linear is DEFINED first; a hidden Linear defined last (the old rule's victim)."""

    def __init__(self, classes=10):
        super().__init__()
        self.out = nn.Linear(64, classes)
        self.conv = nn.Conv2d(1, 32, 3, padding=1)
        self.hidden = nn.Linear(32, 64)

    def forward(self, x):
        return self.out(self.hidden(self.conv(x).relu().mean((2, 3))).relu())


class TwoHeads(nn.Module):
    """The output is the sum of two convs' outputs: both produce the classes."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 10, 1)
        self.b = nn.Conv2d(8, 10, 1)

    def forward(self, x):
        h = self.body(x).relu()
        return (self.a(h) + self.b(h)).flatten(2).amax(2)


class SharedAndGrouped(nn.Module):
    """A conv used twice, then a grouped (not depthwise) conv: Torch-Pruning cannot keep the groups."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=8)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.shared(self.shared(self.stem(x).relu()).relu()).relu()
        return self.fc(self.grouped(x).relu().mean((2, 3)))


def test_output_layers_come_from_the_graph_not_definition_order():
    x = torch.randn(1, 1, 8, 8)
    assert output_layers(AllConv().eval(), x) == ["head"]
    assert output_layers(LinearFirst().eval(), x) == ["out"]  # defined first, runs last
    assert output_layers(TwoHeads().eval(), x) == ["a", "b"]
    assert execution_order(LinearFirst().eval(), x) == ["conv", "hidden", "out"]


@pytest.mark.parametrize("cls", [AllConv, LinearFirst, TwoHeads])
def test_structured_pruning_keeps_every_class_output(cls):
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.randn(2, 1, 8, 8)
    names = [n for n, _ in find_targets(model)[0]]
    done = prune_channels(model, x[:1], {n: 0.5 for n in names})
    assert done  # something was really removed ...
    assert model(x).shape == (2, 10)  # ... but never a class


@pytest.mark.parametrize("cls", [AllConv, LinearFirst])
def test_structured_compress_and_finetune_on_ten_classes(cls, digits28):
    # before: 10 -> 5 outputs, then "IndexError: Target 9 is out of bounds" in the fine-tune
    torch.manual_seed(0)
    model = cls().eval()
    x = digits28.val[0][0][None]
    arch = Architecture("custom", tuple(digits28.input_shape), 10, {})
    res = compress_model(model, digits28, arch, budget=0.15, example_input=x,
                         config=AdaLayerConfig(finetune_epochs=1, structured=True, b_min=4))
    assert res.structured_channels and res.model(x).shape == (1, 10)
    assert evaluate(res.model, digits28.val).accuracy > 0.0


def test_torch_pruning_failures_are_one_clear_error():
    model = SharedAndGrouped().eval()
    x = torch.randn(1, 1, 8, 8)
    names = [n for n, _ in find_targets(model)[0]]
    with pytest.raises(StructuredError, match=r"could not prune SharedAndGrouped consistently .*drop --structured"):
        prune_channels(model, x, {n: 0.5 for n in names})
    assert issubclass(StructuredError, LayerwiseError)


def test_a_raw_torch_pruning_exception_is_converted(monkeypatch):
    import torch_pruning as tp

    def boom(self, *a, **k):
        raise RuntimeError("INDICES element is out of DATA bounds")
    monkeypatch.setattr(tp.DependencyGraph, "build_dependency", boom)
    with pytest.raises(StructuredError, match="dependency graph: RuntimeError: INDICES element is out of DATA"):
        prune_channels(AllConv().eval(), torch.randn(1, 1, 8, 8), {"c1": 0.5})


def test_structured_budget_search_lands_within_two_percent():
    torch.manual_seed(0)
    arch = Architecture("resnet20", (3, 16, 16), 10, {})
    model = arch.build().eval()

    data = load_dataset("digits", size=16, channels=3, seed=0)
    from layerwise.adalayer.pipeline import Analysis
    from layerwise.adalayer.importance import Sensitivity
    from layerwise.adalayer.allocation import redundancy
    targets, skipped = find_targets(model)
    names = [n for n, _ in targets]
    imp = {n: (i % 5) / 5 for i, n in enumerate(names)}  # given importances: no probe needed
    an = Analysis(targets, skipped, {n: 1 for n in names}, {n: int(m.weight.numel()) for n, m in targets},
                  Sensitivity("accuracy", 0.0, 0.0, {}, {}, {}), imp, {n: 0.0 for n in names}, redundancy(targets),
                  imp)
    for budget in (0.15, 0.10):
        res = compress_model(copy.deepcopy(model), data, arch, budget=budget, example_input=torch.randn(1, 3, 16, 16),
                             config=AdaLayerConfig(finetune_epochs=0, structured=True), analysis=an)
        assert 0.98 * res.budget.target_bytes <= len(res.packed) <= res.budget.target_bytes, budget


class AllConvPooled(nn.Module):
    """No Linear: the classifier is a 1x1 conv to the 10 classes, a global-average-pool module and a
    Flatten module (modules, not tensor methods, between the output conv and the output)."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(16, classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.mark.parametrize("cls, head", [(AllConv, "head"), (AllConvPooled, "classifier.0")])
def test_structured_mode_on_an_all_conv_network_keeps_every_class_channel(cls, head, digits28):
    torch.manual_seed(0)
    model = cls().eval()
    x = digits28.val[0][0][None]
    assert output_layers(model, x) == [head]
    hidden = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n != head}
    arch = Architecture("custom", tuple(digits28.input_shape), 10, {})
    res = compress_model(model, digits28, arch, budget=0.15, example_input=x,
                         config=AdaLayerConfig(finetune_epochs=0, structured=True, b_min=4))
    out_conv = res.model.get_submodule(head)
    # every one of the 10 class channels of the output conv is still there, weights and bias ...
    assert out_conv.out_channels == 10 and out_conv.weight.shape[0] == 10 and out_conv.bias.shape == (10,)
    assert head not in res.structured_channels
    # ... while the hidden convs really lost channels (the budget was met by pruning them)
    after = {n: res.model.get_submodule(n).out_channels for n in hidden}
    assert any(after[n] < hidden[n] for n in hidden), (hidden, after)
    assert out_conv.in_channels == after[list(hidden)[-1]]  # the head reads what the last hidden conv kept
    xb = torch.stack([digits28.test[i][0] for i in range(32)])
    with torch.no_grad():
        assert res.model(xb).shape == (32, 10)
