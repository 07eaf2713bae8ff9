"""Eq. (2)-(3): redundancy R_l, pruning ratio P_l and bit width B_l of every layer.

R_l (the paper: "redundancy in weights via the layer-wise weight variance") is mapped as
R_l = 1 - Var(W_l) / max_k Var(W_k): the layer whose weights spread the most is the least
redundant (R = 0); layers whose weights crowd around their mean (many near-duplicate, near-zero
weights) approach R = 1. With the usual fan-based initialisation wide layers have small
variances, so they come out redundant, which is where unstructured pruning pays most.

P_l = clip(gamma * (1 - I_l) + delta * R_l, 0, p_max)                       (eq. 2)
B_l = clip(round(B_max - lam * (1 - I_l)), B_min, B_max), round half up     (eq. 3)

The budget search (eq. 6, :mod:`.budget`) scales gamma, delta and lam together by one knob t >= 0:
t = 0 keeps every layer dense at B_max bits, and a larger t compresses every layer more.
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from .config import AdaLayerConfig, Allocation


def redundancy(targets: list[tuple[str, nn.Module]]) -> dict[str, float]:
    variances = {name: float(mod.weight.detach().float().var()) if mod.weight.numel() > 1 else 0.0
                 for name, mod in targets}
    top = max(variances.values(), default=0.0)
    return {k: (1.0 - v / top if top > 0 else 0.0) for k, v in variances.items()}


def pruning_ratio(importance: float, redundancy_: float, gamma: float, delta: float, p_max: float) -> float:
    """Eq. (2)."""
    return float(np.clip(gamma * (1.0 - importance) + delta * redundancy_, 0.0, p_max))


def bit_width(importance: float, lam: float, b_min: int, b_max: int) -> int:
    """Eq. (3), rounding half up."""
    return int(np.clip(math.floor(b_max - lam * (1.0 - importance) + 0.5), b_min, b_max))


def allocate(importance: dict[str, float], redundancy_: dict[str, float], knob: float,
             config: AdaLayerConfig) -> Allocation:
    gamma, delta, lam = config.gamma * knob, config.delta * knob, config.lam * knob
    alloc = Allocation(knob=float(knob), gamma=gamma, delta=delta, lam=lam)
    for name, imp in importance.items():
        alloc.prune_ratio[name] = pruning_ratio(imp, redundancy_[name], gamma, delta, config.p_max)
        alloc.bits[name] = bit_width(imp, lam, config.b_min, config.b_max)
    return alloc


def saturating_knob(importance: dict[str, float], config: AdaLayerConfig) -> float:
    """The smallest knob at which every layer with I_l < 1 sits at p_max and B_min."""
    need = 0.0
    for imp in importance.values():
        gap = 1.0 - imp
        if gap <= 0:
            continue
        if config.gamma > 0:
            need = max(need, config.p_max / (config.gamma * gap))
        if config.lam > 0:
            need = max(need, (config.b_max - config.b_min + 0.5) / (config.lam * gap))
    return need * 1.0001 + 1e-9
