"""The model registry: ``@register_model`` factories, ``build_model`` and ``list_models``.

A factory takes ``(input_shape, num_classes, **kwargs)``, where ``input_shape`` is one sample
without the batch axis: ``(C, H, W)`` for images, ``(C, T)`` for series. It raises
:class:`~layerwise.errors.ShapeMismatchError` when it cannot take that shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from ..errors import LayerwiseError
from ..registry import Registry

ModelFactory = Callable[..., nn.Module]

_MODELS: Registry[ModelFactory] = Registry("model")
# name -> (H, W) the model was designed for; see preferred_input_shape.
_PREFERRED_SIZE: dict[str, tuple[int, int]] = {}


class ModelConfigError(LayerwiseError, ValueError):
    """A model option with a value the model cannot take (e.g. ``drop_path=1.0``)."""


def register_model(*names: str, preferred_size: tuple[int, int] | None = None
                   ) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under one or more names.

    ``preferred_size`` is the image size (H, W) the model was designed for; callers use it to
    resize an image set that is too small for the model (see :func:`preferred_input_shape`).
    """
    deco = _MODELS.register(*names)
    if preferred_size is not None:
        for name in names:
            _PREFERRED_SIZE[name] = tuple(preferred_size)
    return deco


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell glob such as ``"resnet*"``."""
    return _MODELS.names(pattern)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Build the model ``name`` for samples of ``input_shape`` and ``num_classes`` outputs.

    ``name`` is a registry name, or a user's own factory as ``path/to/file.py:factory`` or
    ``package.module:factory`` (see :mod:`layerwise.models.user`)."""
    if int(num_classes) < 1:
        raise ModelConfigError(f"{name} needs num_classes >= 1, not {num_classes}")
    from .user import build_user_model, is_user_model
    if is_user_model(name):
        if kwargs:
            raise ModelConfigError(f"{name} is your own factory: layerwise passes it only input_shape and "
                                   f"num_classes, not {sorted(kwargs)}")
        return build_user_model(name, input_shape, num_classes)
    factory = _MODELS.get(name)
    _check_kwargs(name, factory, kwargs)
    return factory(tuple(int(s) for s in input_shape), int(num_classes), **kwargs)


def preferred_input_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The image shape ``name`` was designed for, keeping the channels of ``input_shape``.

    ``None`` when the model has no preferred size or ``input_shape`` is not an image: then no
    resize can fix a shape mismatch (e.g. tiny-cnn -> (C, 28, 28), as UnIT's MNIST network).
    """
    size = _PREFERRED_SIZE.get(name)
    if size is None or len(input_shape) != 3:
        return None
    return (int(input_shape[0]), *size)


def _check_kwargs(name: str, factory: ModelFactory, kwargs: dict) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    options = list(params)[2:]
    unknown = [k for k in kwargs if k not in options]
    if unknown:
        takes = ", ".join(options) if options else "no options"
        raise ModelConfigError(f"{name} does not take option {unknown[0]!r}; it takes: {takes}")
