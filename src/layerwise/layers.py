"""Which parts of a model count as "layers" for the methods.

Two granularities:

* ``leaf``: the modules that hold the multiply-accumulates: Conv1d/2d/3d, Linear, LSTM, GRU, RNN
  (and their transposed / subclassed forms).
* ``block``: residual blocks, inverted residuals, the branches of a multi-branch model and
  recurrent stages. A module is a block when it says so (a ``block_kind`` attribute, as every
  block of the layerwise zoo has), when its class is one of the well-known block classes of other
  libraries (``BasicBlock``, ``Bottleneck``, ``InvertedResidual``, ...), or when the caller names
  its type in ``block_types``. Blocks nested inside a block are not listed again.

Both work on any ``nn.Module``: a forward pass with an example input records each layer's input
and output shapes, and the MACs come from :func:`layerwise.measure.count_macs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .errors import LayerwiseError
from .measure._util import module_hooks
from .measure.macs import count_macs

Granularity = Literal["leaf", "block"]

LEAF_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear,
    nn.LSTM, nn.GRU, nn.RNN,
)
# Class names of residual-style blocks in other model libraries (torchvision, timm, ...).
KNOWN_BLOCK_CLASS_NAMES = frozenset({
    "BasicBlock", "Bottleneck", "InvertedResidual", "MBConv", "FusedMBConv", "ResidualBlock",
    "PreActBlock", "PreActBottleneck", "DepthwiseSeparableConv", "ConvNeXtBlock", "Block",
})


@dataclass
class LayerInfo:
    name: str  # as in model.named_modules()
    kind: str  # "conv2d", "linear", "lstm", ... or the block kind ("bottleneck", "branch", ...)
    granularity: Granularity
    params: int
    macs: int
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    module: nn.Module = field(repr=False, compare=False)

    def to_json(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "granularity": self.granularity,
            "params": self.params, "macs": self.macs,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "output_shape": list(self.output_shape) if self.output_shape else None,
        }


def is_leaf_layer(module: nn.Module) -> bool:
    return isinstance(module, LEAF_TYPES)


def block_kind(module: nn.Module, block_types: Iterable[type] = ()) -> str | None:
    """The block kind of ``module``, or ``None`` if it is not a block."""
    kind = getattr(module, "block_kind", None)
    if isinstance(kind, str):
        return kind
    if block_types and isinstance(module, tuple(block_types)):
        return type(module).__name__.lower()
    if type(module).__name__ in KNOWN_BLOCK_CLASS_NAMES:
        return type(module).__name__.lower()
    return None


def find_layers(model: nn.Module, granularity: Granularity = "leaf",
                block_types: Iterable[type] = ()) -> list[tuple[str, nn.Module, str]]:
    """``(name, module, kind)`` for each layer of ``model`` in definition order (no forward pass)."""
    if granularity not in ("leaf", "block"):
        raise LayerwiseError(f"granularity must be 'leaf' or 'block', not {granularity!r}")
    found: list[tuple[str, nn.Module, str]] = []
    if granularity == "leaf":
        for name, mod in model.named_modules():
            if is_leaf_layer(mod):
                found.append((name, mod, type(mod).__name__.lower()))
        return found
    block_types = tuple(block_types)
    inside: list[str] = []
    for name, mod in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        kind = block_kind(mod, block_types)
        if kind is not None:
            found.append((name, mod, kind))
            inside.append(name)
    return found


def _first_tensor_shape(obj) -> tuple[int, ...] | None:
    if isinstance(obj, torch.Tensor):
        return tuple(obj.shape)
    if isinstance(obj, (tuple, list)):
        for item in obj:
            shape = _first_tensor_shape(item)
            if shape is not None:
                return shape
    return None


@contextmanager
def _shape_hooks(modules: dict[str, nn.Module]):
    shapes: dict[str, tuple] = {}

    def make(name):
        def hook(_mod, args, output):
            if name not in shapes:  # first call: a module reused later keeps its first shapes
                shapes[name] = (_first_tensor_shape(args), _first_tensor_shape(output))
        return hook

    with module_hooks(modules, post=make):
        yield shapes


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def list_layers(model: nn.Module, example_input: torch.Tensor | tuple, granularity: Granularity = "leaf",
                block_types: Iterable[type] = ()) -> list[LayerInfo]:
    """Every layer of ``model`` at ``granularity`` with params, MACs and shapes for ``example_input``.

    A layer that the forward pass never reaches keeps ``None`` shapes and 0 MACs.
    """
    layers = find_layers(model, granularity, block_types)
    if not layers:
        what = "conv, linear or recurrent layer" if granularity == "leaf" else "block"
        raise LayerwiseError(
            f"{type(model).__name__} has no {what}; for blocks, pass block_types=(YourBlockClass,)")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    with _shape_hooks({n: m for n, m, _ in layers}) as shapes:
        macs = count_macs(model, inputs)
    def inclusive(prefix: str) -> int:  # per_module credits each module its own MACs only
        return sum(v for k, v in macs.per_module.items() if k == prefix or k.startswith(prefix + "."))

    out = []
    for name, mod, kind in layers:
        in_shape, out_shape = shapes.get(name, (None, None))
        out.append(LayerInfo(name=name, kind=kind, granularity=granularity, params=_params(mod),
                             macs=int(inclusive(name)),
                             input_shape=in_shape, output_shape=out_shape, module=mod))
    return out
