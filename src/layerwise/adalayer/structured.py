"""Structured mode: remove whole output channels at the per-layer ratios P_l with Torch-Pruning.

Torch-Pruning's :class:`DependencyGraph` finds the coupled layers (a residual add ties the last
conv of every block of a stage and its projection; BatchNorm follows its conv; the next layer's
input channels follow): each such group is pruned as one unit. A group takes the SMALLEST P_l of
its member layers (its most important member decides), channels ranked by Torch-Pruning's
group L1 magnitude importance. The final classifier's outputs and the layers AdaLayerNet does
not compress are never pruned (``ignored_layers``), nor is any group cut below one channel.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from ..errors import LayerwiseError

log = logging.getLogger(__name__)


def _tp():
    try:
        import torch_pruning as tp
    except ImportError:
        raise LayerwiseError("structured mode needs Torch-Pruning: pip install -e '.[export]'") from None
    return tp


def classifier_name(model: nn.Module) -> str | None:
    """The last Linear layer (in definition order): its outputs are the classes, never pruned."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = name
    return last


def prune_channels(model: nn.Module, example_input: torch.Tensor, ratios: dict[str, float],
                   ignored: list[str] = ()) -> dict[str, tuple[int, int]]:
    """Remove output channels in place at ``ratios`` (layer name -> fraction); returns, per pruned
    group root, (channels before, channels after)."""
    tp = _tp()
    named = dict(model.named_modules())
    ignore = [named[n] for n in ignored if n in named]
    for name, mod in named.items():
        if isinstance(mod, (nn.LSTM, nn.GRU, nn.RNN)) and mod not in ignore:
            ignore.append(mod)
    names = {mod: name for name, mod in named.items()}
    was_training = model.training
    model.eval()
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    importance = tp.importance.MagnitudeImportance(p=1)
    groups = list(dg.get_all_groups(ignored_layers=ignore, root_module_types=(nn.modules.conv._ConvNd, nn.Linear)))
    skipped: list[str] = []
    plan = []  # importances of every group first, then prune (as Torch-Pruning's MetaPruner does)
    for group in groups:
        members = [names.get(dep.target.module) for dep, _ in group
                   if dg.is_out_channel_pruning_fn(dep.handler)]
        member_ratios = [ratios[m] for m in members if m in ratios]
        if not member_ratios:
            continue
        ratio = min(member_ratios)
        root = group[0].dep.target.module
        n = dg.get_out_channels(root)
        if n is None:
            continue
        n_prune = min(int(math.floor(ratio * n)), n - 1)
        if n_prune <= 0:
            continue
        try:
            imp = importance(group)
        except (IndexError, RuntimeError) as exc:  # a coupling Torch-Pruning cannot index (e.g. index_select)
            log.warning("structured: group rooted at %s left unpruned (Torch-Pruning: %s)", names.get(root), exc)
            skipped.append(names.get(root, "?"))
            continue
        if imp is None:
            continue
        plan.append((group, torch.argsort(imp)[:n_prune].tolist(), names.get(root, "?"), n))
    done: dict[str, tuple[int, int]] = {}
    for group, idxs, root_name, n in plan:
        group.prune(idxs=idxs)
        done[root_name] = (n, n - len(idxs))
    try:
        with torch.no_grad():
            model(example_input)
    except RuntimeError as exc:
        raise LayerwiseError(
            f"Torch-Pruning could not prune {type(model).__name__} consistently ({str(exc).splitlines()[0][:120]}): "
            "drop --structured to compress it unstructured") from None
    model.train(was_training)
    log.debug("structured pruning: %s", done)
    return done
