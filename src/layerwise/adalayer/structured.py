"""Structured mode: remove whole output channels at the per-layer ratios P_l with Torch-Pruning.

Torch-Pruning's :class:`DependencyGraph` finds the coupled layers (a residual add ties the last
conv of every block of a stage and its projection; BatchNorm follows its conv; the next layer's
input channels follow): each such group is pruned as one unit. A group takes the SMALLEST P_l of
its member layers (its most important member decides), channels ranked by Torch-Pruning's
group L1 magnitude importance. Never pruned (``ignored_layers``): the layers that produce the
model output, found from the graph (:func:`.graph.output_layers`, not definition order), the
recurrent layers, the caller's ``ignored`` list; nor is any group cut below one channel.

It cannot break a model silently: any exception raised by Torch-Pruning (building the graph,
ranking or removing channels) or by the pruned model's forward pass, and any change of the
model's output shape, is one :class:`StructuredError` naming the cause and the fix (drop
``--structured``). The model may then be half pruned: callers prune a copy or give up.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..errors import LayerwiseError
from ..train.evaluation import logits_of
from .graph import output_layers

log = logging.getLogger(__name__)

FIX = "drop --structured to compress it unstructured (masks instead of removed channels)"


class StructuredError(LayerwiseError):
    """Torch-Pruning could not remove channels from this model consistently."""


def _tp():
    try:
        import torch_pruning as tp
    except ImportError:
        raise LayerwiseError("structured mode needs Torch-Pruning: pip install -e '.[export]'") from None
    return tp


def _fail(model: nn.Module, stage: str, exc: BaseException) -> StructuredError:
    first = (str(exc).splitlines() or [""])[0][:160]
    return StructuredError(f"Torch-Pruning could not prune {type(model).__name__} consistently ({stage}: "
                           f"{type(exc).__name__}: {first}): {FIX}")


def group_ratio(member_ratios: list[float]) -> float:
    """The ratio a coupled group is pruned at: its members' SMALLEST P_l (the most important decides)."""
    return min(member_ratios)


def prune_channels(model: nn.Module, example_input: torch.Tensor, ratios: dict[str, float],
                   ignored: list[str] = ()) -> dict[str, tuple[int, int]]:
    """Remove output channels in place at ``ratios`` (layer name -> fraction); returns, per pruned
    group root, (channels before, channels after). Raises :class:`StructuredError` (see module)."""
    tp = _tp()
    named = dict(model.named_modules())
    was_training = model.training
    model.eval()
    with torch.no_grad():
        shape_before = tuple(logits_of(model(example_input)).shape)
    protect = list(dict.fromkeys([*output_layers(model, example_input), *ignored]))
    ignore = [named[n] for n in protect if n in named]
    for name, mod in named.items():
        if isinstance(mod, (nn.LSTM, nn.GRU, nn.RNN)) and mod not in ignore:
            ignore.append(mod)
    names = {mod: name for name, mod in named.items()}
    try:
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
        groups = list(dg.get_all_groups(ignored_layers=ignore,
                                        root_module_types=(nn.modules.conv._ConvNd, nn.Linear)))
    except Exception as exc:  # noqa: BLE001 - every Torch-Pruning failure becomes one clear error
        raise _fail(model, "dependency graph", exc) from None
    importance = tp.importance.MagnitudeImportance(p=1)
    plan = []  # importances of every group first, then prune (as Torch-Pruning's MetaPruner does)
    for group in groups:
        members = [names.get(dep.target.module) for dep, _ in group if dg.is_out_channel_pruning_fn(dep.handler)]
        if any(m in protect for m in members):  # a coupling that reaches an output layer
            continue
        member_ratios = [ratios[m] for m in members if m in ratios]
        if not member_ratios:
            continue
        ratio = group_ratio(member_ratios)
        root = group[0].dep.target.module
        try:
            n = dg.get_out_channels(root)
            if n is None:
                continue
            n_prune = min(int(math.floor(ratio * n)), n - 1)
            if n_prune <= 0:
                continue
            imp = importance(group)
        except Exception as exc:  # noqa: BLE001
            raise _fail(model, f"ranking the channels of {names.get(root, '?')}", exc) from None
        if imp is None:
            continue
        plan.append((group, torch.argsort(imp)[:n_prune].tolist(), names.get(root, "?"), n))
    done: dict[str, tuple[int, int]] = {}
    for group, idxs, root_name, n in plan:
        try:
            group.prune(idxs=idxs)
        except Exception as exc:  # noqa: BLE001
            raise _fail(model, f"removing channels of {root_name}", exc) from None
        done[root_name] = (n, n - len(idxs))
    try:
        with torch.no_grad():
            shape_after = tuple(logits_of(model(example_input)).shape)
    except Exception as exc:  # noqa: BLE001
        raise _fail(model, "forward pass of the pruned model", exc) from None
    if shape_after != shape_before:
        raise StructuredError(f"Torch-Pruning changed {type(model).__name__}'s output from {shape_before} to "
                              f"{shape_after}: {FIX}")
    model.train(was_training)
    log.debug("structured pruning: %s", done)
    return done
