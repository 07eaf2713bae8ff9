"""Every build variant of an exported network on the simulated MSP430, with the cycle model's
prediction beside each measurement (:mod:`layerwise.unit.mcu`, recalibrated on these runs).

Variants (:data:`VARIANTS`): ``dense``; ``zero_skip`` (dense skipping zero operands); UnIT with
each division (``unit-exact``, ``unit-bitshift``, ``unit-binary_tree``, ``unit-bitmask``), each
with the software multiply (``swmul``, profile ``msp430-swmul``) and the hardware multiplier
(``hwmul``, profile ``msp430-hwmul``). A network whose weights and tables do not fit the
simulator's 64 KB is measured slice by slice (:func:`slices`): each Conv / Linear layer split
into groups of output channels / units small enough to fit, each slice a one-layer network run
on that layer's real int16 input; the slices' cycles are summed per layer (a Linear slice repeats
the per-input zero test and division, so a sliced Linear costs more than the whole one would;
the prediction is made for the same slices, so measurement and model compare like for like).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LayerwiseError
from ..unit.mcu import McuWork, estimate, get_profile
from . import msp430
from .c_codegen import emit, footprint
from .fixed import LayerWork, QNet, run_fixed

log = logging.getLogger(__name__)

VARIANTS = (("dense", None), ("zero_skip", None), ("unit", "exact"), ("unit", "bitshift"),
            ("unit", "binary_tree"), ("unit", "bitmask"))
PROFILE_OF = {"swmul": "msp430-swmul", "hwmul": "msp430-hwmul"}
ROM_BUDGET = 40_000          # bytes of weights + tables + sample a one-piece build may hold


def variant_name(mode: str, division: str | None) -> str:
    return mode if division is None else f"{mode}-{division}"


def work_of(lw: LayerWork, mode: str, division: str | None) -> McuWork:
    """The cycle model's operations for one exported layer's counted work."""
    if lw.kind in ("conv", "linear"):
        keep = lw.executed if lw.tests else 0
        skip = max(lw.tests - lw.executed, 0) if lw.tests else 0
        zero = mode == "zero_skip"          # its per-MAC test is x == 0, not |x| > t
        return McuWork(macs_executed=lw.executed, compares_keep=0 if zero else keep,
                       compares_skip=0 if zero else skip, zero_keep=keep if zero else 0,
                       zero_skip=skip if zero else 0,
                       divisions=lw.divisions, division_steps=lw.division_steps,
                       division=division or "exact", multiply_steps=lw.multiply_bits,
                       rows=lw.rows, row_tests=lw.row_tests, segments=lw.segments,
                       outputs=lw.outputs)
    if lw.kind in ("relu", "maxpool", "avgpool"):
        return McuWork(elementwise=lw.inputs)
    return McuWork()


def predict(works: dict[str, LayerWork], mode: str, division: str | None, profile: str,
            samples: int = 1) -> dict[str, float]:
    """Predicted cycles per layer (per inference) from the cycle model ``profile``."""
    return {n: estimate(work_of(w, mode, division), profile).cycles / samples
            for n, w in works.items()}


@dataclass
class Measured:
    """One variant x multiplier: measured and predicted cycles, per layer and in total."""

    variant: str
    multiplier: str
    cycles: int
    predicted: float
    per_layer: dict[str, int]
    predicted_per_layer: dict[str, float]
    logits_match: bool
    sliced: bool
    sim_seconds: float
    rom_bytes: int = 0
    ram_bytes: int = 0
    commands: dict = field(default_factory=dict)
    work: dict = field(default_factory=dict)          # layer -> McuWork fields (the model's input)

    @property
    def error(self) -> float:
        return self.predicted / self.cycles - 1.0 if self.cycles else 0.0

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["prediction_error"] = self.error
        d["source"] = "mspdebug-sim"
        d["predicted_source"] = f"cycle model: {PROFILE_OF[self.multiplier]}"
        return d


def fits(qnet: QNet, budget: int = ROM_BUDGET) -> bool:
    fp = footprint(qnet)
    return fp.rom_data + fp.input_bytes <= budget


def slices(qnet: QNet, x_q: np.ndarray, budget: int = ROM_BUDGET) -> list[tuple[str, QNet, np.ndarray]]:
    """``(layer name, one-layer QNet, its int16 input)`` for every Conv / Linear slice."""
    out = []
    h = np.asarray(x_q)[None].astype(np.int64)
    for q in qnet.layers:
        if q.is_mac:
            n_out = q.weight.shape[0]
            per_unit = (q.weight[0].size * (4 if q.kind == "conv" else 2) + 4)
            room = budget - 2 * int(np.prod(q.in_shape)) - 256
            k = max(1, min(n_out, room // per_unit))
            if q.kind == "linear":
                while n_out % k or (k % q.groups and q.groups > 1):
                    k -= 1
            for o0 in range(0, n_out, k):
                s = copy.copy(q)
                o1 = min(o0 + k, n_out)
                s.weight, s.bias = q.weight[o0:o1], q.bias[o0:o1]
                s.threshold = q.threshold[o0:o1]
                s.out_shape = (o1 - o0,) + tuple(q.out_shape[1:])
                if q.kind == "linear":
                    s.groups = max(1, q.groups * (o1 - o0) // n_out)
                one = QNet(layers=[s], input_shape=q.in_shape, f_input=q.f_in,
                           num_classes=int(np.prod(s.out_shape)), division=qnet.division)
                out.append((q.name, one, h[0].astype(np.int16)))
        h = _forward_one(q, h)
    return out


def _forward_one(q, h: np.ndarray) -> np.ndarray:
    """One layer of the int16 reference (dense: only its output matters here)."""
    sub = QNet(layers=[q], input_shape=q.in_shape, f_input=q.f_in,
               num_classes=int(np.prod(q.out_shape)), division="exact")
    y, _ = run_fixed(sub, h.astype(np.int16), "unit")
    return y.reshape((1,) + tuple(q.out_shape)).astype(np.int64)


def _measure_one(qnet: QNet, x_q: np.ndarray, build_dir: Path, mode: str, division: str | None,
                 multiplier: str, tools: dict) -> tuple[msp430.McuRun, dict[str, LayerWork], bool]:
    build_dir.mkdir(parents=True, exist_ok=True)
    h, c = emit(qnet, "lw_net")
    (build_dir / "lw_net.h").write_text(h)
    (build_dir / "lw_net.c").write_text(c)
    run = msp430.measure(build_dir / "lw_net.c", build_dir / "lw_net.h", x_q,
                         [q.name for q in qnet.layers], qnet.num_classes, build_dir / "build",
                         mode=mode, division=division, multiplier=multiplier, tools=tools)
    y, works = run_fixed(qnet, np.asarray(x_q)[None], mode, division)
    return run, works, run.logits == y[0].astype(int).tolist()


def measure_variants(qnet: QNet, x_q: np.ndarray, build_dir: Path, *,
                     multipliers=("swmul", "hwmul"), variants=VARIANTS,
                     tools: dict | None = None, budget: int = ROM_BUDGET) -> list[Measured]:
    """Measure every variant x multiplier on one input ``x_q`` (whole, or sliced if too big)."""
    tools = tools or msp430.find_toolchain()
    whole = fits(qnet, budget)
    parts = [("", qnet, np.asarray(x_q))] if whole else slices(qnet, x_q, budget)
    has_linear = any(q.kind == "linear" for q in qnet.layers)
    results = []
    for mul in multipliers:
        prof = PROFILE_OF[mul]
        for mode, div in variants:
            name = variant_name(mode, div)
            per, pred, wk = {}, {}, {}
            ok, secs, rom, ram, cmds = True, 0.0, 0, 0, {}
            for i, (lname, part, xin) in enumerate(parts):
                if (not whole and div not in (None, "exact")
                        and all(q.kind != "linear" for q in part.layers)):
                    # conv slices have no runtime division: every UnIT division runs the same code
                    continue
                run, works, match = _measure_one(part, xin, build_dir / f"{mul}-{name}-{i}",
                                                 mode, div, mul, tools)
                ok &= match
                secs += run.seconds
                rom = max(rom, run.text_bytes + run.rodata_bytes)
                ram = max(ram, run.data_bss_bytes)
                cmds = cmds or run.commands
                p = predict(works, mode, div, prof)
                for ln, cyc in run.per_layer.items():
                    key = lname or ln
                    per[key] = per.get(key, 0) + cyc
                    pred[key] = pred.get(key, 0.0) + p[ln]
                    w = work_of(works[ln], mode, div).__dict__
                    acc = wk.setdefault(key, {k: (0 if isinstance(v, (int, float)) else v)
                                              for k, v in w.items()})
                    for k, v in w.items():
                        if isinstance(v, (int, float)) and not isinstance(v, bool):
                            acc[k] += v
            if not whole and div not in (None, "exact"):
                base = next(r for r in results if r.multiplier == mul and r.variant == "unit-exact")
                for ln in base.per_layer:
                    if ln not in per:
                        per[ln] = base.per_layer[ln]
                        pred[ln] = base.predicted_per_layer[ln]
                        wk[ln] = {**base.work[ln], "division": div}
            if div not in (None, "exact") and not has_linear:
                log.info("no Linear layer: %s runs the same code as unit-exact", name)
            results.append(Measured(variant=name, multiplier=mul, cycles=int(sum(per.values())),
                                    predicted=float(sum(pred.values())), per_layer=per,
                                    predicted_per_layer=pred, logits_match=bool(ok),
                                    sliced=not whole, sim_seconds=secs, rom_bytes=rom,
                                    ram_bytes=ram, commands=cmds, work=wk))
            log.info("msp430 %s %s: %d cycles (model %.0f, %+.1f %%)", mul, name,
                     results[-1].cycles, results[-1].predicted, 100 * results[-1].error)
    return results
