"""Where a compressible layer sits in the model's computation, found from a real forward pass
(never from definition order, which says nothing about what runs last).

- :func:`output_layers`: the Conv/Linear layers whose outputs reach the model output through
  channel-preserving operations only (activations, BatchNorm, pooling, flatten, adds, ...): on
  every path back from the output through the autograd graph, the first Conv/Linear met. Their
  output channels ARE the model's outputs (the classes), so structured pruning must never remove
  them. An all-conv network's last conv, a network whose output Linear is defined first, and both
  branches of an output that sums two heads are all found.
- :func:`execution_order`: the Conv/Linear layers in the order the forward pass first calls them
  (the "first layer" is the one that reads the input).
"""

from __future__ import annotations

import torch
from torch import nn

from ..train.evaluation import logits_of
from .targets import COMPRESSIBLE


def _compressible(model: nn.Module) -> dict[str, nn.Module]:
    return {name: mod for name, mod in model.named_modules() if type(mod) in COMPRESSIBLE}


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the Conv/Linear layers that produce the model output (see the module docstring).

    One forward pass with gradients on (the model's parameters are left as they are; the input is
    a copy that requires grad, so the graph exists even for a frozen model). Returns ``[]`` when no
    Conv/Linear output reaches the model output.
    """
    layers = _compressible(model)
    node_owner: dict[object, str] = {}
    handles = []

    def hook(name):
        def record(_mod, _args, out):
            if isinstance(out, torch.Tensor) and out.grad_fn is not None:
                node_owner[out.grad_fn] = name
        return record

    for name, mod in layers.items():
        handles.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = example_input.detach().clone().float().requires_grad_(True) if example_input.is_floating_point() \
                else example_input
            out = logits_of(model(x))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        return []
    found: list[str] = []
    seen = set()
    stack = [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        owner = node_owner.get(node)
        if owner is not None:  # the first Conv/Linear on this path: stop here
            if owner not in found:
                found.append(owner)
            continue
        stack.extend(nxt for nxt, _ in node.next_functions)
    order = list(layers)
    return sorted(found, key=order.index)


def execution_order(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Conv/Linear layer names in the order one forward pass first calls them."""
    layers = _compressible(model)
    order: list[str] = []
    handles = [mod.register_forward_pre_hook(lambda _m, _a, name=name: order.append(name) if name not in order
                                             else None)
               for name, mod in layers.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order
