"""``attach``: put an ACU after every calibratable unit; :class:`LWACModel`: the closed loop.

Algorithm 1 of the paper, per inference: every unit i computes (or, bypassed, skips) h_i, its
ACU scales or gates it with alpha_i (eq. 1-2). Between inferences the runtime does the rest of
the loop: reads the resource monitor, refreshes each unit's cost C_i (eq. 4) from the monitor's
per-unit latency moving averages, the relevance R_i (eq. 3) from the tracker, lets the budget
controller move lambda, and recomputes each unit's pressure lambda * m * C_i. Everything costly
happens every ``track_every``-th inference only.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import list_layers
from ..measure import per_layer_latency
from .acu import AttentionCalibrationUnit, hooked
from .budget import PIController, budget_controller
from .levels import Level, LevelController
from .config import LWACConfig, LWACError
from .controller import UnitController, summary_features, summary_kind
from .equations import normalise
from .monitor import SharedBuffer
from .resources import multiplier, unit_costs
from .state import LWACState
from .tracker import RelevanceTracker
from .units import adapter_for, find_units

log = logging.getLogger(__name__)


@dataclass
class UnitInfo:
    index: int
    name: str
    kind: str
    bypassable: bool
    macs: int
    params: int
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    latency_ms: float | None  # from per_layer_latency at attach time (forward hooks, approximate)
    bypass_macs: int = 0  # MACs the bypass still runs (a projection shortcut); 0 for an identity shortcut
    reason: str | None = None  # why the unit cannot be bypassed (None when it can)

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, "kind": self.kind, "bypassable": self.bypassable,
                "reason": self.reason,
                "macs": self.macs, "bypass_macs": self.bypass_macs, "params": self.params,
                "input_shape": list(self.input_shape) if self.input_shape else None,
                "output_shape": list(self.output_shape) if self.output_shape else None,
                "latency_ms": self.latency_ms}


class LWACModel(nn.Module):
    """A model with ACUs attached, its shared state, tracker, buffer, monitor and budget."""

    def __init__(self, model: nn.Module, acus: list[AttentionCalibrationUnit], units: list[UnitInfo],
                 state: LWACState, buffer: SharedBuffer, tracker: RelevanceTracker, dense_macs: int,
                 dense_ms: float | None = None):
        super().__init__()
        self.model = model
        self.__dict__["acus"] = acus
        self.__dict__["state"] = state
        self.__dict__["buffer"] = buffer
        self.__dict__["tracker"] = tracker
        self.units = units
        self.config = state.config
        self.dense_macs = dense_macs
        # the dense model's batch-1 latency MEASURED as a whole at attach (median), not summed from
        # per-unit hook times (those miss the glue between units and the hook overhead)
        self.dense_ms = dense_ms
        self.power_ref_w = state.config.power_ref_w
        self.monitor = None
        self.budget: _RangeController | LevelController | None = None
        self.lam_range: tuple[float, float] = (0.0, 1.0)
        # (lambda, estimated latency ratio) from calibration: the budget controller's feed-forward
        self.lam_curve: list[tuple[float, float]] = []
        self.history: list[dict] | None = None
        self._latency_ms = [u.latency_ms or 0.0 for u in units]
        self._last_bypassed: list[int] | None = None
        self._seen_state = None
        self.refresh_costs()
        self.refresh_pressure()

    # ---- the loop ---------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        """``nn.Module.__call__`` without its dispatch cost when nothing hooks this model (batch 1)."""
        if kwargs or len(args) != 1 or hooked(self):
            return nn.Module.__call__(self, *args, **kwargs)
        return self.forward(args[0])

    def forward(self, x):
        t0 = time.perf_counter()
        out = self.__dict__["_modules"]["model"](x)
        dt = time.perf_counter() - t0
        self._after(dt)
        return out

    def _after(self, dt: float) -> None:
        st = self.state
        if self.monitor is None and self.budget is None and self.history is None and not self.config.adapt:
            st.step += 1  # nothing between inferences to do: no monitor, budget, history or adaptation
            return
        tracked = st.track_now
        st.step += 1
        changed = False
        if self.monitor is not None:
            self.monitor.on_inference(st.step)
            if self.buffer.state is not self._seen_state:  # a new reading: power moves C_i (eq. 4), battery/memory m
                self._seen_state = self.buffer.state
                self.refresh_costs()
                changed = True
        ms = dt * 1e3 * self.buffer.state.latency_scale
        if self.budget is not None:
            lam = float(self.budget.update(ms, self._dense_equivalent_ms(ms)))
            if isinstance(self.budget, LevelController) and lam != st.lam:
                self.hold_lambda(lam)  # a new level: its expected latency holds from the next inference on
            st.lam = lam
            changed = True
        if tracked and self.config.adapt:
            self.refresh_costs()
            if self.config.policy == "heuristic":
                self.refresh_relevance()
            changed = True
        if changed:
            self.refresh_pressure()
        if self.history is not None:
            s = self.buffer.state
            self.history.append({"step": st.step, "latency_ms": ms, "lam": st.lam,
                                 "target_ms": self.budget.target_ms if self.budget else None,
                                 "battery_percent": s.battery_percent, "latency_scale": s.latency_scale})
        # per-unit timing and the entropy proxy feed only the adaptive refresh above: with
        # adapt off nothing reads them, so they are not collected (they cost ~tens of us)
        st.track_now = self.config.adapt and st.step % self.config.track_every == 0

    # ---- eq. (4), eq. (3), eq. (2)'s cost term ----------------------------------------------
    def refresh_costs(self) -> None:
        """C_i (eq. 4) from MACs, latency (monitor EMA) and the monitor's power draw, each term
        divided by a FIXED reference (dense MACs, measured dense latency, the reference power),
        so that no reading cancels (:func:`layerwise.lwac.resources.unit_costs`). A unit's MACs
        and latency are what bypassing it saves (a projection shortcut still runs)."""
        live = self.buffer.latencies()
        for i, v in enumerate(live):
            if v is not None:
                self._latency_ms[i] = v * 1e3
        power = self.buffer.state.power_w
        if power is not None and self.power_ref_w is None:
            self.power_ref_w = power  # the first reading is the reference: costs start where calibrated
        saved = [max(0, u.macs - u.bypass_macs) for u in self.units]
        dense_ms = self.dense_ms or sum(self._latency_ms) or 1.0
        self.state.cost = unit_costs(saved, self._latency_ms, self.dense_macs, dense_ms, self.config.theta,
                                     power, self.power_ref_w)

    def _dense_equivalent_ms(self, ms: float) -> float:
        """This inference's latency plus the (moving-average) latency of the units it bypassed:
        an online estimate of what the dense model would have taken under current conditions."""
        st = self.state
        last = self._last_bypassed
        now = list(st.bypassed)
        self._last_bypassed = now
        if last is None or len(last) != len(now):
            return ms
        scale = self.buffer.state.latency_scale
        return ms + scale * sum(self._latency_ms[i] for i in range(len(now)) if now[i] > last[i])

    def refresh_relevance(self) -> None:
        self.state.relevance = normalise(self.tracker.all())

    def resource_multiplier(self) -> float:
        """m >= 1 from the battery (on battery power) and the memory in use
        (:func:`layerwise.lwac.resources.multiplier`); 1 without readings."""
        s, c = self.buffer.state, self.config
        return multiplier(s.battery_percent, s.power_plugged, s.memory_percent, battery_weight=c.battery_weight,
                          memory_weight=c.memory_weight, memory_floor=c.memory_floor)

    def refresh_pressure(self) -> None:
        st, rho = self.state, self.config.smoothing
        m = self.resource_multiplier()
        new = [float(st.lam * m * c) for c in st.cost]
        st.pressure = [rho * old + (1 - rho) * p for old, p in zip(st.pressure, new)] if rho else new

    def clone(self) -> "LWACModel":
        """An independent copy (weights, controllers, state, tracker); no monitor, no budget."""
        monitor, budget, history = self.monitor, self.budget, self.history
        self.monitor, self.budget, self.history = None, None, None
        try:
            return copy.deepcopy(self)
        finally:
            self.monitor, self.budget, self.history = monitor, budget, history

    def strip(self) -> nn.Module:
        """A plain copy of the network this LWAC model runs (its current weights), every ACU
        replaced by the unit it wraps: no decision, no bookkeeping."""
        clone = self.clone()
        plain = clone.model
        for u, acu in zip(self.units, clone.acus):
            _replace(plain, u.name, acu.unit)
        return plain.eval()

    # ---- control ----------------------------------------------------------------------------
    def set_lambda(self, lam: float) -> None:
        lam = float(lam)
        if not lam >= 0:  # also NaN
            raise LWACError(f"lambda must be >= 0, not {lam}: a negative lambda would keep costly units and "
                            "bypass less as the battery drains")
        self.state.lam = lam
        self.refresh_pressure()

    def hold_lambda(self, lam: float) -> None:
        """:meth:`set_lambda`, and the pressure settled at it: with ``config.smoothing`` (an EMA
        between inferences) one refresh moves the pressure only part of the way; it is refreshed
        until the remaining gap is below 1e-6 of the first one. A fixed depth (a level, the floor)
        is then what its lambda does from the first inference on."""
        self.set_lambda(lam)
        rho = self.config.smoothing
        if rho > 0:
            for _ in range(int(math.ceil(math.log(1e-6) / math.log(rho)))):
                self.refresh_pressure()

    def set_budget(self, fraction: float, dense_ms: float | None = None, **gains) -> PIController:
        """Track ``fraction`` of dense latency by PI control of lambda over ``lam_range``.

        ``dense_ms`` given: a fixed target ``fraction * dense_ms`` (a slower machine, e.g. under
        contention, must bypass more to meet it). ``None``: the target follows an online estimate
        of dense latency under current conditions (measured latency + the moving-average latency
        of the units bypassed), smoothed by an EMA, so drift in machine load moves the target too.
        """
        lo, hi = self.lam_range
        start = dense_ms if dense_ms is not None else (self.dense_ms or sum(self._latency_ms) or 1.0)
        if self.lam_curve and "u0" not in gains:  # feed-forward: the calibrated lambda for this budget
            ok = [lam for lam, ratio in sorted(self.lam_curve) if ratio <= fraction]
            lam_ff = ok[0] if ok else hi
            gains["u0"] = min(1.0, max(0.0, (lam_ff - lo) / (hi - lo))) if hi > lo else 0.0
        pi = budget_controller(fraction, start, lam_max=1.0, **gains)
        self.budget = _RangeController(pi, lo, hi, fraction if dense_ms is None else None)
        self._last_bypassed = None
        return pi

    def set_latency_target(self, target_ms: float, *, levels: list[Level] | None = None,
                           **gains) -> PIController | LevelController:
        """Track an ABSOLUTE budget of ``target_ms`` milliseconds per input (the fraction of dense
        latency it stands for follows the machine: under contention the same target needs more
        bypassing).

        ``levels`` (from :func:`layerwise.lwac.levels.measure_levels`): hold the measured depth
        level nearest the budget, scaled by the machine's current slowdown (``gains`` go to
        :class:`~layerwise.lwac.levels.LevelController`). Without: PI control of lambda, fed
        forward from the calibration curve with the MEASURED dense latency (``dense_ms``), when
        both are known."""
        from .config import check_latency_ms
        t = check_latency_ms(target_ms)
        if levels is not None:
            ctl = LevelController(t, levels, **gains)
            self.budget = ctl
            self.hold_lambda(ctl.lam)
            return ctl
        frac = min(1.0, t / self.dense_ms) if self.dense_ms else 1.0
        pi = self.set_budget(frac, dense_ms=t / frac if frac > 0 else t, **gains)
        pi.target_ms = t
        return pi

    def clear_budget(self) -> None:
        self.budget = None

    def use_monitor(self, monitor) -> None:
        self.monitor = monitor
        if monitor is not None:
            monitor.on_inference(self.state.step)
        self.refresh_resources()

    def refresh_resources(self) -> None:
        """Read the shared buffer's latest state now: costs (power, eq. 4) and pressures (battery,
        memory, lambda). The runtime calls this between inferences whenever the monitor publishes."""
        self._seen_state = self.buffer.state
        self.refresh_costs()
        self.refresh_pressure()

    # ---- modes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Every ACU decides, then runs its unit at alpha = 1 with nothing bypassed."""
        old, self.state.pinned = self.state.pinned, True
        try:
            yield
        finally:
            self.state.pinned = old

    @contextlib.contextmanager
    def forced(self, masks: dict) -> Iterator[None]:
        """Force unit ``i`` bypassed (True / False / (B,) bool tensor) for each ``i`` in ``masks``."""
        for i in masks:
            if not self.units[i].bypassable:
                raise LWACError(f"unit {self.units[i].name} ({self.units[i].kind}) cannot be bypassed: "
                                f"{self.units[i].reason}; force only bypassable units")
        old, self.state.forced = self.state.forced, dict(masks)
        try:
            yield
        finally:
            self.state.forced = old

    @contextlib.contextmanager
    def recording(self) -> Iterator[LWACState]:
        self.state.clear_records()
        old, self.state.recording = self.state.recording, True
        try:
            yield self.state
        finally:
            self.state.recording = old

    # ---- what ran ---------------------------------------------------------------------------
    @property
    def bypassable(self) -> list[int]:
        return [u.index for u in self.units if u.bypassable]

    def run_share(self) -> list[float]:
        """Per unit: the fraction of samples on which it was computed (since ``reset_counts``)."""
        st = self.state
        return [e / (e + b) if e + b else 0.0 for e, b in zip(st.executed, st.bypassed)]

    def samples_seen(self) -> int:
        st = self.state
        return max((st.executed[i] + st.bypassed[i] for i in range(len(self.units))), default=0)

    def network_macs_run(self) -> int:
        """Total MACs of the network actually run since ``reset_counts`` (all samples): dense MACs
        per sample, minus, per bypassed sample of a unit, the unit's MACs less its bypass's
        (a projection shortcut still runs). Controllers not included."""
        st = self.state
        skipped = sum((u.macs - u.bypass_macs) * st.bypassed[u.index] for u in self.units)
        return self.dense_macs * self.samples_seen() - skipped

    def macs_executed(self) -> float:
        """Mean MACs per sample actually executed: :meth:`network_macs_run` per sample plus the
        controllers' MACs at their real batch-1 cost (:meth:`controller_macs`)."""
        n = self.samples_seen()
        if n == 0:
            return float(self.dense_macs + self.controller_macs())
        return self.network_macs_run() / n + self.controller_macs()

    def controller_macs(self) -> int:
        """Per sample: every gated unit's controller decides on every sample (heuristic: none);
        each costs its pooling over the unit's input plus its linear layer(s)."""
        if self.config.policy == "heuristic":
            return 0
        return sum(a.controller.macs(self.units[a.unit_index].input_shape) for a in self.acus
                   if a.controller is not None and a.gated)

    def reset_counts(self) -> None:
        self.state.reset_counts()


class _RangeController:
    """Maps a PI controller's u in [0, 1] onto lambda in [lo, hi]; with ``relative`` set, the
    target is ``relative`` x an EMA of the online dense-latency estimate."""

    def __init__(self, pi: PIController, lo: float, hi: float, relative: float | None = None, ema: float = 0.05):
        self.pi, self.lo, self.hi, self.relative, self.ema = pi, lo, hi, relative, ema
        self.dense_ms: float | None = None

    @property
    def target_ms(self) -> float:
        return self.pi.target_ms

    def update(self, measured_ms: float, dense_equivalent_ms: float | None = None) -> float:
        if self.relative is not None and dense_equivalent_ms is not None:
            d = dense_equivalent_ms
            self.dense_ms = d if self.dense_ms is None else (1 - self.ema) * self.dense_ms + self.ema * d
            self.pi.target_ms = self.relative * self.dense_ms
        self.pi.update(measured_ms)
        return self.lo + self.pi.u * (self.hi - self.lo)


def attach(model: nn.Module, example_input: torch.Tensor, config: LWACConfig | None = None, *,
           block_types: Iterable[type] = (), inplace: bool = False, latency_n: int = 20,
           threads: int | None = None) -> LWACModel:
    """Attach an ACU after every calibratable unit of ``model``; returns the :class:`LWACModel`.

    ``inplace=False`` (default) works on a deep copy: the base model and its weights are untouched.
    ``example_input`` (batch 1) gives each unit's shapes, MACs and an initial latency.
    """
    cfg = (config or LWACConfig()).validate()
    base = model if inplace else copy.deepcopy(model)
    base.eval()
    found = find_units(base, block_types)
    types = tuple(block_types) + tuple({type(m): None for _, m, _ in found})  # found by tracing, too
    infos = {l.name: l for l in list_layers(base, example_input, "block", types)}
    dense_macs = _total_macs(base, example_input)
    dense_ms = measure_dense_ms(base, example_input, n=latency_n, threads=threads)  # before any ACU is in
    names = [n for n, _, _ in found]
    try:
        lat = per_layer_latency(base, example_input, leaf_names=names, n=latency_n, warmup=3, threads=threads)
    except Exception as exc:  # a unit that is never reached, a model the hooks cannot time
        log.warning("per-unit latency not measured (%s); costs use MACs until the monitor has samples", exc)
        lat = {}
    state = LWACState(len(found), cfg)
    buffer = SharedBuffer(len(found))
    tracker = RelevanceTracker(len(found), cfg.window, cfg.eta)
    acus, units = [], []
    for i, (name, mod, kind) in enumerate(found):
        info = infos[name]
        adapter = adapter_for(mod, kind, info.input_shape, info.output_shape)
        gated = cfg.mode == "soft" or adapter.bypassable
        controller = None
        if gated and cfg.policy in ("neural", "learned") and info.input_shape is not None and len(info.input_shape) >= 2:
            kind_s = summary_kind(cfg.summary, info.input_shape)
            controller = UnitController(summary_features(kind_s, info.input_shape), cfg.hidden)
            controller.summary = kind_s
        units.append(UnitInfo(i, name, kind, adapter.bypassable, info.macs, info.params, info.input_shape,
                              info.output_shape, lat[name].median_ms if name in lat else None,
                              _bypass_macs(adapter, info.input_shape), None if adapter.bypassable else adapter.reason))
        acu = AttentionCalibrationUnit(mod, i, name, kind, adapter, state, buffer, tracker, controller)
        _replace(base, name, acu)
        acus.append(acu)
    fixed = [f"{u.name}: {u.reason}" for u in units if not u.bypassable]
    if cfg.mode == "hard" and not any(u.bypassable for u in units):
        log.warning("no unit of %s can be bypassed, so hard mode will save nothing (use mode='soft' to scale "
                    "them): %s", type(model).__name__, "; ".join(fixed))
    elif cfg.mode == "hard" and fixed:
        log.warning("%d of %d units of %s run always (not bypassable): %s", len(fixed), len(units),
                    type(model).__name__, "; ".join(fixed))
    return LWACModel(base, acus, units, state, buffer, tracker, dense_macs, dense_ms).eval()


def measure_dense_ms(model: nn.Module, x: torch.Tensor, n: int = 20, threads: int | None = None) -> float | None:
    """Median batch-1 latency of the whole (base) model, timed as one call, not summed per unit."""
    from ..measure import measure_latency
    try:
        with torch.no_grad():
            return float(measure_latency(model, x, n=max(3, n), warmup=3, threads=threads).median_ms)
    except Exception as exc:  # pragma: no cover - a model the timer cannot call
        log.warning("dense latency not measured (%s)", exc)
        return None


def _bypass_macs(adapter, input_shape) -> int:
    """MACs of what a bypass still runs: a projection shortcut (conv + BN) on the unit's input, or
    what follows the residual add of a traced block, applied to the input."""
    from .units import TracedResidualAdapter
    if isinstance(adapter, TracedResidualAdapter) and input_shape is not None:
        from ..measure import count_macs
        try:
            return int(count_macs(adapter.bypass_module, torch.zeros(1, *input_shape[1:])).total)
        except Exception:  # pragma: no cover - a graph the counter cannot run alone
            return 0
    sc = getattr(adapter.unit, "shortcut", None)
    if not adapter.bypassable or sc is None or input_shape is None or isinstance(sc, nn.Identity):
        return 0
    from ..measure import count_macs
    try:
        return int(count_macs(sc, torch.zeros(1, *input_shape[1:])).total)
    except Exception:  # pragma: no cover - a shortcut that cannot run alone
        return 0


def _total_macs(model: nn.Module, x) -> int:
    from ..measure import count_macs
    return int(count_macs(model, x).total)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
