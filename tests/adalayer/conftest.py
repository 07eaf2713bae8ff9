import pytest
import torch

from layerwise.adalayer import Architecture
from layerwise.data import load_dataset


@pytest.fixture(scope="session")
def digits28():
    return load_dataset("digits", size=28, channels=1, seed=0)


@pytest.fixture()
def tiny(digits28):
    torch.manual_seed(0)
    arch = Architecture("tiny-cnn", tuple(digits28.input_shape), digits28.num_classes, {})
    return arch, arch.build().eval()
