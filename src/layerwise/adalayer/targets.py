"""Which layers AdaLayerNet compresses, and which it leaves alone (with the reason)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..layers import find_layers

COMPRESSIBLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class Skipped:
    name: str
    kind: str
    reason: str

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "reason": self.reason}


def find_targets(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[Skipped]]:
    """``(name, module)`` of the conv/linear leaf layers to compress, and the leaf layers skipped.

    Compressed: Conv1d/2d/3d and Linear (their ``weight``, output channels on axis 0). Skipped
    and listed: recurrent layers (LSTM/GRU/RNN: several gate matrices per layer, not one weight
    with an output-channel axis), transposed convolutions (output channels on axis 1) and
    subclasses that replace ``weight`` by something else.
    """
    targets, skipped = [], []
    for name, mod, kind in find_layers(model, "leaf"):
        if type(mod) in COMPRESSIBLE and isinstance(getattr(mod, "weight", None), nn.Parameter):
            targets.append((name, mod))
        elif isinstance(mod, (nn.LSTM, nn.GRU, nn.RNN)):
            skipped.append(Skipped(name, kind, "recurrent layer: left uncompressed (stored as a passthrough "
                                               "tensor), eq. 4 is defined for one weight per layer"))
        else:
            skipped.append(Skipped(name, kind, f"{type(mod).__name__} is not Conv1d/2d/3d or Linear: "
                                               "left uncompressed (stored as a passthrough tensor)"))
    return targets, skipped
