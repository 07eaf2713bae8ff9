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
* :class:`ScaleOnlyAdapter` (anything else: recurrent stages, inverted residuals that change
  shape, foreign blocks): soft is ``a * unit(x)``; never bypassed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..layers import find_layers
from .config import LWACError


class ScaleOnlyAdapter:
    bypassable = False

    def __init__(self, unit: nn.Module):
        self.unit = unit

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


def adapter_for(unit: nn.Module, kind: str) -> ScaleOnlyAdapter:
    if hasattr(unit, "residual") and hasattr(unit, "shortcut"):
        return ResidualAdapter(unit)
    if kind == "branch":
        return BranchAdapter(unit)
    return ScaleOnlyAdapter(unit)


def _per_sample(alpha, like: torch.Tensor):
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        return alpha.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)
    return alpha


def find_units(model: nn.Module, block_types: Iterable[type] = ()) -> list[tuple[str, nn.Module, str]]:
    """The calibratable units of ``model`` in definition order; a clear error when there is none."""
    units = find_layers(model, "block", block_types)
    if not units:
        raise LWACError(
            f"{type(model).__name__} has no calibratable unit (residual block, inverted residual, branch or "
            "recurrent stage): pass block_types=(YourBlockClass,) to lwac.attach")
    return units
