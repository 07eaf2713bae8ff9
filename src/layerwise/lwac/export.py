"""Exporting an LWAC model with its control flow kept: ``torch.cond`` under ``torch.export``.

Tracing (``torch.jit.trace``, ONNX export by tracing) records the ONE path the example input
took and silently drops every other; the ACU's Python fast path cannot be scripted either.
:func:`exportable` builds a plain module in which every gated unit is a :class:`CondGate`:

    R = sigmoid(w . mean_positions(x) + b)          (the unit's controller, fused)
    z = gamma * R - p_i                              (eq. 2's argument; p_i = lambda * m * C_i)
    out = torch.cond(z < logit(threshold), bypass, unit, (x,))

and :func:`export` runs ``torch.export.export`` on it, so the graph holds one ``cond`` per gated
unit with both branches. Each gate's pressure ``p_i`` is a BUFFER of the program (part of its
state, a graph input in the exported signature): whatever runs it may overwrite it between calls
(:meth:`ExportedLWAC.set_pressure`).

Limits outside Python (documented, not solved here): the resource monitor (psutil, RAPL, the
battery), the PI budget controller and eq. (4)'s cost refresh are Python code between
inferences; an exported program only decides from its input and the pressures it is given. A
C++ / mobile runtime must read its own counters and compute p_i = lambda * m * C_i itself
(lambda from its own latency loop, m from battery and memory, C_i from the costs stored with
the program: :func:`export` returns them). Only batch 1 is supported (one decision per call),
and only the ``neural`` / ``learned`` policies with a linear controller on channel means, or the
``heuristic`` policy (R fixed per unit), in ``hard`` mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .config import LWACError
from .runtime import LWACModel, _replace


class CondGate(nn.Module):
    """One gated unit with its decision in the graph (batch 1)."""

    def __init__(self, unit: nn.Module, adapter, weight: torch.Tensor | None, bias: float, relevance: float,
                 gamma: float, z_threshold: float, index: int):
        super().__init__()
        self.unit = unit
        self.shortcut = getattr(unit, "shortcut", None)
        # a block whose residual add was found by tracing: its bypass graph (the input, through
        # whatever follows the add)
        self.traced_bypass = getattr(adapter, "bypass_module", None)
        self.act = getattr(unit, "act", None) or nn.Identity()
        self.out_features = getattr(adapter, "out_features", None)
        self.learned = weight is not None
        self.register_buffer("weight", weight.detach().clone() if weight is not None else torch.zeros(1))
        self.bias = float(bias)
        self.relevance = float(relevance)
        self.gamma = float(gamma)
        self.z_threshold = float(z_threshold)
        self.index = index
        self.register_buffer("pressure", torch.zeros(()))

    def _bypass(self, x):
        if self.traced_bypass is not None:
            return self.traced_bypass(x)
        if self.shortcut is None:
            return x.new_zeros((x.shape[0], self.out_features))
        return self.act(self.shortcut(x))

    def _run(self, x):
        return self.unit(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.learned:
            s = x.flatten(2).mean(dim=2) if x.dim() > 2 else x
            r = torch.sigmoid(s @ self.weight + self.bias)[0]  # R_i(x) in [0, 1]
        else:
            r = x.new_full((), self.relevance)
        z = self.gamma * r - self.pressure  # eq. (2)'s argument
        return torch.cond(z < self.z_threshold, self._bypass, self._run, (x,))


@dataclass
class ExportedLWAC:
    program: object  # torch.export.ExportedProgram
    gated_units: list[str]
    costs: list[float]  # C_i of each gated unit (eq. 4), for the runtime that computes the pressures
    module: nn.Module  # program.module(), kept so that pressures set on it persist

    def set_pressure(self, pressure) -> None:
        """Overwrite each gate's p_i = lambda * m * C_i (one value per gated unit, in order)."""
        p = list(pressure)
        if len(p) != len(self.gated_units):
            raise LWACError(f"{len(self.gated_units)} pressures needed (one per gated unit), not {len(p)}")
        for name, v in zip(self.gated_units, p):
            self.module.get_buffer(f"{name}.pressure").fill_(float(v))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def exportable(lw: LWACModel) -> tuple[nn.Module, list[int]]:
    """A plain module with one :class:`CondGate` per gated unit (see the module docstring)."""
    cfg = lw.config
    if cfg.mode != "hard":
        raise LWACError("only hard mode can be exported with control flow (soft mode has no branch)")
    clone = lw.clone()
    model = copy.deepcopy(clone.model)
    gates, gated = [], []
    for acu_src in clone.acus:
        i = acu_src.unit_index
        acu = model.get_submodule(lw.units[i].name)
        if not acu.gated:
            _replace(model, lw.units[i].name, acu.unit)
            continue
        weight, bias = None, 0.0
        if cfg.policy != "heuristic":
            c = acu.controller
            if c is None or c.fc1 is not None or c.summary != "mean":
                raise LWACError(f"unit {lw.units[i].name}: only a linear controller on channel means can be exported")
            c.fuse()
            weight, bias = c.fc2.weight[0].detach(), float(c.fc2.bias.detach()[0])
        g = CondGate(acu.unit, acu._adapter, weight, bias, lw.state.relevance[i], cfg.gamma, cfg.z_threshold,
                     len(gated))
        g.pressure.fill_(lw.state.pressure[i])
        _replace(model, lw.units[i].name, g)
        gates.append(g)
        gated.append(i)
    return model.eval(), gated


def export(lw: LWACModel, example_input: torch.Tensor) -> ExportedLWAC:
    """``torch.export.export`` of :func:`exportable` at batch 1; the graph keeps every branch."""
    if example_input.shape[0] != 1:
        raise LWACError(f"export is per input (batch 1), not batch {example_input.shape[0]}")
    m, gated = exportable(lw)
    with torch.no_grad():
        program = torch.export.export(m, (example_input,))
    return ExportedLWAC(program, [lw.units[i].name for i in gated], [lw.state.cost[i] for i in gated],
                        program.module())


def count_conds(program) -> int:
    """How many ``cond`` nodes the exported graph holds (one per gated unit when control flow is kept)."""
    return sum(1 for n in program.graph.nodes if n.op == "call_function" and "cond" in str(n.target))

