"""A cycle model of UnIT and its baselines on an MSP430FR5994-class MCU, fitted to a simulator.

Every figure this module returns is an ESTIMATE (``estimated=True``) from cycle counts per
operation, not a measurement; its ``source`` names the profile. The model charges, per inference:

* ``mac``: one executed MAC (operand loads + multiply + add into the accumulator + its loop step);
  with a software multiply its cost also grows by ``multiply_step`` per bit of ``|w|`` above the
  profile's ``default_multiply_bits`` when the bits are counted (``McuWork.multiply_steps``);
* ``compare_branch_keep`` / ``compare_branch_skip``: one threshold compare-and-branch (UnIT's
  ``|z| > t``) that lets the MAC run (added to it) / skips it (the whole skipped iteration);
  ``zero_test_keep`` / ``zero_test_skip`` the same for a zero-operand test (zero-skipping build);
* ``division[method]``: one threshold ratio, plus ``division_step[method]`` per shift-loop
  iteration (bitshift, bitmask) or tree comparison (binary_tree);
* ``load``: one extra memory read (a sparse runtime's index);
* the exported runtime's loop overhead (:mod:`layerwise.export`): ``row`` per loop row (a
  conv weight, a Linear input), ``row_test`` per zero test of a row, ``segment`` per start of the
  innermost loop, ``output`` per output element requantised, ``elementwise`` per element a ReLU or
  a pooling layer reads. :func:`work_for` (counts from :class:`~layerwise.unit.counts.MacCounts`)
  leaves these at 0: there the model compares MAC-level work only.

Both profiles are FITTED to cycle counts measured in ``mspdebug sim`` (classic MSP430 core, no
FRAM wait states) on the C that ``layerwise export-c`` generates (:mod:`layerwise.export`):
tiny-cnn (digits at 28x28), cnn1d (basic-motions) and widar-lenet (digits at 20x20, measured
slice by slice: its weights do not fit the simulator's 64 KB), one inference each, every build
(dense, dense skipping zeros, UnIT with exact / bitshift / binary_tree / bitmask division), per
layer; ``msp430-swmul`` links
a shift-and-add 16x16 multiply (one step per bit of ``|w|``), ``msp430-hwmul`` uses the 16-bit
memory-mapped multiplier (``-mhwmult=16bit``). The costs are the non-negative least-squares
solution over every measured layer, each equation divided by its network's total
(:mod:`layerwise.export.fit`; rerun ``python bench/mcu_fit.py RUN/results.json ...``
on the ``export-c`` results). They are effective costs of that generated code compiled by clang
14 at -O2 (a cost the fit finds unidentifiable from these runs comes out 0 and is absorbed by the
others); the fit reproduces every measured network and build within the errors documented in
:data:`FIT_NOTE`. The UnIT paper's own figures (software multiply ~77 cycles, add 6, section 1
and 2.2) are for TI's compiler and runtime and are not used.

Active power: MSP430FR5994 datasheet active-mode current, about 118 uA/MHz at 3.0 V (FRAM
execution, typical; an estimate assumption: it varies with cache hit ratio and supply), i.e.
``118e-6 * f_MHz * 3.0`` W. At 8 MHz: 2.83 mW, 0.354 nJ per cycle. Energy is always an estimate.

Runtimes (what each compared variant pays), :func:`cost`:

* ``"dense"``: every MAC executes; no tests, no divisions.
* ``"sparse_weights"``: magnitude-pruned model on a compressed-weight runtime (CSR-like): only
  nonzero-weight MACs execute and each pays one extra ``load`` for its index; zero weights are not
  stored and cost nothing.
* ``"zero_skip"``: a runtime that skips every MAC with a zero operand (zero weight or zero
  input): UnIT's loop at ``T = 0`` (SONIC-style zero skipping). Its tests are the counters'
  ``compares`` (one zero test per control term; a nonzero control term one test per MAC it
  controls, which also catches a zero in the other operand), kept MACs pay ``keep`` and every
  other test ``skip``; no divisions. Counts without ``compares`` are charged one test per MAC
  (an upper bound); ``compares=`` overrides. This is the COMMON basis every compared variant is
  counted on (:mod:`layerwise.unit.accounting`), and FATReLU's own runtime.
* ``"unit"``: UnIT (eq. 2-3): the same loop and tests (``counts.compares``) plus
  ``counts.divisions`` ratios by the chosen ``division`` method with ``avg_steps`` loop steps
  each (measured by the kernels; defaults per profile); only the executed MACs run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from ..errors import LayerwiseError
from .counts import MacCounts, combine_layers

RUNTIMES = ("dense", "sparse_weights", "zero_skip", "unit")
DIVISIONS = ("exact", "bitshift", "binary_tree", "bitmask")


@dataclass(frozen=True)
class McuProfile:
    """Cycle costs of one MCU and how much power it draws while active."""

    name: str
    clock_hz: float
    mac: float                      # loads + multiply + add
    add: float
    compare_branch_keep: float
    compare_branch_skip: float
    load: float
    division: Mapping[str, float]        # fixed cycles per division, by method
    division_step: Mapping[str, float]   # cycles per shift step / tree comparison, by method
    default_steps: Mapping[str, float]   # steps per division when none were measured
    active_power_w: float
    source: str
    notes: str = ""
    # the exported C runtime's other work (layerwise.export; 0: not modelled)
    multiply_step: float = 0.0      # per bit of |w| in a software multiply (MAC += step * bits)
    default_multiply_bits: float = 0.0   # bits of |w| per MAC when none were counted
    row: float = 0.0                # per loop row (a weight of a conv, an input of a Linear)
    row_test: float = 0.0           # per zero test of a row (zero weight / zero input skip)
    segment: float = 0.0            # per start of the innermost loop (a conv output row)
    zero_test_keep: float = 0.0     # per-MAC zero-operand test that lets the MAC run
    zero_test_skip: float = 0.0     # ... that skips it (the zero-skipping build's test)
    output: float = 0.0             # per output element requantised and stored
    elementwise: float = 0.0        # per element read by a ReLU or a pooling layer

    @property
    def energy_per_cycle_j(self) -> float:
        return self.active_power_w / self.clock_hz


_CLOCK = 8e6
_POWER = 118e-6 * (_CLOCK / 1e6) * 3.0   # datasheet ~118 uA/MHz at 3 V (estimate assumption)

#: how the profiles were fitted and how well they reproduce the simulator (module docstring)
FIT_NOTE = ("fitted by non-negative least squares to mspdebug sim (MSPDebug 0.22, classic MSP430 "
            "core) runs of layerwise export-c's C built by clang 14 -O2, per layer, every build "
            "with both multipliers: tiny-cnn (digits 28x28, UnIT p30 chosen on validation), "
            "cnn1d (basic-motions, p60) and widar-lenet (digits 20x20, p40, sliced); largest "
            "whole-network error in the fit 1.6 % (swmul) and 6.2 % (hwmul); with each model held "
            "out of the fit (costs fitted on the other two) 5.1 % (swmul) and 26 % (hwmul: its "
            "loop costs are not pinned down by the other networks); docs/export-c.md, "
            "layerwise.export.fit, docs/results/mcu-fit.json")

PROFILES: dict[str, McuProfile] = {
    # fitted costs, rounded to 1/8 cycle (exact in floating point); see FIT_NOTE. The software
    # multiply's 12 cycles per bit of |w| are not fitted: they are its routine's own cost
    # (layerwise/export/runtime/mul16_sw.S: 11 per step, 2 more per set bit); mac is the MAC at
    # default_multiply_bits, the average over the measured runs. Costs the runs cannot tell apart
    # come out 0 and are absorbed by the others.
    "msp430-swmul": McuProfile(
        name="msp430-swmul", clock_hz=_CLOCK,
        mac=174.875, add=1, compare_branch_keep=3.0, compare_branch_skip=10.0, load=2,
        division={"exact": 492.375, "bitshift": 172.625, "binary_tree": 0.0, "bitmask": 0.0},
        division_step={"exact": 0, "bitshift": 0.0, "binary_tree": 0.0, "bitmask": 0.0},
        default_steps={"exact": 0, "bitshift": 8, "binary_tree": 4.06, "bitmask": 8},
        active_power_w=_POWER,
        multiply_step=12.0, default_multiply_bits=9.5, row=70.125, row_test=4.625, segment=0.0,
        zero_test_keep=3.5, zero_test_skip=6.5, output=263.75, elementwise=13.875,
        source="fitted to mspdebug sim (software shift-and-add multiply)",
        notes=FIT_NOTE),
    "msp430-hwmul": McuProfile(
        name="msp430-hwmul", clock_hz=_CLOCK,
        mac=41.375, add=1, compare_branch_keep=10.25, compare_branch_skip=12.625, load=2,
        division={"exact": 715.25, "bitshift": 5.125, "binary_tree": 51.25, "bitmask": 0.0},
        division_step={"exact": 0, "bitshift": 33.875, "binary_tree": 0.0, "bitmask": 19.75},
        default_steps={"exact": 0, "bitshift": 8, "binary_tree": 4.06, "bitmask": 8},
        active_power_w=_POWER,
        row=0.0, row_test=0.0, segment=0.0, zero_test_keep=6.5, zero_test_skip=9.75,
        output=159.375, elementwise=13.625,
        source="fitted to mspdebug sim (16-bit hardware multiplier, -mhwmult=16bit)",
        notes=FIT_NOTE),
}


def get_profile(profile: str | McuProfile) -> McuProfile:
    if isinstance(profile, McuProfile):
        return profile
    if profile not in PROFILES:
        raise LayerwiseError(
            f"unknown MCU profile {profile!r}; use one of {', '.join(PROFILES)} or an McuProfile")
    return PROFILES[profile]


@dataclass
class McuWork:
    """Operation counts of one inference (or a batch: divide by ``samples`` yourself)."""

    macs_executed: int = 0
    compares_keep: int = 0
    compares_skip: int = 0
    divisions: int = 0
    division_steps: float = 0.0
    division: str = "exact"
    extra_loads: int = 0
    multiply_steps: float | None = None   # bits of |w| over executed MACs; None: profile default
    rows: int = 0
    row_tests: int = 0
    segments: int = 0
    zero_keep: int = 0
    zero_skip: int = 0
    outputs: int = 0
    elementwise: int = 0


@dataclass
class McuEstimate:
    """Modelled cost: cycles, seconds and joules, with the breakdown by operation kind."""

    cycles: float
    seconds: float
    energy_j: float
    breakdown: dict = field(default_factory=dict)
    estimated: bool = True
    source: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def estimate(work: McuWork | Iterable[McuWork], profile: str | McuProfile = "msp430-swmul"
             ) -> McuEstimate:
    """Cycles, time and energy of ``work`` (one :class:`McuWork` or several, e.g. per layer)."""
    p = get_profile(profile)
    works = [work] if isinstance(work, McuWork) else list(work)
    bd = {"mac": 0.0, "compare_keep": 0.0, "compare_skip": 0.0, "division": 0.0, "load": 0.0,
          "loop": 0.0}
    for w in works:
        if w.division not in DIVISIONS:
            raise LayerwiseError(
                f"unknown division method {w.division!r}; use one of {', '.join(DIVISIONS)}")
        extra_bits = (0.0 if w.multiply_steps is None
                      else w.multiply_steps - w.macs_executed * p.default_multiply_bits)
        bd["mac"] += w.macs_executed * p.mac + extra_bits * p.multiply_step
        bd["compare_keep"] += w.zero_keep * p.zero_test_keep
        bd["compare_skip"] += w.zero_skip * p.zero_test_skip
        bd["loop"] += (w.rows * p.row + w.row_tests * p.row_test + w.segments * p.segment
                       + w.outputs * p.output + w.elementwise * p.elementwise)
        bd["compare_keep"] += w.compares_keep * p.compare_branch_keep
        bd["compare_skip"] += w.compares_skip * p.compare_branch_skip
        bd["division"] += (w.divisions * p.division[w.division]
                           + w.division_steps * p.division_step[w.division])
        bd["load"] += w.extra_loads * p.load
    cycles = float(sum(bd.values()))
    seconds = cycles / p.clock_hz
    return McuEstimate(cycles=cycles, seconds=seconds, energy_j=seconds * p.active_power_w,
                       breakdown=bd, estimated=True, source=f"cycle model: {p.name}")


def _as_counts(counts) -> MacCounts:
    """One network's counts; a mapping / list holds DIFFERENT layers of it (combined with
    :func:`~layerwise.unit.counts.combine_layers`: samples = network inputs)."""
    if isinstance(counts, MacCounts):
        return counts
    if isinstance(counts, Mapping) and "total" in counts:
        return MacCounts.from_json(counts)
    if isinstance(counts, Mapping):      # layer name -> counts
        return combine_layers(_as_counts(c) for c in counts.values())
    if isinstance(counts, (list, tuple)) and counts and not isinstance(counts[0], int):
        return combine_layers(_as_counts(c) for c in counts)
    if isinstance(counts, (list, tuple)) and len(counts) == 4:
        return MacCounts(*(int(v) for v in counts))
    raise LayerwiseError(
        "counts must be a MacCounts, a (total, zero_weight, zero_input, threshold) tuple, "
        "a to_json dict, or a mapping / list of those")


def work_for(counts, runtime: str = "unit", division: str = "exact", *,
             profile: str | McuProfile = "msp430-swmul", division_steps: float | None = None,
             compares: int | None = None) -> McuWork:
    """The operations ``runtime`` performs for ``counts`` (see the module docstring).

    ``division_steps`` is the total over all divisions (``KernelResult.division_steps``); when
    ``None``, the profile's average steps per division are used.
    """
    c = _as_counts(counts)
    if runtime not in RUNTIMES:
        raise LayerwiseError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "dense":
        return McuWork(macs_executed=c.total)
    if runtime == "sparse_weights":
        nz = c.total - c.zero_weight
        return McuWork(macs_executed=nz, extra_loads=nz)
    if runtime == "zero_skip":
        executed = c.total - c.zero_weight - c.zero_input
        tests = (c.compares if c.compares else c.total) if compares is None else int(compares)
        # every executed MAC passed one test; never charge more keeps than tests were made
        keep = min(executed, tests)
        return McuWork(macs_executed=executed, compares_keep=keep, compares_skip=tests - keep)
    p = get_profile(profile)
    if division not in DIVISIONS:
        raise LayerwiseError(
            f"unknown division method {division!r}; use one of {', '.join(DIVISIONS)}")
    tests = (c.compares if c.compares else c.total) if compares is None else int(compares)
    steps = (c.divisions * p.default_steps[division] if division_steps is None
             else float(division_steps))
    return McuWork(macs_executed=c.executed, compares_keep=c.executed,
                   compares_skip=max(tests - c.executed, 0), divisions=c.divisions,
                   division_steps=steps, division=division)


def cost(counts, runtime: str = "unit", division: str = "exact",
         profile: str | McuProfile = "msp430-swmul", *,
         division_steps: float | None = None, compares: int | None = None,
         per_sample: bool = False) -> McuEstimate:
    """Modelled cost of running ``counts`` under ``runtime`` on ``profile``.

    ``per_sample=True`` divides by ``counts.samples`` (per-inference figures).
    """
    c = _as_counts(counts)
    est = estimate(work_for(c, runtime, division, profile=profile, division_steps=division_steps,
                            compares=compares), profile)
    if per_sample:
        if c.samples <= 0:
            raise LayerwiseError("per_sample needs counts with samples > 0")
        k = 1.0 / c.samples
        est = McuEstimate(cycles=est.cycles * k, seconds=est.seconds * k,
                          energy_j=est.energy_j * k,
                          breakdown={n: v * k for n, v in est.breakdown.items()},
                          source=est.source)
    return est
