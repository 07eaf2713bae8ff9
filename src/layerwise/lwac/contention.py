"""Real CPU contention and an absolute latency budget: does LWAC keep every input near it?

How many inputs LWAC keeps within +-10 % of an absolute budget while other processes load the
CPU, judged against ``target_share`` of them (95 % by default), or whether the budget is out of
reach, as a library function, :func:`measure_under_contention`:

1. a QUIET phase: LWAC under its absolute budget (``LWACModel.set_latency_target``) with the
   chosen controller (``pi`` or ``levels``, :mod:`layerwise.lwac.levels`) and, beside it, with
   the other one; the dense network; the FLOOR (LWAC at the top of its lambda range: every unit
   it can bypass bypassed, the fastest it can be); and each measured depth LEVEL held fixed (what
   the best single depth, chosen after the fact, would have done) run interleaved, one input
   each in turn, every call timed by wall clock;
2. :func:`spinners` starts ``cores`` other processes, each spinning on one core; where they run is
   the ``placement``: ``same`` (the default) pins this process for the phase and the first spinner
   to one core, so the two share it by time slices and the contention cannot be scheduled away on
   a multi-core machine; ``other`` pins this process to one core and the spinners to the others, so
   the load reaches it only through what the cores share (caches, memory bandwidth, the physical
   core of an SMT sibling); ``os`` leaves placement to the scheduler. LWAC's controller, which
   measures the wall-clock latency of every
   inference (``LWACModel.forward``), sees the slower inferences and raises lambda during a
   settle phase, then the CONTENDED phase is timed as the quiet one was;
3. the spinners are stopped (terminate, then kill after 2 s, and waited for) on the way out,
   also on an exception; each spinner also exits by itself when its parent is gone.

Per phase and arm the report gives the share of inputs whose latency is within +-``tolerance``
of the budget (``|t - B| <= tol * B``, the criterion), the share at or under ``(1 + tol) B``,
the share within +-``tolerance`` of the arm's own median (its per-inference spread), median
and 5th/95th percentiles; for LWAC the mean lambda and units bypassed per
input. The budget is OUT OF REACH in a phase when even the floor finishes fewer than
``target_share`` (95 %) of its inputs by ``(1 + tol) B``: then no choice of depth can meet the
criterion (on a machine whose scheduler preempts this process for tens of ms, the slow inputs
are waits, not computation, and the floor has them too). It is LOOSER THAN DENSE when dense's
median is under ``(1 - tol) B`` (then LWAC has nothing to bypass and finishes early: outside
the band but within the budget, which ``share_at_or_under`` counts).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

import numpy as np
import torch

from .config import LWACError, check_latency_ms
from .levels import Level, held_at, measure_levels

log = logging.getLogger(__name__)

Placement = Literal["same", "other", "os"]
PLACEMENTS = get_args(Placement)
Controller = Literal["pi", "levels"]
CONTROLLERS = get_args(Controller)

# the spinner: pins itself to a core, says "ready", spins; every ~2**20 iterations it checks that
# the process that started it is still its parent, so it never outlives a killed parent for long
_SPIN = r"""
import os, sys
parent, core = int(sys.argv[1]), int(sys.argv[2])
if core >= 0 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {core})
sys.stdout.write("ready\n"); sys.stdout.flush()
n = 0
while True:
    n += 1
    if (n & 0xFFFFF) == 0 and os.getppid() != parent:
        break
"""


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def start_spinner(core: int = -1, parent_pid: int | None = None) -> subprocess.Popen:
    """One process spinning on ``core`` (-1: wherever the OS puts it); returns once it runs.
    ``parent_pid``: the process it watches (default: this one); it exits when that is gone."""
    parent = os.getpid() if parent_pid is None else int(parent_pid)
    proc = subprocess.Popen([sys.executable, "-c", _SPIN, str(parent), str(int(core))], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # blocks until the spinner runs (or dies)
    if line.strip() != "ready":
        _stop(proc)
        raise LWACError(f"the contention process (pid {proc.pid}) did not start (exit code {proc.poll()}): "
                        "check that this Python can start subprocesses")
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def spinners(cores: int = 1, placement: Placement = "same") -> Iterator[list[subprocess.Popen]]:
    """``cores`` spinning processes while the block runs; all stopped and reaped on the way out,
    whatever happens inside. Placement (Linux; elsewhere the OS places them): ``same``: this
    process is pinned to the first core of its affinity set for the block (restored afterwards)
    and the first spinner to that same core, the others to the next cores; ``other``: this process
    pinned to the first core and the spinners to the next ones (onto the first again only when
    there are more spinners than other cores); ``os``: nothing pinned."""
    if cores < 0:
        raise LWACError(f"contention takes a number of cores >= 0, not {cores}")
    if placement not in PLACEMENTS:
        raise LWACError(f"contention placement {placement!r}: use one of {', '.join(PLACEMENTS)}")
    before = _affinity()
    pinned = placement != "os" and bool(before)
    procs: list[subprocess.Popen] = []
    try:
        if pinned:
            ordered = sorted(before)
            if placement == "other" and len(ordered) == 1:
                log.warning("contention placement 'other': this process may run on one core only, so the "
                            "spinners share it (as placement 'same')")
            os.sched_setaffinity(0, {ordered[0]})
            first = 1 if placement == "other" else 0
            chosen = [ordered[(first + k) % len(ordered)] for k in range(cores)]
        else:
            chosen = [-1] * cores
        for c in chosen:
            procs.append(start_spinner(c))
        yield procs
    finally:
        for p in procs:
            _stop(p)
        if pinned:
            os.sched_setaffinity(0, before)


@dataclass
class ArmStats:
    """Per-input wall-clock latencies of one arm in one phase, against the budget."""

    n: int
    median_ms: float
    p5_ms: float
    p95_ms: float
    share_within: float  # |t - B| <= tol * B
    share_at_or_under: float  # t <= (1 + tol) * B
    share_near_median: float  # |t - median| <= tol * median: the arm's own spread, whatever the budget
    mean_lam: float | None = None  # LWAC only
    mean_bypassed_units: float | None = None  # LWAC only: units bypassed per input

    @classmethod
    def of(cls, ms: Sequence[float], budget_ms: float, tol: float, **extra) -> "ArmStats":
        t = np.asarray(ms, dtype=float)
        med = float(np.median(t))
        return cls(n=int(t.size), median_ms=med, p5_ms=float(np.percentile(t, 5)),
                   p95_ms=float(np.percentile(t, 95)),
                   share_within=float(np.mean(np.abs(t - budget_ms) <= tol * budget_ms)),
                   share_at_or_under=float(np.mean(t <= (1 + tol) * budget_ms)),
                   share_near_median=float(np.mean(np.abs(t - med) <= tol * med)), **extra)


@dataclass
class ContentionReport:
    budget_ms: float
    tolerance: float
    cores: int
    placement: str  # same / other / os: where the spinners ran against this process (spinners())
    pinned_core: int | None  # the core this process was pinned to, None if not pinned
    spinner_pids: list[int]
    phases: dict[str, dict[str, ArmStats]]
    reachable: dict[str, bool]  # per phase: the floor finishes >= target_share of inputs by (1 + tol) B
    looser_than_dense: dict[str, bool]  # per phase: dense's median under (1 - tol) B
    load_average: dict[str, list[float]] = field(default_factory=dict)  # os.getloadavg() at start / end
    target_share: float = 0.95
    controller: str = "pi"  # LWAC's budget controller: pi (continuous lambda) or levels (measured depths)
    levels: list[dict] = field(default_factory=list)  # the measured depth levels (levels.Level), slowest first
    best_fixed_level: dict[str, dict] = field(default_factory=dict)  # per phase: the level arm nearest the criterion
    verdict: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _verdict(r: ContentionReport, target: float) -> str:
    c = r.phases["contended"]["lwac"]
    other = "levels" if r.controller == "pi" else "pi"
    alt = r.phases["contended"].get(f"lwac-{other}")
    where = {"same": "on this process's core", "other": "beside this process's core", "os": "placed by the OS"}
    head = (f"under contention ({r.cores} core{'s' if r.cores != 1 else ''} loaded, {where[r.placement]}): "
            f"{100 * c.share_within:.1f} % of inputs within +-{100 * r.tolerance:g} % of {r.budget_ms:g} ms "
            f"(dense {100 * r.phases['contended']['dense'].share_within:.1f} %; LWAC median {c.median_ms:.3f} ms, "
            f"p95 {c.p95_ms:.3f} ms; controller {r.controller}"
            + (f", the {other} controller beside it {100 * alt.share_within:.1f} %" if alt is not None else "") + ")")
    f = r.phases["contended"]["floor"]
    if not r.reachable["contended"]:
        return head + (f"; OUT OF REACH: with every bypassable unit bypassed only {100 * f.share_at_or_under:.1f} % "
                       f"of inputs finish by {(1 + r.tolerance) * r.budget_ms:.3g} ms (median {f.median_ms:.3f} ms, "
                       f"p95 {f.p95_ms:.3f} ms)")
    if r.looser_than_dense["contended"]:
        return head + (f"; the budget is looser than dense (median {r.phases['contended']['dense'].median_ms:.3f} ms):"
                       f" nothing needs bypassing, {100 * c.share_at_or_under:.1f} % of LWAC's inputs finish by "
                       f"{(1 + r.tolerance) * r.budget_ms:.3g} ms")
    best = r.best_fixed_level.get("contended")
    tail = ""
    if best is not None:
        tail = (f"; the best depth held fixed ({best['name']}, {best['level_ms']:.3f} ms when measured quiet) puts "
                f"{100 * best['share_within']:.1f} % within")
        spread = max(a.share_near_median for k, a in r.phases["contended"].items() if k.startswith("level-"))
        tail += (f"; held fixed, no depth had more than {100 * spread:.1f} % of its inferences within "
                 f"+-{100 * r.tolerance:g} % of its own median (the machine's per-inference spread)")
    return head + ("; met" if c.share_within >= target else f"; missed (the criterion is >= {100 * target:g} %)") + tail


def _run_phase(arms: dict[str, Callable], inputs: Sequence[torch.Tensor], n: int, offset: int,
               lwac) -> tuple[dict[str, list[float]], list[float], list[int]]:
    times: dict[str, list[float]] = {k: [] for k in arms}
    lams, bypassed = [], []
    names = list(arms)
    with torch.no_grad():
        for i in range(n):
            x = inputs[(offset + i) % len(inputs)]
            for j in range(len(names)):  # rotate the order so no arm always runs first
                k = names[(i + j) % len(names)]
                before = sum(lwac.state.bypassed) if k == "lwac" else 0
                t0 = time.perf_counter()
                arms[k](x)
                times[k].append(1e3 * (time.perf_counter() - t0))
                if k == "lwac":
                    lams.append(float(lwac.state.lam))
                    bypassed.append(sum(lwac.state.bypassed) - before)
    return times, lams, bypassed


def _settle(lwac, inputs, steps: int, offset: int) -> None:
    with torch.no_grad():
        for i in range(steps):
            lwac(inputs[(offset + i) % len(inputs)])


def measure_under_contention(lwac, dense: Callable, inputs: Sequence[torch.Tensor], budget_ms: float, *,
                             n: int = 300, quiet_n: int | None = None, settle: int = 200, cores: int = 1,
                             tolerance: float = 0.1, placement: Placement = "same", target_share: float = 0.95,
                             controller: Controller = "pi", gains: dict | None = None,
                             levels: Sequence[Level] | None = None, level_n: int = 100) -> ContentionReport:
    """Per-input latency of LWAC under the absolute budget ``budget_ms``, dense, the floor and
    every depth level held fixed, quiet and then with ``cores`` spinning processes (module
    docstring).

    ``lwac``: a calibrated :class:`~layerwise.lwac.LWACModel` (its ``lam_range`` spans nothing to
    everything bypassed); it is cloned, never changed. ``dense``: the plain network. ``n``: inputs
    per arm in the contended phase (``quiet_n``, default n // 3, in the quiet one); ``settle``:
    inferences LWAC runs under each condition before it is timed (its controller converging).
    ``controller``: ``pi`` (continuous lambda) or ``levels`` (hold a measured depth,
    :class:`~layerwise.lwac.levels.LevelController`); ``gains`` go to it (the other controller,
    timed beside it, runs with its defaults). The depth levels are
    measured quiet first on ``inputs`` (:func:`~layerwise.lwac.levels.measure_levels`, ``level_n``
    timed calls each) unless ``levels`` are given, whichever controller runs: each is also an arm
    held fixed, which shows what the best single depth could do in each phase."""
    budget_ms = check_latency_ms(budget_ms)
    if not inputs:
        raise LWACError("measure_under_contention needs at least one input")
    if n < 1 or settle < 0 or not 0 < tolerance < 1:
        raise LWACError(f"n >= 1, settle >= 0 and tolerance in (0, 1) are needed, not n={n}, settle={settle}, "
                        f"tolerance={tolerance}")
    if controller not in CONTROLLERS:
        raise LWACError(f"budget controller {controller!r}: use one of {', '.join(CONTROLLERS)}")
    quiet_n = max(1, n // 3) if quiet_n is None else quiet_n
    levels = list(levels) if levels is not None else measure_levels(lwac, list(inputs[:50]), n=level_n)

    def budgeted(kind: str, kind_gains: dict):
        c = lwac.clone()
        c.set_latency_target(budget_ms, levels=levels if kind == "levels" else None, **kind_gains)
        return c

    other = "levels" if controller == "pi" else "pi"  # the other controller, side by side
    ctl, alt = budgeted(controller, gains or {}), budgeted(other, {})  # the other one with its default gains
    # the floor: the top of the calibrated range, every unit it can bypass bypassed
    arms = {"lwac": ctl, "dense": dense, "floor": held_at(lwac, lwac.lam_range[1]), f"lwac-{other}": alt}
    arms.update({f"level-{k}": held_at(lwac, lv.lam) for k, lv in enumerate(levels)})
    loads = {"start": list(os.getloadavg())}
    phases: dict[str, dict[str, ArmStats]] = {}

    def summarise(name: str, times, lams, byp) -> None:
        phases[name] = {k: ArmStats.of(v, budget_ms, tolerance) for k, v in times.items()}
        phases[name]["lwac"].mean_lam = float(np.mean(lams))
        phases[name]["lwac"].mean_bypassed_units = float(np.mean(byp))

    _settle(ctl, inputs, settle, 0)
    _settle(alt, inputs, settle, 0)
    summarise("quiet", *_run_phase(arms, inputs, quiet_n, settle, ctl))
    pinned = None
    with spinners(cores, placement=placement) as procs:
        pids = [p.pid for p in procs]
        aff = _affinity()
        pinned = min(aff) if placement != "os" and aff and len(aff) == 1 else None
        log.info("contention: %d spinner(s) %s, placement %s%s", len(procs), pids, placement,
                 f", this process on core {pinned}" if pinned is not None else "")
        _settle(ctl, inputs, settle, settle + quiet_n)
        _settle(alt, inputs, settle, settle + quiet_n)
        summarise("contended", *_run_phase(arms, inputs, n, 2 * settle + quiet_n, ctl))
    loads["end"] = list(os.getloadavg())
    tol = tolerance
    report = ContentionReport(
        budget_ms=budget_ms, tolerance=tol, cores=cores, placement=placement, pinned_core=pinned, spinner_pids=pids,
        phases=phases, reachable={k: v["floor"].share_at_or_under >= target_share for k, v in phases.items()},
        looser_than_dense={k: v["dense"].median_ms < (1 - tol) * budget_ms for k, v in phases.items()},
        load_average=loads, target_share=target_share, controller=controller, levels=[lv.to_json() for lv in levels])
    for phase, stats in phases.items():
        k = max(range(len(levels)), key=lambda j: stats[f"level-{j}"].share_within)
        report.best_fixed_level[phase] = {"name": f"level-{k}", "level_ms": levels[k].ms, "lam": levels[k].lam,
                                          "share_within": stats[f"level-{k}"].share_within,
                                          "median_ms": stats[f"level-{k}"].median_ms}
    report.verdict = _verdict(report, target_share)
    return report
