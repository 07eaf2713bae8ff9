"""Calibratable units and what "scaled" and "bypassed" mean for each kind.

A unit is what :func:`layerwise.layers.find_layers` lists at ``"block"`` granularity. Three
adapters say how a unit runs:

* :class:`ResidualAdapter` (a zoo ``ResidualBlock`` or any module with ``residual`` and
  ``shortcut``): soft scaling multiplies the RESIDUAL branch only, ``act(shortcut(x) + a * residual(x))``
  (the identity / projection path is never scaled); bypass is ``act(shortcut(x))``, the residual
  branch never runs. Every block WITH a shortcut can be bypassed, also one that changes shape:
  its projection (or padding) shortcut still runs and gives the right shape, exactly what
  stochastic depth drops at training time. Blocks without a shortcut cannot.
* :class:`BranchAdapter` (``block_kind == "branch"``, a branch of a multi-branch model whose
  outputs are concatenated): soft is ``a * branch(x)``; bypass is zeros of shape
  ``(B, out_features)``, the branch never runs.
* :class:`TracedResidualAdapter` (a block written for another library, e.g. torchvision's
  ``InvertedResidual`` with ``use_res_connect`` or timm's ``out = self.conv(x) + x``): the block's
  own ``forward`` is traced with ``torch.fx`` at the top level (its child modules are leaves) and
  the residual add is the ``add`` node with the block's INPUT as one operand and, as the other, a
  branch computed from that input. Soft scales that branch (eq. 1); bypass runs the traced graph
  with the add replaced by the input alone (an identity shortcut: for ``x + conv(x)`` it returns
  ``x``; whatever follows the add, e.g. a ReLU, is applied to ``x``), so the block is never called.
  A Python condition (``if self.use_res_connect``) is evaluated at trace time, so a block whose
  attribute turns the add off is traced without one, and is not bypassable.
* :class:`ScaleOnlyAdapter` (anything else: recurrent stages, inverted residuals that change
  shape, foreign blocks without a residual add): soft is ``a * unit(x)``; never bypassed. Its
  ``reason`` says why (:func:`adapter_for`), and ``attach`` logs it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import torch
from torch import fx, nn

from ..layers import find_layers, is_leaf_layer
from .config import LWACError


class ScaleOnlyAdapter:
    bypassable = False
    reason: str | None = None  # why the unit cannot be bypassed (None when it can)

    def __init__(self, unit: nn.Module, reason: str | None = None):
        self.unit = unit
        if reason is not None:
            self.reason = reason

    def run(self, x):
        return self.unit(x)

    def mixed(self, x, run_idx):
        """Batch ``x`` where only the samples ``run_idx`` (1-D long tensor) run the unit: the others
        take the bypass. The unit runs on the GATHERED samples only (``x[run_idx]``), its output is
        scattered back, so a mixed batch costs the unit's MACs for ``len(run_idx)`` samples."""
        out = self.bypass(x)
        return out.index_copy(0, run_idx, self.run(x.index_select(0, run_idx)).to(out.dtype))

    def scaled(self, x, alpha):
        out = self.unit(x)
        return out * _per_sample(alpha, out)

    def bypass(self, x):  # pragma: no cover - guarded by ``bypassable``
        raise LWACError(f"{type(self.unit).__name__} cannot be bypassed; it is only scaled")


class ResidualAdapter(ScaleOnlyAdapter):
    def __init__(self, unit: nn.Module):
        super().__init__(unit)
        self.bypassable = getattr(unit, "shortcut", None) is not None

    def scaled(self, x, alpha):
        u = self.unit
        r = u.residual(x)
        if getattr(u, "drop_path", None) is not None:
            r = u.drop_path(r)
        r = r * _per_sample(alpha, r)  # eq. (1) on the residual branch
        out = r if u.shortcut is None else u.shortcut(x) + r
        act = getattr(u, "act", None)
        return act(out) if act is not None else out

    def bypass(self, x):
        u = self.unit
        out = u.shortcut(x)
        act = getattr(u, "act", None)
        return act(out) if act is not None else out

    def mixed(self, x, run_idx):
        """``act(shortcut(x) + scatter(residual(x[run_idx])))``: the shortcut for the whole batch,
        the residual branch on the gathered samples only, added back at their rows."""
        u = self.unit
        r = u.residual(x.index_select(0, run_idx))
        if getattr(u, "drop_path", None) is not None:
            r = u.drop_path(r)
        out = u.shortcut(x).index_add(0, run_idx, r.to(x.dtype) if r.dtype != x.dtype else r)
        act = getattr(u, "act", None)
        return act(out) if act is not None else out


class BranchAdapter(ScaleOnlyAdapter):
    def __init__(self, unit: nn.Module):
        super().__init__(unit)
        self.out_features = getattr(unit, "out_features", None)
        self.bypassable = isinstance(self.out_features, int)

    def bypass(self, x):
        return x.new_zeros((x.shape[0], self.out_features))


_ADDS = {operator.add, operator.iadd, torch.add}


class _TopLevelTracer(fx.Tracer):
    """Traces a block's own ``forward`` only: every child module is one opaque call."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _ADDS) or (node.op == "call_method" and
                                                                      node.target in ("add", "add_"))


def _depends_on(node, source: fx.Node) -> bool:
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if not isinstance(n, fx.Node) or n in seen:
            continue
        if n is source:
            return True
        seen.add(n)
        todo.extend(n.all_input_nodes)
    return False


def _scale(r: torch.Tensor, alpha) -> torch.Tensor:
    return r * _per_sample(alpha, r)


def _copy(graph: fx.Graph) -> tuple[fx.Graph, dict]:
    new, val_map = fx.Graph(), {}
    out = new.graph_copy(graph, val_map)
    new.output(out)
    return new, val_map


class TracedResidualAdapter(ScaleOnlyAdapter):
    """A residual block found by tracing: ``out = post(x + branch(x))`` (see the module docstring).

    ``bypass_module(x)`` is the traced graph with the add replaced by ``x`` (``post(x)``), and
    ``scaled_module(x, alpha)`` the graph with the branch multiplied by alpha (eq. 1)."""

    bypassable = True

    def __init__(self, unit: nn.Module, graph: fx.Graph, add: fx.Node, x: fx.Node, branch: fx.Node):
        super().__init__(unit)
        # bypass: every use of the add's result reads the input instead; the branch is dead code
        g_bypass, m = _copy(graph)
        m[add].replace_all_uses_with(m[x])
        g_bypass.erase_node(m[add])
        gm = fx.GraphModule(unit, g_bypass, class_name=f"{type(unit).__name__}Bypass")
        gm.graph.eliminate_dead_code()
        gm.recompile()
        gm.delete_all_unused_submodules()  # the branch's modules are not referenced: never called
        self.bypass_module = gm
        # soft: the add's branch operand times alpha, a second input (eq. 1 on the residual branch)
        g_soft, m = _copy(graph)
        with g_soft.inserting_after(m[x]):
            alpha = g_soft.placeholder("alpha")
        with g_soft.inserting_before(m[add]):
            scaled = g_soft.call_function(_scale, (m[branch], alpha))
        m[add].args = tuple(scaled if a is m[branch] else a for a in m[add].args)
        self.scaled_module = fx.GraphModule(unit, g_soft, class_name=f"{type(unit).__name__}Scaled")

    def bypass(self, x):
        return self.bypass_module(x)

    def scaled(self, x, alpha):
        return self.scaled_module(x, alpha)


def _shape_change(input_shape, output_shape) -> str | None:
    if not input_shape or not output_shape or tuple(input_shape) == tuple(output_shape):
        return None
    parts = []
    if len(input_shape) >= 2 and len(output_shape) >= 2 and input_shape[1] != output_shape[1]:
        parts.append(f"{input_shape[1]}->{output_shape[1]} channels")
    if tuple(input_shape[2:]) != tuple(output_shape[2:]):
        parts.append("x".join(map(str, input_shape[2:])) + "->" + "x".join(map(str, output_shape[2:])) + " positions")
    return "the block changes shape " + ", ".join(parts or [f"{tuple(input_shape)}->{tuple(output_shape)}"])


def _false_flags(unit: nn.Module) -> list[str]:
    """Boolean attributes of the block that are False (e.g. ``use_res_connect``): the likely switch."""
    return [k for k, v in vars(unit).items() if isinstance(v, bool) and v is False and not k.startswith("_")
            and k != "training"]


def trace_residual(unit: nn.Module, input_shape=None, output_shape=None) -> ScaleOnlyAdapter:
    """:class:`TracedResidualAdapter` when ``unit``'s traced forward has a residual add on its
    input; otherwise a :class:`ScaleOnlyAdapter` whose ``reason`` says what was found."""
    changed = _shape_change(input_shape, output_shape)
    try:
        graph = _TopLevelTracer().trace(unit)
    except Exception as exc:  # data-dependent control flow, unsupported ops, several inputs, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = f"could not be traced with torch.fx to find its residual add ({first[:120]})"
        return ScaleOnlyAdapter(unit, why + (f"; {changed}" if changed else "") +
                                ": give it `residual` and `shortcut` attributes to make it bypassable")
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return ScaleOnlyAdapter(unit, f"its forward takes {len(placeholders)} inputs; only single-input blocks "
                                      "are bypassed")
    x = placeholders[0]
    found = []
    for node in graph.nodes:
        if not _is_add(node) or len(node.args) < 2:
            continue
        a, b = node.args[0], node.args[1]
        for shortcut, branch in ((a, b), (b, a)):
            if shortcut is x and isinstance(branch, fx.Node) and branch is not x and _depends_on(branch, x):
                found.append((node, branch))
                break
    if len(found) == 1:
        return TracedResidualAdapter(unit, graph, found[0][0], x, found[0][1])
    if len(found) > 1:
        return ScaleOnlyAdapter(unit, f"{len(found)} adds take the block's input when traced; which one is the "
                                      "residual is ambiguous: give it `residual` and `shortcut` attributes")
    flags = _false_flags(unit)
    detail = "; ".join(filter(None, [", ".join(f"{f} is False" for f in flags), changed]))
    if flags and changed:
        detail = ", ".join(f"{f} is False" for f in flags) + f": {changed}"
    return ScaleOnlyAdapter(unit, "no residual add found when traced" + (f" ({detail})" if detail else
                                                                          " (its output is not input + branch)"))


def adapter_for(unit: nn.Module, kind: str, input_shape=None, output_shape=None) -> ScaleOnlyAdapter:
    """How ``unit`` runs scaled and bypassed: declared ``residual``/``shortcut`` attributes, a
    branch, a residual add found by tracing, or scale-only with the reason."""
    if hasattr(unit, "residual") and hasattr(unit, "shortcut"):
        adapter = ResidualAdapter(unit)
        if not adapter.bypassable:
            changed = _shape_change(input_shape, output_shape)
            adapter.reason = "its shortcut is None" + (f" ({changed})" if changed else "")
        return adapter
    if kind == "branch":
        adapter = BranchAdapter(unit)
        if not adapter.bypassable:
            adapter.reason = "a branch without an integer out_features (the width of the zeros that replace it)"
        return adapter
    return trace_residual(unit, input_shape, output_shape)


def _per_sample(alpha, like: torch.Tensor):
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        return alpha.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)
    return alpha


def discover_residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """Modules of ``model`` whose own ``forward`` adds its input to a branch computed from it
    (found by tracing, :func:`trace_residual`), outermost first, in definition order: how the
    block classes of a model are found when layerwise does not know their names."""
    found: list[tuple[str, nn.Module, str]] = []
    for name, mod in model.named_modules():
        if not name or any(name.startswith(p + ".") for p, _, _ in found):
            continue
        if is_leaf_layer(mod) or isinstance(mod, (nn.Sequential, nn.ModuleList, nn.ModuleDict)) \
                or not any(True for _ in mod.children()):
            continue
        if isinstance(trace_residual(mod), TracedResidualAdapter):
            found.append((name, mod, "residual"))
    return found


def find_units(model: nn.Module, block_types: Iterable[type] = ()) -> list[tuple[str, nn.Module, str]]:
    """The calibratable units of ``model`` in definition order; a clear error when there is none.

    The blocks :func:`layerwise.layers.find_layers` lists (a ``block_kind``, a well-known block
    class name, or ``block_types``); when there is none, every module of the classes that have a
    residual add on their input in some module (:func:`discover_residual_blocks`): the instances
    without one (a Python attribute switched it off) are units that cannot be bypassed."""
    units = find_layers(model, "block", block_types)
    if not units:  # every module of the classes that have a residual add: those without one are units too
        found = discover_residual_blocks(model)
        units = find_layers(model, "block", tuple({type(m): None for _, m, _ in found})) if found else []
    if not units:
        raise LWACError(
            f"{type(model).__name__} has no calibratable unit (residual block, inverted residual, branch or "
            "recurrent stage, and no module whose forward adds its input to a branch of it): pass "
            "block_types=(YourBlockClass,) to lwac.attach")
    return units
