"""MRLA layer attention on any ResNet-like model, given its stages as lists of blocks.

Fang et al., "Cross-Layer Retrospective Retrieving via Layer Attention" (MRLA, arXiv:2302.03985)
put one attention layer after every block; its query retrieves the keys and values of the
earlier layers of the same stage (MRLA-B, ELA eq. 1-2) or gates its own value with a learnable
share of the previous output (MRLA-L, eq. 3-4). The zoo's ``resnet*-mrla-*`` models are built
that way; :func:`attach_layer_attention` does the same to a user's model: each named block is
wrapped in a :class:`~layerwise.models.mrla.LayerAttentionBlock` (the zoo's attention module,
BN and placement, ``out + ReLU(BN(MRLA(out)))``), initialised as the references initialise it.
ELA (:func:`layerwise.ela.train_ela`, :func:`layerwise.ela.apply`) then trains it and removes the
redundant attention layers.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import LayerwiseError
from ..models.mrla import LayerAttentionBlock, _SharedStage

StageSpec = Sequence[nn.Module | str] | nn.Module | str


def _name_of(model: nn.Module, names: dict[int, str], item, where: str) -> str:
    if isinstance(item, str):
        try:
            model.get_submodule(item)
        except AttributeError:
            raise LayerwiseError(f"{where}: the model has no submodule {item!r}: name blocks as in "
                                 "model.named_modules(), e.g. 'layer1.0'") from None
        return item
    if isinstance(item, nn.Module):
        if id(item) not in names:
            raise LayerwiseError(f"{where}: a {type(item).__name__} that is not part of the model: pass the "
                                 "model's own blocks (e.g. list(model.layer1)) or their names")
        return names[id(item)]
    raise LayerwiseError(f"{where}: a stage lists blocks (modules or module names), not {type(item).__name__}")


def resolve_stages(model: nn.Module, stages) -> list[list[str]]:
    """Module names of each stage's blocks. A stage is a list of blocks (modules or names), or one
    container (an ``nn.Sequential`` / ``nn.ModuleList``, or its name) whose children are the blocks."""
    if isinstance(stages, (str, nn.Module)) or not isinstance(stages, Sequence) or not stages:
        raise LayerwiseError("stages must be a non-empty list of stages, each a list of blocks, e.g. "
                             "stages=[list(model.layer1), list(model.layer2)] or [['layer1.0', 'layer1.1'], ...]")
    names = {id(m): n for n, m in model.named_modules() if n}
    out: list[list[str]] = []
    for s, stage in enumerate(stages):
        where = f"stage {s}"
        if isinstance(stage, (str, nn.Module)):
            container = model.get_submodule(_name_of(model, names, stage, where)) if isinstance(stage, str) else stage
            prefix = _name_of(model, names, stage, where)
            blocks = [f"{prefix}.{child}" for child, _ in container.named_children()]
        else:
            blocks = [_name_of(model, names, b, f"{where}, block {i}") for i, b in enumerate(stage)]
        if not blocks:
            raise LayerwiseError(f"{where} has no block: give each stage at least one block")
        out.append(blocks)
    flat = [b for st in out for b in st]
    dup = sorted({b for b in flat if flat.count(b) > 1})
    if dup:
        raise LayerwiseError(f"block {dup[0]} is listed twice in stages: each block belongs to one stage, once")
    nested = [(a, b) for a in flat for b in flat if b.startswith(a + ".")]
    if nested:
        raise LayerwiseError(f"block {nested[0][1]} lies inside block {nested[0][0]}: list blocks, not their parts")
    return out


@torch.no_grad()
def _output_shapes(model: nn.Module, names: list[str], example_input: torch.Tensor) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    handles = []
    for n in names:
        def hook(mod, args, out, n=n):
            if n not in shapes and isinstance(out, torch.Tensor):
                shapes[n] = tuple(out.shape)
        handles.append(model.get_submodule(n).register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        model(example_input)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return shapes


def attach_layer_attention(model: nn.Module, stages, example_input: torch.Tensor, *, variant: str = "b",
                           values: str = "sum", inplace: bool = False) -> nn.Module:
    """``model`` with an MRLA layer (``variant`` "b" or "l") after every block of ``stages``.

    ``stages``: a list of stages, each a list of the model's blocks in forward order (modules or
    module names) or one container whose children are the blocks; MRLA-B's keys and values are
    shared within a stage and reset at its first block. Every block of a stage must output the
    same (C, H, W) (as the blocks of a ResNet stage do). ``example_input`` (any batch) gives those
    shapes. Works on a deep copy unless ``inplace``. The added layers start with the references'
    init (Q, K: PyTorch's Conv1d default; V: Kaiming normal, fan out; BN: 1 and 0)."""
    names = resolve_stages(model, stages)
    shapes = _output_shapes(model, [b for st in names for b in st], example_input)
    for s, stage in enumerate(names):
        missing = [b for b in stage if b not in shapes]
        if missing:
            raise LayerwiseError(f"block {missing[0]} never ran on the example input (or returns no tensor): "
                                 "list only blocks the model's forward calls")
        bad = [b for b in stage if len(shapes[b]) != 4]
        if bad:
            raise LayerwiseError(f"block {bad[0]} outputs shape {shapes[bad[0]]}: MRLA layer attention needs 4-D "
                                 "feature maps (batch, C, H, W)")
        first = shapes[stage[0]][1:]
        other = [b for b in stage if shapes[b][1:] != first]
        if other:
            raise LayerwiseError(f"stage {s}: block {other[0]} outputs {shapes[other[0]][1:]} but {stage[0]} outputs "
                                 f"{first}: the layers of a stage share keys and values, so their outputs must have "
                                 "one shape; start a new stage where the shape changes")
    target = model if inplace else copy.deepcopy(model)
    for s, stage in enumerate(names):
        shared = _SharedStage()
        for p, name in enumerate(stage):
            block = target.get_submodule(name)
            wrapped = LayerAttentionBlock(block, shapes[name][1], shared, s, p, len(stage), variant, values)
            nn.init.kaiming_normal_(wrapped.attention.value.weight, mode="fan_out", nonlinearity="relu")
            wrapped.to(next((t.device for t in block.parameters()), example_input.device))
            parent_name, _, child = name.rpartition(".")
            parent = target.get_submodule(parent_name) if parent_name else target
            setattr(parent, child, wrapped)
    return target
