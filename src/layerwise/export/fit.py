"""Fit the cycle model's per-operation costs (:mod:`layerwise.unit.mcu`) to ``mspdebug sim`` runs.

Each measured layer of each variant is one equation: its cycles = the sum over operation kinds of
(count from the int16 reference, :class:`~layerwise.export.fixed.LayerWork`) x (cost per
operation). The costs are fitted per multiplier by non-negative least squares, each equation
divided by its network's measured total (so every run weighs the same and, within a run, a layer
weighs by its share of the cycles: the fit serves whole-network predictions), and the
whole-network prediction error of every variant is reported with them.

Rerun: ``python bench/mcu_fit.py RUN/results.json [...] [--out FIT.json]`` (files written by
``layerwise export-c``): prints the fitted costs and every variant's error in the fit and, with
records of several models, with each model held out of the fit (:func:`leave_one_model_out`: the
costs fitted on the other models predict it), the honest check of a model with this many costs.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from ..errors import LayerwiseError

SWMUL_STEP = 12.0
DIVS = ("exact", "bitshift", "binary_tree", "bitmask")
PARAMS = (["mac", "multiply_step", "compare_branch_keep", "compare_branch_skip", "zero_test_keep",
           "zero_test_skip", "row", "row_test", "segment", "output", "elementwise"] + [f"division.{d}" for d in DIVS]
          + [f"division_step.{d}" for d in DIVS[1:]])


def _features(w: dict, default_bits: float = 0.0) -> np.ndarray:
    f = dict.fromkeys(PARAMS, 0.0)
    f["mac"] = w.get("macs_executed", 0)
    # the software multiply's bits of |w| above the average (layerwise.unit.mcu: mac is the cost
    # at default_multiply_bits)
    f["multiply_step"] = (w.get("multiply_steps") or 0) - f["mac"] * default_bits
    f["compare_branch_keep"] = w.get("compares_keep", 0)
    f["compare_branch_skip"] = w.get("compares_skip", 0)
    f["zero_test_keep"] = w.get("zero_keep", 0)
    f["zero_test_skip"] = w.get("zero_skip", 0)
    f["segment"] = w.get("segments", 0)
    f["row"] = w.get("rows", 0)
    f["row_test"] = w.get("row_tests", 0)
    f["output"] = w.get("outputs", 0)
    f["elementwise"] = w.get("elementwise", 0)
    d = w.get("division", "exact")
    if w.get("divisions"):
        f[f"division.{d}"] = w["divisions"]
        if d != "exact":
            f[f"division_step.{d}"] = w.get("division_steps", 0)
    return np.array([f[p] for p in PARAMS], dtype=np.float64)


def fit(records: list[dict], multiplier: str) -> dict[str, float]:
    """Non-negative relative least squares over every measured layer of ``multiplier``'s runs."""
    from scipy.optimize import nnls

    mine = [r for r in records if r["multiplier"] == multiplier]
    macs = sum(w.get("macs_executed", 0) for r in mine for w in r["work"].values())
    bits = sum(w.get("multiply_steps") or 0 for r in mine for w in r["work"].values())
    default_bits = bits / macs if macs and multiplier == "swmul" else 0.0
    rows, ys = [], []
    for r in mine:
        total = float(r["cycles"])
        for layer, cyc in r["per_layer"].items():
            w = r["work"].get(layer)
            if w is None or cyc <= 0:
                continue
            rows.append(_features(w, default_bits) / total)
            ys.append(cyc / total)
    if not rows:
        raise LayerwiseError(f"no {multiplier} measurements with work counts to fit")
    a = np.array(rows)
    used = a.any(0)
    if multiplier == "hwmul":            # the hardware multiply takes the same time for any data
        used[PARAMS.index("multiply_step")] = False
    sol = np.zeros(len(PARAMS))
    y = np.array(ys)
    k = PARAMS.index("multiply_step")
    if multiplier == "swmul":
        # not fitted: the shift-and-add routine's own cost per bit of |w| (runtime/mul16_sw.S,
        # mspdebug 0.22's table: clrc 3, rrc 1, jnc 2, rla 1, rlc 1, tst 1, jnz 2 = 11, plus
        # add + addc 2 for a set bit, about half of them)
        sol[k] = SWMUL_STEP
        y = y - a[:, k] * SWMUL_STEP
    used[k] = False
    x, _ = nnls(a[:, used], y)
    sol[used] = x
    out = {p: float(v) for p, v in zip(PARAMS, sol)}
    out["default_multiply_bits"] = default_bits
    return out


def eighths(costs: dict[str, float]) -> dict[str, float]:
    """The costs rounded to 1/8 cycle (exact in binary floating point: sums of counts times them
    are exact, so figures computed in different orders compare equal)."""
    return {k: round(v * 8) / 8 for k, v in costs.items()}


def predict(work: dict, costs: dict[str, float]) -> float:
    return float(_features(work, costs.get("default_multiply_bits", 0.0))
                 @ np.array([costs[p] for p in PARAMS]))


def errors(records: list[dict], costs_by_mul: dict[str, dict[str, float]]) -> list[dict]:
    """Whole-network prediction error of every record with the given costs."""
    out = []
    for r in records:
        c = costs_by_mul[r["multiplier"]]
        pred = sum(predict(r["work"][k], c) for k in r["per_layer"] if k in r["work"])
        out.append({"model": r.get("model", ""), "variant": r["variant"],
                    "multiplier": r["multiplier"], "measured": r["cycles"], "predicted": pred,
                    "error": pred / r["cycles"] - 1.0})
    return out


def read_records(paths: list[str]) -> list[dict]:
    recs = []
    for p in paths:
        doc = json.loads(open(p).read())
        if isinstance(doc, dict):        # a results.json of export-c
            model = doc.get("model", "")
            doc = [dict(r, model=model) for v in doc["variants"]
                   for r in v.get("extra", {}).get("mcu_cycles", [])]
        recs += doc
    return recs


def fit_all(records: list[dict]) -> dict[str, dict[str, float]]:
    """Each multiplier's costs fitted to ``records`` (rounded to 1/8 cycle)."""
    return {m: eighths(fit(records, m)) for m in sorted({r["multiplier"] for r in records})}


def leave_one_model_out(records: list[dict]) -> list[dict]:
    """The held-out check: for every model, the costs fitted on the OTHER models' records predict
    its records (whole-network error per variant, as :func:`errors`, with ``held_out`` set)."""
    models = sorted({r.get("model", "") for r in records})
    if len(models) < 2:
        raise LayerwiseError("a leave-one-model-out check needs records of at least two models; "
                             "pass the results.json of several export-c runs")
    out = []
    for m in models:
        train = [r for r in records if r.get("model", "") != m]
        test = [r for r in records if r.get("model", "") == m]
        costs = fit_all(train)
        test = [r for r in test if r["multiplier"] in costs]
        out += [dict(e, held_out=m) for e in errors(test, costs)]
    return out


def _worst(errs: list[dict]) -> str:
    worst = defaultdict(float)
    for e in errs:
        worst[e["multiplier"]] = max(worst[e["multiplier"]], abs(e["error"]))
    return ", ".join(f"{m} {100 * v:.1f} %" for m, v in sorted(worst.items()))


def fit_summary(paths: list[str]) -> tuple[dict, list[str]]:
    """Fit each multiplier's costs to the cycle records in ``paths`` (export-c results.json files or
    record lists); returns a summary (costs, in-sample errors, leave-one-model-out errors when
    there are several models) and its text lines."""
    recs = read_records(paths)
    costs = fit_all(recs)
    fitted = errors(recs, costs)
    held = leave_one_model_out(recs) if len({r.get("model", "") for r in recs}) > 1 else []
    lines = [m + ": " + ", ".join(f"{k} {v:.3f}" for k, v in c.items() if v) for m, c in costs.items()]
    by_key = {(e["model"], e["multiplier"], e["variant"]): e for e in held}
    lines.append("model multiplier variant: measured cycles, predicted (error) in the fit"
                 + ("; predicted (error) with the model held out of the fit" if held else ""))
    for e in fitted:
        h = by_key.get((e["model"], e["multiplier"], e["variant"]))
        lines.append(f"  {e['model']} {e['multiplier']} {e['variant']}: {e['measured']}, "
                     f"{e['predicted']:.0f} ({100 * e['error']:+.1f} %)"
                     + (f"; held out {h['predicted']:.0f} ({100 * h['error']:+.1f} %)" if h else ""))
    lines.append("largest |error| in the fit: " + _worst(fitted))
    if held:
        lines.append("largest |error| held out (leave one model out): " + _worst(held))
    summary = {"costs": costs, "fitted": fitted, "held_out": held,
               "sources": [str(p) for p in paths], "records": len(recs)}
    return summary, lines
