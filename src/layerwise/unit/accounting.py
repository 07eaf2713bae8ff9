"""Fair MAC accounting and MCU cost per compared variant (UnIT paper section 4.1, Fig. 5-7).

Each variant is charged what ITS OWN runtime would execute (:mod:`layerwise.unit.mcu` runtimes):

=================  ================  ===================================================
variant            runtime           MACs executed
=================  ================  ===================================================
dense              ``dense``         every MAC
magnitude          ``sparse_weights`` MACs whose weight is nonzero (a CSR-like runtime)
fatrelu            ``zero_skip``     MACs with both operands nonzero (activation zero skipping)
unit, unit+...     ``unit``          UnIT's counters: minus zero weights, zero inputs, threshold
=================  ================  ===================================================

The counts come from :class:`~layerwise.unit.counts.MacCounts` of converted layers (thresholds 0
for the non-UnIT variants: exact counts, dense outputs). MACs of layers UnIT cannot convert
(e.g. an LSTM: ``other_macs``, from :func:`layerwise.measure.count_macs`) are charged as executed
to every variant, dense MACs on the MCU.

For ``zero_skip`` the number of zero tests follows the loop of such a runtime: a Linear tests each
input once (a zero skips its row), a Conv tests each input value against each nonzero weight (the
weight-outer SONIC loop), plus one test per zero weight; for ``unit`` the tests are the counters'
``compares``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import LayerwiseError
from .convert import per_layer_counts, reset_counts, total_counts, unit_layers
from .counts import MacCounts
from .layers import UnITLinear
from .mcu import McuEstimate, McuWork, estimate, get_profile, work_for

RUNTIME_OF = {"dense": "dense", "magnitude": "sparse_weights", "fatrelu": "zero_skip",
              "unit": "unit", "unit@p20": "unit", "unit+magnitude": "unit", "unit+fatrelu": "unit"}


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


def zero_skip_compares(model: nn.Module, per_layer: dict[str, MacCounts]) -> int:
    """Zero tests of an activation-sparsity runtime over ``per_layer`` counts (module docstring)."""
    layers = dict(unit_layers(model))
    tests = 0
    for name, c in per_layer.items():
        m = layers[name]
        if isinstance(m, UnITLinear):
            tests += c.total // m.out_features          # samples * in_features: one per input
        else:
            tests += c.compares                         # per (nonzero weight, position) + zero weights
    return tests


@dataclass
class CountedRun:
    """Accuracy and exact counters of one model on one split."""

    accuracy: float
    n: int
    counts: MacCounts
    per_layer: dict[str, MacCounts] = field(default_factory=dict)


def counted_evaluate(model: nn.Module, dataset, *, device: str = "cpu", batch_size: int = 256
                     ) -> CountedRun:
    """Evaluate a converted model, counters reset first; the counts are of this evaluation only."""
    from ..train import evaluate

    if not unit_layers(model):
        raise LayerwiseError("counted_evaluate needs a converted model; call layerwise.unit.convert first")
    reset_counts(model)
    ev = evaluate(model, dataset, device=device, batch_size=batch_size)
    return CountedRun(accuracy=ev.accuracy, n=ev.n, counts=total_counts(model),
                      per_layer=dict(per_layer_counts(model)))


@dataclass
class VariantCost:
    """Per-inference MACs and modelled MCU cost of one variant (MCU figures are estimates)."""

    name: str
    runtime: str
    macs: int                      # per inference, as defined (converted + other layers)
    macs_executed: float           # per inference, averaged over the evaluated samples
    counts: MacCounts              # totals over the evaluated samples (converted layers)
    other_macs: int                # per inference, layers UnIT did not convert
    mcu: dict[str, McuEstimate]    # per inference, by profile name
    division: str = "exact"

    @property
    def skipped_fraction(self) -> float:
        return 1.0 - self.macs_executed / self.macs if self.macs else 0.0

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "macs": self.macs, "macs_executed": self.macs_executed,
                "skipped_fraction": self.skipped_fraction, "counts": self.counts.to_json(),
                "other_macs": self.other_macs, "division": self.division,
                "mcu": {k: v.to_json() for k, v in self.mcu.items()}}


def variant_cost(name: str, model: nn.Module, run: CountedRun, *, runtime: str | None = None,
                 other_macs: int = 0, division: str = "exact", division_steps: float | None = None,
                 profiles=("msp430-swmul", "msp430-hwmul")) -> VariantCost:
    """MACs executed and MCU cost per inference of ``run`` under the variant's runtime.

    ``division_steps``: average shift-loop / tree steps per division (``None``: the profile's
    default, an assumption recorded in the estimate's source).
    """
    runtime = runtime or RUNTIME_OF.get(name) or ("unit" if name.startswith("unit") else None)
    if runtime is None:
        raise LayerwiseError(f"no runtime known for variant {name!r}; pass runtime=")
    c = run.counts
    if c.samples <= 0 or run.n <= 0:
        raise LayerwiseError(f"variant {name!r}: no samples were counted; evaluate on a non-empty split")
    per = 1.0 / run.n
    executed = executed_macs(c, runtime) * per + other_macs
    macs = int(round(c.total * per)) + int(other_macs)
    compares = zero_skip_compares(model, run.per_layer) if runtime == "zero_skip" else None
    mcu = {}
    for prof in profiles:
        p = get_profile(prof)
        steps = None if division_steps is None else division_steps * c.divisions
        est = estimate(work_for(c, runtime, division, profile=p, division_steps=steps,
                                compares=compares), p)
        other = estimate(McuWork(macs_executed=int(other_macs)), p) if other_macs else None
        breakdown = {n: v * per for n, v in est.breakdown.items()}
        cycles = est.cycles * per + (other.cycles if other else 0.0)
        if other:
            breakdown["other_layers_mac"] = other.cycles
        src = f"cycle model: {p.name} ({p.source})"
        if runtime == "unit" and division in ("bitshift", "binary_tree"):
            src += ("; division steps measured on the control terms" if division_steps is not None
                    else "; division steps: profile default (assumed)")
        mcu[prof] = McuEstimate(cycles=cycles, seconds=cycles / p.clock_hz,
                                energy_j=cycles / p.clock_hz * p.active_power_w,
                                breakdown=breakdown, estimated=True, source=src)
    return VariantCost(name=name, runtime=runtime, macs=macs, macs_executed=executed, counts=c,
                       other_macs=int(other_macs), mcu=mcu, division=division)


def unconverted_macs(model_macs_total: int, per_inference_converted: float) -> int:
    """MACs per inference of layers left alone: the model's count minus the converted layers'."""
    return max(int(round(model_macs_total - per_inference_converted)), 0)


__all__ = ["RUNTIME_OF", "CountedRun", "VariantCost", "counted_evaluate", "executed_macs",
           "unconverted_macs", "variant_cost", "zero_skip_compares"]
