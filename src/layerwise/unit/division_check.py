"""How the division approximations decide on real data, at the calibrated thresholds (section 2.2).

For every UnIT layer, on validation inputs captured as the dense model runs, every MAC pair with
both operands nonzero is decided by exact division and by each approximation;
:func:`~layerwise.unit.division.decision_agreement` gives the fraction that agree. The average
loop steps per division (shift iterations for ``bitshift``; comparisons down a balanced and a
calibrated pivot tree for ``binary_tree``) are measured on the same control terms (Linear: the
nonzero inputs; Conv: the nonzero weights), for the MCU cost model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .agreement import capture_inputs
from .convert import unit_layers
from .division import (balanced_tree, bitshift_exponent, calibrate_pivots, decision_agreement,
                       tree_exponent)
from .layers import UnITLinear
from .reference import conv_columns

APPROXIMATIONS = ("bitshift", "binary_tree", "bitmask")


@dataclass
class DivisionCheck:
    """Per-layer decision agreement and steps, and their MAC-weighted totals."""

    agreement: dict[str, dict[str, float]] = field(default_factory=dict)   # layer -> method -> frac
    pairs: dict[str, int] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)       # layer -> kind -> avg
    overall: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def _pairs(m: nn.Module, x: torch.Tensor):
    """``(T, x_values, w_values, control)`` chunks covering every MAC pair of the layer on ``x``."""
    w = m.weight.detach()
    t = m.unit_threshold.detach()
    out = w.shape[0]
    g = t.numel()
    og = out // g
    if isinstance(m, UnITLinear):
        x2 = x.reshape(-1, w.shape[1])
        for k in range(g):
            yield t[k], x2[:, None, :], w[k * og:(k + 1) * og][None], "x"
        return
    cols, w2, _ = conv_columns(x, w, stride=m.stride, padding=m.padding, dilation=m.dilation,
                               groups=m.groups, padding_mode=m.padding_mode)
    ogc = out // m.groups
    step = math.gcd(og, ogc)      # blocks of outputs sharing one threshold group and conv group
    for o in range(0, out, step):
        yield (t[o // og], cols[:, o // ogc][:, None], w2[o:o + step][None, :, :, None], "w")


def check_divisions(model: nn.Module, x_val: torch.Tensor) -> DivisionCheck:
    """Agreement of each approximation with exact division on ``x_val`` (module docstring)."""
    # capture with UnIT disabled: the calibration statistics are the dense model's
    flags = {n: m.enabled for n, m in unit_layers(model)}
    for _, m in unit_layers(model):
        m.enabled = False
    try:
        inputs = capture_inputs(model, x_val)
    finally:
        for n, m in unit_layers(model):
            m.enabled = flags[n]
    res = DivisionCheck()
    tot_agree = {a: 0.0 for a in APPROXIMATIONS}
    tot_pairs = 0
    for name, m in unit_layers(model):
        if name not in inputs:
            continue
        x = inputs[name]
        agree = {a: 0.0 for a in APPROXIMATIONS}
        n_pairs = 0
        for t, xv, wv, control in _pairs(m, x):
            xb, wb = torch.broadcast_tensors(xv, wv)
            n = int(((xb != 0) & (wb != 0)).sum())
            if n == 0:
                continue
            for a in APPROXIMATIONS:
                agree[a] += decision_agreement(t, xv, wv, a, control=control) * n
            n_pairs += n
        res.pairs[name] = n_pairs
        res.agreement[name] = {a: (agree[a] / n_pairs if n_pairs else 1.0) for a in APPROXIMATIONS}
        for a in APPROXIMATIONS:
            tot_agree[a] += agree[a]
        tot_pairs += n_pairs
        c = (x if isinstance(m, UnITLinear) else m.weight.detach()).abs().reshape(-1)
        c = c[c > 0]
        if c.numel():
            _, shift = bitshift_exponent(c)
            _, bal = tree_exponent(c, balanced_tree())
            _, cal = tree_exponent(c, calibrate_pivots(c))
            res.steps[name] = {"bitshift": float(shift.double().mean()),
                               "binary_tree_balanced": float(bal.double().mean()),
                               "binary_tree_calibrated": float(cal.double().mean())}
    res.overall = {a: (tot_agree[a] / tot_pairs if tot_pairs else 1.0) for a in APPROXIMATIONS}
    return res
