"""The model zoo: a registry of factories ``(input_shape, num_classes, **kwargs) -> nn.Module``."""

# Importing the model modules registers their factories.
from . import cifar_resnet as _cifar_resnet  # noqa: F401
from . import mobilenetv2 as _mobilenetv2  # noqa: F401
from . import mrla as _mrla  # noqa: F401
from . import resnet as _resnet  # noqa: F401
from . import sensor as _sensor  # noqa: F401
from . import sensor_cnn1d as _sensor_cnn1d  # noqa: F401
from . import tiny as _tiny  # noqa: F401
from . import imagenet_resnet as _imagenet_resnet, kws as _kws  # noqa: F401
from .blocks import BasicBlock, Bottleneck, ResidualBlock
from .droppath import DropPath, apply_drop_path
from .mobilenetv2 import InvertedResidual
from .registry import (
    ModelConfigError,
    build_model,
    list_models,
    preferred_input_shape,
    register_model,
)
from .sensor import MHEALTH_CHANNEL_GROUPS, Branch, LSTMStage

__all__ = [
    "MHEALTH_CHANNEL_GROUPS",
    "BasicBlock",
    "Branch",
    "Bottleneck",
    "DropPath",
    "InvertedResidual",
    "LSTMStage",
    "ModelConfigError",
    "ResidualBlock",
    "apply_drop_path",
    "build_model",
    "list_models",
    "preferred_input_shape",
    "register_model",
]
