import pytest
import torch
from torch import nn

from layerwise.errors import LayerwiseError
from layerwise.layers import find_layers, list_layers
from layerwise.models import build_model


class UnregisteredNet(nn.Module):
    """A model nobody registered: a conv, a GRU and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 5, stride=2, padding=2)
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x)).transpose(1, 2)
        out, _ = self.gru(h)
        return self.head(out[:, -1])


def test_leaf_layers_of_an_unregistered_model_have_exact_macs_and_shapes():
    layers = list_layers(UnregisteredNet(), torch.randn(1, 3, 20))
    by_name = {l.name: l for l in layers}
    assert list(by_name) == ["conv", "gru", "head"]
    conv = by_name["conv"]
    # Conv1d: out length (20 + 4 - 5) // 2 + 1 = 10; MACs = 8 * 10 * 3 * 5 = 1200
    assert conv.macs == 1200 and conv.output_shape == (1, 8, 10) and conv.params == 8 * 3 * 5 + 8
    # GRU: 10 steps x 3 gates x 16 x (8 + 16) = 11520
    assert by_name["gru"].macs == 11520 and by_name["gru"].kind == "gru"
    assert by_name["head"].macs == 64 and by_name["head"].input_shape == (1, 16)


def test_block_layers_of_resnet20_are_its_six_bottlenecks():
    model = build_model("resnet20", (3, 32, 32), 10).eval()
    blocks = list_layers(model, torch.randn(1, 3, 32, 32), granularity="block")
    assert [b.kind for b in blocks] == ["bottleneck"] * 6
    assert blocks[0].input_shape == (1, 16, 32, 32) and blocks[0].output_shape == (1, 64, 32, 32)
    assert blocks[-1].output_shape == (1, 256, 8, 8)
    leaves = list_layers(model, torch.randn(1, 3, 32, 32))
    # every block's MACs are the sum of the leaf layers inside it
    for b in blocks:
        inside = sum(l.macs for l in leaves if l.name.startswith(b.name + "."))
        assert b.macs == inside > 0


def test_blocks_found_by_class_name_and_by_given_type():
    class Bottleneck(nn.Module):  # the name torchvision uses
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    class MyUnit(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x)

    model = nn.Sequential(Bottleneck(), nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten(), MyUnit())
    names = [n for n, _, _ in find_layers(model, "block", block_types=(MyUnit,))]
    assert names == ["0", "4"]


def test_model_without_layers_is_a_clear_error():
    with pytest.raises(LayerwiseError, match="no block"):
        list_layers(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2), granularity="block")
    with pytest.raises(LayerwiseError, match="granularity must be"):
        find_layers(nn.Linear(2, 2), "neuron")
