"""``kws-cnn``: the UnIT paper's keyword-spotting network (Table 1, KWS column).

Conv(6, 1, 5x5) ReLU MaxPool2 Conv(16, 6, 5x5) ReLU MaxPool2 FC(16*h*w, 12), no padding: the
layers of ``tiny-cnn`` (:class:`~layerwise.models.tiny.TinyCNN`, reused here, so UnIT, FATReLU and
the MAC counters treat both alike), sized for ``speech-commands:DIR``'s (1, 126, 80) MFCC input:
126x80 -> conv 122x76 -> pool 61x38 -> conv 57x34 -> pool 28x17, and 16 x 28 x 17 = 7616, the
paper's FC(7616, 12). Any input of at least 16x16 builds (the FC follows the shape); the
preferred size (126, 80) is what a smaller input is resized to.
"""

from __future__ import annotations

from ..errors import ShapeMismatchError
from .registry import register_model
from .shapes import expect_image
from .tiny import TinyCNN, tiny_cnn_feature_size

KWS_INPUT = (1, 126, 80)   # speech-commands: 126 MFCC frames x 80 coefficients


@register_model("kws-cnn", preferred_size=KWS_INPUT[1:])
def kws_cnn(input_shape, num_classes) -> TinyCNN:
    """UnIT's KWS network (Table 1): FC(7616, 12) on the (1, 126, 80) MFCC input."""
    c, h, w = expect_image("kws-cnn", input_shape)
    fh, fw = tiny_cnn_feature_size(h, w)
    if fh < 1 or fw < 1:
        raise ShapeMismatchError(
            f"kws-cnn needs inputs of at least 16x16 (it was built for 1x126x80 MFCCs of "
            f"speech-commands:DIR) but dataset gives ({c}, {h}, {w}): train it on speech-commands:DIR")
    return TinyCNN(c, num_classes, 16 * fh * fw)
