"""A documented cycle model of UnIT and its baselines on an MSP430FR5994-class MCU.

Every figure this module returns is an ESTIMATE (``estimated=True``) from cycle counts per
operation, not a measurement; its ``source`` names the profile. The model charges, per inference:

* ``mac``: one executed MAC (operand loads + multiply + add into the accumulator);
* ``compare_branch_keep`` / ``compare_branch_skip``: one compare-and-branch test that lets the MAC
  run / skips it (the kernels' ``|z| > t`` and zero tests; see :mod:`layerwise.unit.counts` for
  which tests a loop makes);
* ``division[method]``: one threshold ratio, plus ``division_step[method]`` per shift-loop
  iteration (bitshift) or tree comparison (binary_tree);
* ``load``: one extra memory read (a sparse runtime's index).

Two profiles (cycles at the core clock; FRAM wait states are not modelled, so the clock is set to
8 MHz, the MSP430FR5994's highest frequency without FRAM wait states; energy per cycle does not
depend on that choice because active current scales with frequency):

* ``msp430-swmul``: the paper's figures (section 1 and 2.2): a software multiply ~77 cycles
  (TI SLAA329), an add 6. MAC = 2 operand loads (2 each) + 77 + 6 = 87. Exact division: a
  software 32/16 division, ~150 cycles (our estimate: the paper only says division is "nearly as
  expensive as multiplication" and that bitshift / binary tree are 50-59.8 % faster than it,
  Fig. 8).
* ``msp430-hwmul``: figures measured with ``mspdebug sim`` on the classic MSP430 core (an earlier
  throwaway measurement; ``python bench/msp430_cycles.py`` is the repository's own, see below):
  hardware-multiplier MAC about 8-11 cycles including operand writes (we take 10),
  add / shift 1. Exact division through the same software routine (the MPY32 has no divider).

The compare-and-skip test (UnIT's ``|z| > t`` and every zero test) never touches the multiplier,
so both profiles charge it the same: :data:`COMPARE_KEEP_CYCLES` (5) when it lets the MAC run and
:data:`COMPARE_SKIP_CYCLES` (8) when it skips, measured with ``mspdebug sim`` on the classic MSP430
core in an earlier measurement. ``python bench/msp430_cycles.py`` re-measures the loops here and
finds about 7.4 cycles for a kept test (over its MAC) and about 9 for a skipped one without its
loop step (docs/unit.md); these constants are not yet updated to it. They are the only place
these figures live; update them there (with :data:`COMPARE_SOURCE`).

Active power: MSP430FR5994 datasheet active-mode current, about 118 uA/MHz at 3.0 V (FRAM
execution, typical; an estimate assumption: it varies with cache hit ratio and supply), i.e.
``118e-6 * f_MHz * 3.0`` W. At 8 MHz: 2.83 mW, 0.354 nJ per cycle.

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

No runtime is charged loop overhead (index arithmetic, pointer increments) beyond the per-MAC
loads; it is the same for every variant and is left out so that ratios compare work.
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

    @property
    def energy_per_cycle_j(self) -> float:
        return self.active_power_w / self.clock_hz


# The compare-and-skip test, one figure for every profile (module docstring). ONE place.
COMPARE_KEEP_CYCLES = 5
COMPARE_SKIP_CYCLES = 8
COMPARE_SOURCE = ("UnIT compare-and-skip test 5 cycles (keep) / 8 (skip), mspdebug sim on the "
                  "classic MSP430 core (an earlier measurement; bench/msp430_cycles.py gives about 7.4 / 9); "
                  "it does not use the multiplier, so every "
                  "profile charges it the same")

_CLOCK = 8e6
_POWER = 118e-6 * (_CLOCK / 1e6) * 3.0   # datasheet ~118 uA/MHz at 3 V (estimate assumption)

PROFILES: dict[str, McuProfile] = {
    "msp430-swmul": McuProfile(
        name="msp430-swmul", clock_hz=_CLOCK,
        mac=2 * 2 + 77 + 6, add=6, compare_branch_keep=COMPARE_KEEP_CYCLES,
        compare_branch_skip=COMPARE_SKIP_CYCLES, load=2,
        # exact: software 32/16 division (estimate); bitshift: final T >> n (~4) + per loop
        # iteration rra + inc + jnz (1 + 1 + 2); binary tree: leaf table load (3) + cmp + jump per
        # level (4, the paper's upper branch figure); bitmask: and/sub/add/shift on two 16-bit
        # halves of each float word (~12, no FPU on the MSP430).
        division={"exact": 150, "bitshift": 4, "binary_tree": 3, "bitmask": 12},
        division_step={"exact": 0, "bitshift": 4, "binary_tree": 4, "bitmask": 0},
        default_steps={"exact": 0, "bitshift": 8, "binary_tree": 4.06, "bitmask": 0},
        active_power_w=_POWER,
        source="UnIT paper figures (multiply ~77, add 6 cycles; TI SLAA329); compare test: "
               "mspdebug sim (classic MSP430 core)",
        notes="loads 2 cycles each; exact division 150 is an estimate; " + COMPARE_SOURCE),
    "msp430-hwmul": McuProfile(
        name="msp430-hwmul", clock_hz=_CLOCK,
        mac=10, add=1, compare_branch_keep=COMPARE_KEEP_CYCLES,
        compare_branch_skip=COMPARE_SKIP_CYCLES, load=2,
        division={"exact": 150, "bitshift": 2, "binary_tree": 3, "bitmask": 8},
        division_step={"exact": 0, "bitshift": 3, "binary_tree": 3, "bitmask": 0},
        default_steps={"exact": 0, "bitshift": 8, "binary_tree": 4.06, "bitmask": 0},
        active_power_w=_POWER,
        source="mspdebug sim measurements on the classic MSP430 core",
        notes="HW-multiplier MAC 8-11 cycles incl. operand writes (10 used); cmp+jump 3; "
              "add/shift 1; " + COMPARE_SOURCE),
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
    bd = {"mac": 0.0, "compare_keep": 0.0, "compare_skip": 0.0, "division": 0.0, "load": 0.0}
    for w in works:
        if w.division not in DIVISIONS:
            raise LayerwiseError(
                f"unknown division method {w.division!r}; use one of {', '.join(DIVISIONS)}")
        bd["mac"] += w.macs_executed * p.mac
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
