"""Measured division loop steps of a UnIT model on real inputs, for the MCU cost model.

The cycle model (:mod:`layerwise.unit.mcu`) charges each threshold division a fixed cost plus a
cost per loop step: shift-loop iterations for ``bitshift``, tree comparisons for ``binary_tree``
(0 for ``exact`` and ``bitmask``). Instead of a profile's assumed average, :func:`measure_steps`
counts the steps on the control terms the divisions actually see while the model runs:

* Linear (eq. 2): the control term is each nonzero input ``|x_i|``; an input feeding ``G``
  threshold groups is divided ``G`` times (one ratio per group), as in :mod:`.counts`;
* Conv (eq. 3): the control term is each nonzero weight ``|w|``; its ratio is computed once per
  inference (``divisions = samples * nonzero weights``, as in :mod:`.counts`).

Steps are :func:`layerwise.unit.division.division_steps` of those values under each layer's own
``division`` and ``division_opts`` (the same function the compiled kernels' counters agree with),
so ``steps / divisions`` is the measured average and the number of divisions equals the counters'.

:func:`calibrate_trees` gives every layer its own pivot tree from validation control terms
(section 2.2: "pivot points can be adapted via calibration").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LayerwiseError
from .agreement import capture_inputs
from .convert import unit_layers
from .division import calibrate_pivots, division_steps
from .layers import UnITLinear


@dataclass
class StepCount:
    """Divisions and their loop steps over an evaluation (totals; per layer and summed)."""

    divisions: int = 0
    steps: int = 0
    per_layer: dict[str, tuple[int, int]] = field(default_factory=dict)   # name -> (divisions, steps)

    @property
    def average(self) -> float:
        return self.steps / self.divisions if self.divisions else 0.0

    def to_json(self) -> dict:
        return {"divisions": self.divisions, "steps": self.steps, "average_steps": self.average,
                "per_layer": {k: {"divisions": d, "steps": s, "average_steps": s / d if d else 0.0}
                              for k, (d, s) in self.per_layer.items()}}


def _layer_steps(m: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    g = m.unit_threshold.numel()
    if isinstance(m, UnITLinear):
        c = x.detach().reshape(-1).abs()
        c = c[c > 0]
        d = int(c.numel()) * g
        s = int(division_steps(c, m.division, **m.division_opts).sum()) * g if c.numel() else 0
        return d, s
    w = m.weight.detach().reshape(-1).abs()
    w = w[w > 0]
    b = int(x.shape[0])
    s = int(division_steps(w, m.division, **m.division_opts).sum()) if w.numel() else 0
    return b * int(w.numel()), b * s


@torch.no_grad()
def measure_steps(model: nn.Module, dataset, *, device: str = "cpu", batch_size: int = 256
                  ) -> StepCount:
    """Divisions and loop steps of ``model`` (converted, thresholds set) over ``dataset``.

    The model runs with UnIT enabled as it is (later layers see the inputs UnIT's skipping
    produced); counters are not touched. ``dataset`` yields ``(x, y)``.
    """
    layers = unit_layers(model)
    if not layers:
        raise LayerwiseError("measure_steps needs a converted model; call layerwise.unit.convert first")
    tot = {n: [0, 0] for n, _ in layers}

    def make(name):
        def hook(mod, args):
            d, s = _layer_steps(mod, args[0])
            tot[name][0] += d
            tot[name][1] += s
        return hook

    handles = [m.register_forward_pre_hook(make(n)) for n, m in layers if m.enabled]
    counting = {n: m.counting for n, m in layers}
    was_training = model.training
    model.eval()
    try:
        for _, m in layers:
            m.counting = False
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        for xb, _ in loader:
            model(xb.to(device))
    finally:
        for h in handles:
            h.remove()
        for n, m in layers:
            m.counting = counting[n]
        model.train(was_training)
    res = StepCount(per_layer={n: (d, s) for n, (d, s) in tot.items()})
    res.divisions = sum(d for d, _ in res.per_layer.values())
    res.steps = sum(s for _, s in res.per_layer.values())
    return res


def calibrate_trees(model: nn.Module, x_val: torch.Tensor) -> dict[str, float]:
    """Give each UnIT layer ``division="binary_tree"`` with a pivot tree calibrated on its
    validation control terms (Linear: the inputs the dense model feeds it on ``x_val``; Conv: its
    weights). Returns each tree's average comparisons on those values."""
    layers = unit_layers(model)
    flags = {n: m.enabled for n, m in layers}
    for _, m in layers:
        m.enabled = False
    try:
        inputs = capture_inputs(model, x_val)
    finally:
        for n, m in layers:
            m.enabled = flags[n]
    depth = {}
    for name, m in layers:
        c = (inputs[name] if isinstance(m, UnITLinear) and name in inputs else m.weight.detach())
        c = c.abs().reshape(-1)
        c = c[c > 0]
        tree = calibrate_pivots(c if c.numel() else torch.ones(1))
        m.division = "binary_tree"
        m.division_opts = {"tree": tree}
        depth[name] = float(tree.average_depth)
    return depth


__all__ = ["StepCount", "calibrate_trees", "measure_steps"]
