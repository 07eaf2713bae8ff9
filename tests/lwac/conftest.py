import pytest
import torch

from layerwise.models import build_model


@pytest.fixture
def resnet():
    torch.manual_seed(0)
    m = build_model("resnet20", (3, 16, 16), 4, drop_path=0.2, drop_path_schedule="constant")
    for mod in m.modules():  # non-trivial BN statistics so every branch matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture
def x16():
    torch.manual_seed(1)
    return torch.randn(1, 3, 16, 16)


@pytest.fixture
def multibranch():
    torch.manual_seed(0)
    return build_model("multibranch-cnn", (6, 40), 4).eval()
