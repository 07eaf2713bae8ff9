"""Fair MAC accounting and MCU cost per compared variant (UnIT paper section 4.1, Fig. 5-7).

Every variant is counted on ONE common basis, and on its own runtime beside it (labelled):

* the COMMON basis (``VariantCost.runtime``, ``macs_executed``, ``skipped_fraction``, ``mcu``): a
  runtime that skips every MAC with a zero operand, zero weight or zero input (:mod:`.mcu`'s
  ``"zero_skip"``: UnIT's loop at ``T = 0``), plus UnIT's threshold skips for the UnIT variants
  (runtime ``"unit"``: the same loop and tests, plus the threshold divisions). Magnitude pruning's
  zero weights, FATReLU's and ReLU's zero activations and UnIT's skips are therefore all credited
  the same way, and so is the dense model (``dense`` and ``dense+zero-skip`` have the same
  common-basis figures). The trade-off curves and the equal-MAC comparison use this basis.
* each variant's OWN runtime (``VariantCost.own``):

  =================  ==================  ==================================================
  variant            own runtime         MACs executed
  =================  ==================  ==================================================
  dense              ``dense``           every MAC
  dense+zero-skip    ``zero_skip``       MACs with both operands nonzero
  magnitude          ``sparse_weights``  MACs whose weight is nonzero (a CSR-like runtime)
  fatrelu            ``zero_skip``       MACs with both operands nonzero
  unit, unit+...     ``unit``            UnIT's counters: minus zero operands and threshold
  =================  ==================  ==================================================

The counts come from :class:`~layerwise.unit.counts.MacCounts` of converted layers (thresholds 0
for the non-UnIT variants: exact counts, dense outputs). :func:`counted_evaluate` also counts the
``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers that a conversion left alone (e.g. a group
count that does not divide their outputs) as zero-skipping layers at ``T = 0``
(``left_alone`` counts: tests, no divisions). MACs of layers nothing can count (e.g. an LSTM:
``other_macs`` = the model's MACs from :func:`layerwise.measure.count_macs` minus everything
counted, per inference) are charged as executed to every variant, dense MACs on the MCU.
Pass ``model_macs`` to :func:`variant_cost` so that ``macs`` is the model's for every variant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LayerwiseError
from .convert import per_layer_counts, reset_counts, total_counts, unit_layers
from .counts import MacCounts, combine_layers
from .layers import UNIT_LAYER_TYPES
from .mcu import McuEstimate, McuWork, estimate, get_profile, work_for
from .reference import unit_conv, unit_linear

#: each variant's own runtime
RUNTIME_OF = {"dense": "dense", "dense+zero-skip": "zero_skip", "magnitude": "sparse_weights",
              "fatrelu": "zero_skip", "unit": "unit", "unit@p20": "unit", "unit+magnitude": "unit",
              "unit+fatrelu": "unit"}
#: the common basis of non-UnIT variants (UnIT variants: ``"unit"``, the same loop + threshold)
COMMON_RUNTIME = "zero_skip"
COMMON_BASIS = ("a runtime that skips every MAC with a zero operand (zero weight or zero input), "
                "plus UnIT's threshold skips for UnIT variants")


def executed_macs(counts: MacCounts, runtime: str) -> int:
    """MACs ``runtime`` executes for ``counts`` (table in the module docstring)."""
    if runtime == "dense":
        return counts.total
    if runtime == "sparse_weights":
        return counts.total - counts.zero_weight
    if runtime == "zero_skip":
        return counts.total - counts.zero_weight - counts.zero_input
    if runtime == "unit":
        return counts.executed
    raise LayerwiseError(f"unknown runtime {runtime!r}; use dense, sparse_weights, zero_skip or unit")


# ----------------------------------------------------------------------------- counting

_PLAIN = (nn.Linear, nn.Conv1d, nn.Conv2d)


def left_alone_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Plain ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers of ``model`` (not UnIT layers,
    forward not overridden) that :func:`count_left_alone` counts."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, UNIT_LAYER_TYPES) or not isinstance(m, _PLAIN):
            continue
        base = next(b for b in _PLAIN if isinstance(m, b))
        if type(m).forward is base.forward and not isinstance(m.weight, nn.parameter.UninitializedParameter):
            out.append((name, m))
    return out


@contextmanager
def count_left_alone(model: nn.Module) -> Iterator[dict[str, MacCounts]]:
    """Count the MACs of the model's plain Linear / Conv layers (:func:`left_alone_layers`) on a
    zero-skipping runtime while the block runs: ``{name: MacCounts}`` (``+`` over calls; zero
    operands counted as in UnIT at ``T = 0``; ``divisions`` 0: no ratio is computed at T = 0).
    The forward hooks are always removed."""
    counts: dict[str, MacCounts] = {}
    handles = []

    def make(name):
        def hook(mod, args, out):
            x = args[0]
            with torch.no_grad():
                if isinstance(mod, nn.Linear):
                    _, c = unit_linear(x, mod.weight, None, 0.0)
                else:
                    _, c = unit_conv(x, mod.weight, None, 0.0, stride=mod.stride,
                                     padding=mod.padding, dilation=mod.dilation, groups=mod.groups,
                                     padding_mode=mod.padding_mode)
            c.divisions = 0
            counts[name] = counts.get(name, MacCounts()) + c
        return hook

    try:
        for name, m in left_alone_layers(model):
            handles.append(m.register_forward_hook(make(name)))
        yield counts
    finally:
        for h in handles:
            h.remove()


@dataclass
class CountedRun:
    """Accuracy, per-sample hits and exact counters of one model on one split.

    ``counts`` / ``per_layer``: the UnIT layers; ``left_alone`` / ``left_alone_per_layer``: the
    plain Linear / Conv layers counted on a zero-skipping runtime (:func:`count_left_alone`).
    ``hits``: which samples this very evaluation got right (bool, the split's order, on the CPU);
    ``accuracy`` is ``hits.sum() / n`` exactly (None only for a run built without them).
    """

    accuracy: float
    n: int
    counts: MacCounts
    per_layer: dict[str, MacCounts] = field(default_factory=dict)
    left_alone: MacCounts = field(default_factory=MacCounts)
    left_alone_per_layer: dict[str, MacCounts] = field(default_factory=dict)
    hits: torch.Tensor | None = field(default=None, repr=False)


def scored(model: nn.Module, dataset, *, device: str = "cpu", batch_size: int = 256
           ) -> tuple[float, int, torch.Tensor]:
    """``(accuracy, n, hits)`` of ONE pass over ``dataset``: ``hits[i]`` is True when sample ``i``
    (dataset order) is classified right, and ``accuracy = hits.sum() / n`` (the same number
    :func:`layerwise.train.evaluate` gives: correct / n)."""
    from ..train import predict

    pred = predict(model, dataset, device=device, batch_size=batch_size)
    hits = (pred.predicted == pred.targets).cpu()
    n = int(hits.numel())
    return int(hits.sum()) / n, n, hits


def counted_evaluate(model: nn.Module, dataset, *, device: str = "cpu", batch_size: int = 256
                     ) -> CountedRun:
    """Evaluate a converted model, counters reset first; the counts are of this evaluation only
    (UnIT layers, and the plain Linear / Conv layers the conversion left alone), and so are the
    per-sample ``hits`` (recorded in the same pass, see :func:`scored`)."""
    if not unit_layers(model):
        raise LayerwiseError("counted_evaluate needs a converted model; call layerwise.unit.convert first")
    reset_counts(model)
    with count_left_alone(model) as left:
        accuracy, n, hits = scored(model, dataset, device=device, batch_size=batch_size)
    return CountedRun(accuracy=accuracy, n=n, counts=total_counts(model),
                      per_layer=dict(per_layer_counts(model)),
                      left_alone=combine_layers(left.values()), left_alone_per_layer=dict(left),
                      hits=hits)


# ----------------------------------------------------------------------------- cost

@dataclass
class RuntimeFigures:
    """A variant's MACs executed and modelled MCU cost per inference on one runtime."""

    runtime: str
    macs_executed: float
    skipped_fraction: float
    mcu: dict[str, McuEstimate]

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "macs_executed": self.macs_executed,
                "skipped_fraction": self.skipped_fraction,
                "mcu": {k: v.to_json() for k, v in self.mcu.items()}}


@dataclass
class VariantCost:
    """Per-inference MACs and modelled MCU cost of one variant (MCU figures are estimates).

    ``runtime`` / ``macs_executed`` / ``skipped_fraction`` / ``mcu``: the COMMON basis (module
    docstring); ``own``: the variant's own runtime.
    """

    name: str
    runtime: str                   # common basis: "zero_skip", or "unit" for UnIT variants
    macs: int                      # per inference, as defined (counted + other layers)
    macs_executed: float           # per inference, averaged over the evaluated samples
    counts: MacCounts              # totals over the evaluated samples (UnIT layers)
    other_macs: int                # per inference, layers nothing counted (executed)
    mcu: dict[str, McuEstimate]    # per inference, by profile name
    division: str = "exact"
    left_alone: MacCounts = field(default_factory=MacCounts)   # totals, plain layers counted
    own: RuntimeFigures | None = None

    @property
    def skipped_fraction(self) -> float:
        return 1.0 - self.macs_executed / self.macs if self.macs else 0.0

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "basis": COMMON_BASIS, "macs": self.macs,
                "macs_executed": self.macs_executed,
                "skipped_fraction": self.skipped_fraction, "counts": self.counts.to_json(),
                "left_alone_counts": self.left_alone.to_json(),
                "other_macs": self.other_macs, "division": self.division,
                "mcu": {k: v.to_json() for k, v in self.mcu.items()},
                "own_runtime": self.own.to_json() if self.own is not None else None}


def _estimate(parts: list[McuWork], other_macs: int, per: float, p, source: str) -> McuEstimate:
    est = estimate(parts, p)
    breakdown = {n: v * per for n, v in est.breakdown.items()}
    cycles = est.cycles * per
    if other_macs:
        o = estimate(McuWork(macs_executed=int(other_macs)), p).cycles
        breakdown["other_layers_mac"] = o
        cycles += o
    return McuEstimate(cycles=cycles, seconds=cycles / p.clock_hz,
                       energy_j=cycles / p.clock_hz * p.active_power_w, breakdown=breakdown,
                       estimated=True, source=source)


def variant_cost(name: str, model: nn.Module, run: CountedRun, *, runtime: str | None = None,
                 other_macs: int | None = None, model_macs: int | None = None,
                 division: str = "exact", division_steps: float | None = None,
                 profiles=("msp430-swmul", "msp430-hwmul")) -> VariantCost:
    """MACs executed and MCU cost per inference of ``run``, on the common basis and on the
    variant's own runtime (module docstring).

    ``runtime``: the own runtime (default: :data:`RUNTIME_OF`, ``"unit"`` for names starting
    with ``unit``); a variant whose own runtime is ``"unit"`` is counted with its thresholds on
    the common basis, every other must have been counted with thresholds 0. ``model_macs``: the
    model's MACs per inference; what the counters did not count is ``other_macs`` (executed).
    Pass one of the two, not both (neither: 0). ``division_steps``: average shift-loop / tree
    steps per division (``None``: the profile's default, an assumption recorded in the source).
    """
    own_rt = runtime or RUNTIME_OF.get(name) or ("unit" if name.startswith("unit") else None)
    if own_rt is None:
        raise LayerwiseError(f"no runtime known for variant {name!r}; pass runtime=")
    is_unit = own_rt == "unit"
    c, left = run.counts, run.left_alone
    if c.samples <= 0 or run.n <= 0:
        raise LayerwiseError(f"variant {name!r}: no samples were counted; evaluate on a non-empty split")
    if not is_unit and c.threshold:
        raise LayerwiseError(f"variant {name!r} runs on {own_rt!r} but its counts hold threshold "
                             "skips; count it with thresholds 0 (or pass runtime='unit')")
    if other_macs is not None and model_macs is not None:
        raise LayerwiseError("pass other_macs or model_macs, not both")
    per = 1.0 / run.n
    counted = (c.total + left.total) * per
    other = (unconverted_macs(model_macs, counted) if model_macs is not None
             else int(other_macs or 0))
    macs = int(round(counted)) + other
    common_rt = "unit" if is_unit else COMMON_RUNTIME

    def executed(rt: str) -> float:
        left_rt = "zero_skip" if rt == "unit" else rt
        return (executed_macs(c, rt) + executed_macs(left, left_rt)) * per + other

    def mcu_for(rt: str) -> dict[str, McuEstimate]:
        out = {}
        left_rt = "zero_skip" if rt == "unit" else rt
        for prof in profiles:
            p = get_profile(prof)
            steps = None if division_steps is None else division_steps * c.divisions
            parts = [work_for(c, rt, division, profile=p, division_steps=steps)]
            if left.total:
                parts.append(work_for(left, left_rt, profile=p))
            src = f"cycle model: {p.name} ({p.source}); runtime {rt}"
            if rt == "unit" and division in ("bitshift", "binary_tree"):
                src += ("; division steps measured on the control terms" if division_steps is not None
                        else "; division steps: profile default (assumed)")
            out[prof] = _estimate(parts, other, per, p, src)
        return out

    common_exec = executed(common_rt)
    common_mcu = mcu_for(common_rt)
    own_exec = common_exec if own_rt == common_rt else executed(own_rt)
    own_mcu = common_mcu if own_rt == common_rt else mcu_for(own_rt)
    own = RuntimeFigures(runtime=own_rt, macs_executed=own_exec,
                         skipped_fraction=1.0 - own_exec / macs if macs else 0.0, mcu=own_mcu)
    return VariantCost(name=name, runtime=common_rt, macs=macs, macs_executed=common_exec,
                       counts=c, other_macs=other, mcu=common_mcu, division=division,
                       left_alone=left, own=own)


def unconverted_macs(model_macs_total: int, per_inference_converted: float) -> int:
    """MACs per inference of layers nothing counted: the model's count minus the counted ones."""
    return max(int(round(model_macs_total - per_inference_converted)), 0)


__all__ = ["COMMON_BASIS", "COMMON_RUNTIME", "RUNTIME_OF", "CountedRun", "RuntimeFigures",
           "VariantCost", "count_left_alone", "counted_evaluate", "executed_macs",
           "left_alone_layers", "scored", "unconverted_macs", "variant_cost"]
