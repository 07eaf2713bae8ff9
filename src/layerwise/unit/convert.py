"""Swap a model's Linear / Conv1d / Conv2d layers for UnIT layers, and model-wide helpers."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LayerwiseError
from .counts import MacCounts, combine_layers
from .layers import UNIT_LAYER_TYPES, UnITConv1d, UnITConv2d, UnITLinear

_SUPPORTED: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Linear, UnITLinear), (nn.Conv1d, UnITConv1d), (nn.Conv2d, UnITConv2d),
)

# MAC-bearing layers UnIT has no kernel for, with the reason reported to the user.
_UNSUPPORTED: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.RNNBase, "no UnIT kernel for recurrent layers"),
    (nn.RNNCellBase, "no UnIT kernel for recurrent layers"),
    (nn.modules.conv._ConvTransposeNd, "transposed convolution: not supported"),
    (nn.Conv3d, "Conv3d: not supported"),
    (nn.Bilinear, "nn.Bilinear: not supported"),
    (nn.MultiheadAttention, "attention uses its projection weights directly: not supported"),
)


@dataclass
class ConversionReport:
    """Which layers :func:`convert` swapped, and which it left alone and why."""

    converted: list[str] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"converted": list(self.converted),
                "left_alone": [{"name": n, "reason": r} for n, r in self.left_alone]}


def _type_label(module: nn.Module) -> str:
    cls = type(module)
    prefix = "nn." if cls.__module__.startswith("torch.nn.modules") else ""
    return f"{prefix}{cls.__name__}"


def _skipped(name: str, skip: set[str]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in skip)


def _reason_left_alone(name: str, module: nn.Module, skip: set[str], groups: int
                       ) -> tuple[str | None, type[nn.Module] | None]:
    """``(reason, None)`` to leave it alone, ``(None, unit_type)`` to convert, ``(None, None)``
    for a module that has no MACs of its own."""
    label = _type_label(module)
    for base, unit_type in _SUPPORTED:
        if not isinstance(module, base):
            continue
        if _skipped(name, skip):
            return f"{label}: name in skip", None
        if "quantized" in type(module).__module__:
            return f"{label}: quantized layer, not supported", None
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            return f"{label}: lazy layer not initialised; run one forward pass first", None
        if type(module).forward is not base.forward:
            return f"{label}: overrides forward(); converting would change what it computes", None
        out = module.weight.shape[0]
        if out % groups:
            return f"{label}: {groups} threshold groups do not divide {out} outputs", None
        return None, unit_type
    for base, why in _UNSUPPORTED:
        if isinstance(module, base):
            return f"{label}: {why}", None
    return None, None


def convert(model: nn.Module, *, groups: int = 1, division: str = "exact", inplace: bool = True,
            skip: Iterable[str] = (), division_opts: dict | None = None) -> ConversionReport:
    """Swap every ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` (or subclass that keeps their
    forward) for its UnIT layer, sharing the parameters; thresholds start at 0 (dense output).

    ``groups`` is the number of threshold groups per layer; ``skip`` names modules (and their
    submodules) to leave alone. Layers that cannot be converted (recurrent, transposed or 3-d
    convolutions, a group count that does not divide the outputs, ...) are left alone and listed
    with the reason. Already converted UnIT layers are kept as they are (not listed).

    Returns the :class:`ConversionReport`, whose ``model`` is the converted model: ``model``
    itself, or with ``inplace=False`` a deep copy (the original is untouched). Raises
    :class:`LayerwiseError` when the model has no layer UnIT can convert.
    """
    if groups < 1:
        raise LayerwiseError(f"groups must be >= 1, got {groups}")
    _check_division(division, division_opts or {})
    if not inplace:
        model = copy.deepcopy(model)
    skip_set = set(skip)
    report = ConversionReport(model=model)
    replacement: dict[int, nn.Module] = {}
    already = 0
    for name, module, parents in _walk(model):
        if isinstance(module, UNIT_LAYER_TYPES):
            already += 1
            continue
        if any(isinstance(p, (*UNIT_LAYER_TYPES, nn.MultiheadAttention)) for p in parents):
            continue  # inside a UnIT layer, or inside attention (reported once, as a whole)
        reason, unit_type = _reason_left_alone(name, module, skip_set, groups)
        if reason is not None:
            report.left_alone.append((name, reason))
        elif unit_type is not None:
            replacement[id(module)] = unit_type.from_module(
                module, groups, division=division, division_opts=division_opts)
            report.converted.append(name)
    if not replacement and not already:
        why = "; ".join(f"{n}: {r}" for n, r in report.left_alone) or "none found"
        raise LayerwiseError(
            "UnIT found no nn.Linear, nn.Conv1d or nn.Conv2d layer to convert "
            f"(left alone: {why}); pass a model with such layers or remove their names from skip")
    for module in model.modules():
        for child_name, child in list(module._modules.items()):
            if child is not None and id(child) in replacement:
                module._modules[child_name] = replacement[id(child)]
    return report


def _walk(model: nn.Module):
    """``(name, module, ancestors)`` for every module once, in ``named_modules`` order."""
    seen: set[int] = {id(model)}

    def visit(prefix: str, module: nn.Module, parents: list[nn.Module]):
        for child_name, child in module._modules.items():
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            full = f"{prefix}.{child_name}" if prefix else child_name
            yield full, child, parents + [module]
            yield from visit(full, child, parents + [module])

    yield from visit("", model, [])


def unit_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` for every UnIT layer of ``model``, in ``named_modules`` order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, UNIT_LAYER_TYPES)]


def total_counts(model: nn.Module) -> MacCounts:
    """The counters of every UnIT layer combined (:func:`~layerwise.unit.counts.combine_layers`:
    counters summed, ``samples`` = the number of network inputs, not the sum over layers)."""
    return combine_layers(m.counts for _, m in unit_layers(model))


def per_layer_counts(model: nn.Module) -> dict[str, MacCounts]:
    """Counters of each UnIT layer, by name."""
    return {n: m.counts for n, m in unit_layers(model)}


def reset_counts(model: nn.Module) -> None:
    """Clear the counters of every UnIT layer."""
    for _, m in unit_layers(model):
        m.reset_counts()


def set_enabled(model: nn.Module, flag: bool) -> None:
    """Turn UnIT skipping on (True) or off (False: dense layers, nothing counted)."""
    for _, m in unit_layers(model):
        m.enabled = bool(flag)


def _check_division(method: str, opts: dict) -> None:
    """Fail early (LayerwiseError) on an unknown division method or option."""
    if method == "exact" and not opts:
        return
    from .division import threshold_ratio

    threshold_ratio(torch.tensor([1.0]), torch.tensor([2.0]), method, **opts)


def set_division(model: nn.Module, method: str, **opts) -> None:
    """Use division ``method`` (``"exact"`` or one of :mod:`layerwise.unit.division`) everywhere.

    The method is tried once on a small tensor first, so a bad name or option fails here.
    """
    _check_division(method, opts)
    for _, m in unit_layers(model):
        m.division = method
        m.division_opts = dict(opts)
