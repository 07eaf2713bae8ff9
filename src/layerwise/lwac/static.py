"""The static baseline LWAC must beat: the same network with the best k blocks removed for good.

"Best" is chosen on the VALIDATION split, greedily (the search of static layer-dropping
baselines such as Veit et al., "Residual Networks Behave Like Ensembles of Relatively Shallow
Networks", arXiv:1605.06431, where deleting blocks of a stochastic-depth network is the natural
static counterpart): for k = 1, 2, ... the block added to the removed set is the one whose
removal, together with the blocks already removed, keeps the most validation samples correct
(ties: the larger latency saved, then the earlier block). The removed set is then fixed: every
input takes the same path. :func:`static_model` builds that network as a plain model (the
removed blocks replaced by their bypass: ``act(shortcut(x))``), with no ACU, no controller and no
bookkeeping, so its latency is the static network's own.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

from .calibrate import _check_split, _tensors
from .runtime import LWACModel

log = logging.getLogger(__name__)


@dataclass
class DropSet:
    k: int
    units: list[int]  # unit indices removed (in the order the greedy search chose them)
    names: list[str]
    val_accuracy: float
    est_latency_ratio: float  # 1 - sum of the removed units' latencies / measured dense latency

    def to_json(self) -> dict:
        return {"k": self.k, "units": self.names, "val_accuracy": self.val_accuracy,
                "est_latency_ratio": self.est_latency_ratio}


@torch.no_grad()
def greedy_drop_sets(lwac: LWACModel, val, max_k: int, *, device: str = "cpu", batch_size: int = 256,
                     dense_ms: float | None = None) -> list[DropSet]:
    """The best set of k removed blocks for k = 1..max_k, greedily on validation (see the module).
    ``dense_ms``: the dense latency the estimated ratios are relative to (default: measured at attach)."""
    _check_split(val, "the static drop-k baseline")
    x, y = _tensors(val, device)
    cand = list(lwac.bypassable)
    max_k = min(max_k, len(cand))
    unit_ms = [u.latency_ms or 0.0 for u in lwac.units]
    dense_ms = dense_ms or lwac.dense_ms or sum(unit_ms) or 1.0
    chosen: list[int] = []
    out: list[DropSet] = []

    def correct(dropped: list[int]) -> int:
        n = 0
        with lwac.forced({i: (i in dropped) for i in lwac.bypassable}):
            for s in range(0, len(x), batch_size):
                n += int((lwac.model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
        return n

    for k in range(1, max_k + 1):
        best = None
        for i in cand:
            if i in chosen:
                continue
            key = (correct(chosen + [i]), unit_ms[i], -i)
            if best is None or key > best[0]:
                best = (key, i)
        chosen = chosen + [best[1]]
        ratio = max(0.0, 1.0 - sum(unit_ms[i] for i in chosen) / dense_ms)
        out.append(DropSet(k, list(chosen), [lwac.units[i].name for i in chosen], best[0][0] / len(x), ratio))
        log.info("static drop-%d: %s, validation accuracy %.4f", k, out[-1].names, out[-1].val_accuracy)
    lwac.reset_counts()
    return out


class Bypassed(nn.Module):
    """A removed unit: a residual block becomes ``act(shortcut(x))`` (its residual branch is not
    even kept); a branch of a multi-branch model becomes zeros of its output size (what the
    ACU's bypass feeds the head)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        sc = getattr(block, "shortcut", None)
        self.shortcut = sc
        self.act = getattr(block, "act", None) or nn.Identity()
        self.out_features = getattr(block, "out_features", None)
        for attr in ("index", "block_kind"):  # a parent may read them (MultiBranchCNN reads branch.index)
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))
        if sc is None and not isinstance(self.out_features, int):
            raise ValueError(f"{type(block).__name__} has no shortcut and no out_features: it cannot be removed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return x.new_zeros((x.shape[0], self.out_features))
        return self.act(self.shortcut(x))


def static_model(base: nn.Module, names: list[str]) -> nn.Module:
    """A copy of ``base`` (a model WITHOUT ACUs) with the blocks ``names`` removed."""
    model = copy.deepcopy(base).eval()
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Bypassed(getattr(parent, child)))
    return model
