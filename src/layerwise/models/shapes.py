"""Shape checks that turn a model/dataset mismatch into one actionable line."""

from __future__ import annotations

from ..errors import ShapeMismatchError

_1D_MODELS = "cnn-lstm or multibranch-cnn"
_2D_MODELS = "tiny-cnn, resnet20 or mobilenetv2"


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def expect_image(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``input_shape`` or a ShapeMismatchError naming the fix."""
    if len(input_shape) == 2:
        raise ShapeMismatchError(
            f"{name} takes images (C, H, W) but dataset gives series {_fmt(input_shape)}: "
            f"pick a 1-D model such as {_1D_MODELS}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ShapeMismatchError(
            f"{name} takes images (C, H, W) but got shape {_fmt(input_shape)}: "
            "give one sample without the batch axis")
    c, h, w = input_shape
    return c, h, w


def expect_series(name: str, input_shape: tuple[int, ...], min_length: int = 1) -> tuple[int, int]:
    """``(C, T)`` from ``input_shape`` or a ShapeMismatchError naming the fix."""
    if len(input_shape) == 3:
        raise ShapeMismatchError(
            f"{name} takes series (C, T) but dataset gives images {_fmt(input_shape)}: "
            f"pick a 2-D model such as {_2D_MODELS}")
    if len(input_shape) != 2 or min(input_shape) < 1:
        raise ShapeMismatchError(
            f"{name} takes series (C, T) but got shape {_fmt(input_shape)}: "
            "give one sample without the batch axis")
    c, t = input_shape
    if t < min_length:
        raise ShapeMismatchError(
            f"{name} needs series of at least {min_length} time steps but dataset gives "
            f"{_fmt(input_shape)}: use a longer window")
    return c, t
