"""Per-method parts of a section, each from what that command writes in its results file:

* ``profile``: the per-layer table (``extra.layers``);
* ``unit``: the accuracy-vs-MACs figure and the threshold sweep (``extra.sweep`` of the ``unit``
  variant, plus the rivals' curves in ``extra.curves``), drop = dense − variant (+ = worse), the
  same sign as the plot's y axis;
* ``adalayer``: the layer fingerprint and architecture ribbon figures and the per-layer plan
  (``extra.layers`` of the ``adalayer`` variant, ``extra.budget``);
* ``lwac``: latency over time (figure) and the budget phases (``extra.budget_demo``), plus each
  ``--latency-budget`` variant (``extra.budget``);
* ``ela``: the removed attention layers (``extra.skipped_per_seed``, ``extra.skip_events_per_seed``)
  and epoch / step timings of every variant.

Each function returns ``(html, figure names it placed)``; where a field is absent it says what is
missing instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from .fmt import Notes, dig, drop_pt, esc, figure, is_num, missing, num, pct, spread_cell, table
from .variants import find_variant


def _figures(directory: Path, doc: dict, wanted: list[tuple[str, str]]) -> tuple[str, set[str]]:
    """Place each ``(file name part, caption)`` of ``wanted`` that the file lists; say so for the others."""
    out, used = [], set()
    names = [f for f in doc.get("figures") or [] if isinstance(f, str)]
    for part, caption in wanted:
        hit = next((f for f in names if part in f), None)
        if hit is None:
            out.append(missing(f"figure: {caption}", f"a figure named *{part}* in 'figures'"))
        else:
            used.add(hit)
            out.append(figure(directory, hit, caption))
    return "".join(out), used


def _shape(s) -> str:
    return "×".join(str(x) for x in s) if isinstance(s, list) else "—"


def profile_part(doc: dict, directory: Path, notes: Notes) -> tuple[str, set[str]]:
    v = next((x for x in doc.get("variants") or [] if isinstance(dig(x, "extra", "layers"), list)), None)
    if v is None:
        return "<h3>Per layer</h3>" + missing("per-layer table", "extra.layers of the profiled variant"), set()
    layers = [r for r in v["extra"]["layers"] if isinstance(r, dict)]
    total_macs = v.get("macs") if is_num(v.get("macs")) and v.get("macs") > 0 else None
    lat_sum = sum(dig(r, "latency_ms", "median") or 0 for r in layers if is_num(dig(r, "latency_ms", "median")))
    rows = []
    for r in layers:
        name = r.get("name")
        m, t = r.get("macs"), dig(r, "latency_ms", "median")
        rows.append([esc(name), esc(r.get("kind", "—")), num(r.get("params")), num(m),
                     pct(m / total_macs, 1) if is_num(m) and total_macs else "—",
                     esc(_shape(r.get("input_shape"))) + " → " + esc(_shape(r.get("output_shape"))),
                     spread_cell(t, dig(r, "latency_ms", "iqr"), f"layer {name}", notes,
                                 n=dig(r, "latency_ms", "n")),
                     pct(t / lat_sum, 1) if is_num(t) and lat_sum > 0 else "—"])
    src = dig(layers, 0, "latency_ms", "source")
    return (f"<h3>Per layer ({len(layers)} layers)</h3>"
            + table(["layer", "kind", "params", "MACs", "share of model MACs", "input → output shape",
                     "latency ms (median ± IQR)", "share of summed layer time"], rows, "layers")
            + (f"<p class=meta>layer times: {esc(src)}</p>" if src else "")), set()


def _curve_rows(points: list, dense_acc, chosen=None) -> tuple[str, list[list[str]]]:
    key = next((k for k in ("percentile", "sparsity", "bound_pt") if any(isinstance(p, dict) and k in p
                                                                         for p in points)), None)
    rows = []
    for p in sorted((p for p in points if isinstance(p, dict)),
                    key=lambda p: p.get(key) if is_num(p.get(key)) else -1):
        setting = num(p.get(key), "{:g}") if key else "—"
        mark = key == "percentile" and is_num(chosen) and p.get(key) == chosen
        if mark:
            setting = f"<b>{setting} ◀ chosen</b>"
        rows.append([setting, pct(p.get("val_accuracy")), pct(p.get("accuracy")), drop_pt(dense_acc, p.get("accuracy")),
                     pct(p.get("remaining"), 1)])
    return key or "setting", rows


_CURVE_HEAD = ["val accuracy", "test accuracy", "drop vs dense (pt, + = worse)",
               "remaining MACs executed (% of dense)"]


def unit_part(doc: dict, directory: Path, notes: Notes) -> tuple[str, set[str]]:
    figs, used = _figures(directory, doc, [("accuracy_vs_macs", "accuracy drop (+ = worse) vs remaining MACs")])
    unit, dense = find_variant(doc, "unit"), find_variant(doc, "dense")
    dense_acc = dense.get("accuracy") if dense else None
    sweep = dig(unit, "extra", "sweep")
    parts = ["<h3>UnIT: threshold sweep</h3><p class=meta>Plot and tables share one sign: drop = dense − "
             "variant in points (+ = worse); remaining MACs are a share of the dense model executing every MAC "
             "(the plot's x axis).</p>", figs]
    if not isinstance(sweep, list) or not sweep:
        parts.append(missing("UnIT sweep table", "extra.sweep of the unit variant"))
    else:
        key, rows = _curve_rows(sweep, dense_acc, dig(unit, "extra", "percentile"))
        parts.append(table([key] + _CURVE_HEAD, rows))
    curves = dig(unit, "extra", "curves")
    if isinstance(curves, dict):
        for name, pts in curves.items():
            if isinstance(pts, list) and pts:
                key, rows = _curve_rows(pts, dense_acc)
                parts.append(f"<details><summary>{esc(name)} curve ({len(rows)} points)</summary>"
                             + table([key] + _CURVE_HEAD, rows) + "</details>")
    return "".join(parts), used


def adalayer_part(doc: dict, directory: Path, notes: Notes) -> tuple[str, set[str]]:
    figs, used = _figures(directory, doc, [("fingerprint", "layer fingerprint (each axis / its max over layers)"),
                                           ("ribbon", "architecture ribbon: width ∝ params kept, colour = bits")])
    ada = find_variant(doc, "adalayer")
    layers = dig(ada, "extra", "layers")
    parts = ["<h3>AdaLayerNet: per-layer plan</h3>", figs]
    b = dig(ada, "extra", "budget")
    if isinstance(b, dict):
        parts.append(f"<p class=meta>size budget: target {num(b.get('target_bytes'))} bytes, packed "
                     f"{num(b.get('packed_bytes'))} bytes of {num(b.get('dense_bytes'))} dense "
                     f"({pct(b.get('fraction'), 1)} of dense)</p>")
    if not isinstance(layers, list) or not layers:
        parts.append(missing("AdaLayerNet per-layer plan", "extra.layers of the adalayer variant"))
    else:
        rows = []
        for r in layers:
            if not isinstance(r, dict):
                continue
            p, after = r.get("params"), r.get("params_after")
            kept = f" ({pct(after / p, 1)})" if is_num(after) and is_num(p) and p > 0 else ""
            rows.append([esc(r.get("name")), esc(r.get("kind", "—")), num(p), num(after) + kept, num(r.get("macs")),
                         pct(r.get("prune_ratio"), 1), num(r.get("bits")),
                         num(r.get("accuracy_contribution"), "{:.3f}"), num(r.get("importance"), "{:.3f}")])
        parts.append(table(["layer", "kind", "params", "params kept", "MACs", "pruned", "bits",
                            "accuracy contribution", "importance"], rows, "layers"))
    return "".join(parts), used


def lwac_part(doc: dict, directory: Path, notes: Notes) -> tuple[str, set[str]]:
    figs, used = _figures(directory, doc, [("latency_over_time", "latency over time under changing budgets")])
    parts = ["<h3>LWAC: latency over time</h3>", figs]
    demo = next((dig(v, "extra", "budget_demo") for v in doc.get("variants") or []
                 if isinstance(dig(v, "extra", "budget_demo"), list)), None)
    if demo is None:
        parts.append(missing("budget phases", "extra.budget_demo"))
    else:
        rows = []
        for i, s in enumerate(x for x in demo if isinstance(x, dict)):
            t, m = s.get("target_ms"), s.get("steady_median_ms")
            ok = ("yes" if m <= t else "<b>no</b>") if is_num(t) and is_num(m) else "—"
            rows.append([str(i + 1), num(s.get("budget"), "{:g}× dense"), num(t, "{:.3f}"), num(m, "{:.3f}"),
                         num(s.get("ratio_to_dense"), "{:.2f}×"), num(s.get("contention"), "{:g}×"), ok])
        parts.append("<p class=meta>The command's built-in schedule of budget phases (simulated battery and "
                     "contention); steady = median over the second half of each phase.</p>"
                     + table(["phase", "budget", "target ms", "steady median ms", "vs dense",
                              "simulated contention", "steady median within target"], rows))
    budgets = [(v.get("name"), v["extra"]["budget"]) for v in doc.get("variants") or []
               if isinstance(dig(v, "extra", "budget"), dict)]
    if budgets:
        rows = []
        for name, b in budgets:
            f, r = b.get("fraction"), b.get("steady_state_ratio_vs_dense")
            met = ("met" if r <= f else "<b>missed</b>") if is_num(f) and is_num(r) else "—"
            rows.append([esc(name), num(f, "{:g}"), num(r, "{:.3f}"), met])
        parts.append("<h4>Your --latency-budget runs</h4>"
                     + table(["variant", "your budget (× dense)", "steady-state latency (× dense)", "budget"], rows))
    return "".join(parts), used


def ela_part(doc: dict, directory: Path, notes: Notes) -> tuple[str, set[str]]:
    ela = find_variant(doc, "ela")
    parts = ["<h3>ELA: removed layers</h3>"]
    skipped = dig(ela, "extra", "skipped_per_seed")
    if not isinstance(skipped, list):
        parts.append(missing("removed layers", "extra.skipped_per_seed of the ela variant"))
    else:
        seeds = dig(ela, "extra", "seeds") or list(range(len(skipped)))
        total = dig(ela, "extra", "attention_layers")
        of = f" of {total} attention layers" if is_num(total) else ""
        items = "".join(f"<li>seed {esc(s)}: {len(k)} removed{of}: {esc(', '.join(map(str, k))) or 'none'}</li>"
                        for s, k in zip(seeds, skipped) if isinstance(k, list))
        parts.append(f"<ul>{items}</ul>")
        events = dig(ela, "extra", "skip_events_per_seed", 0)
        if isinstance(events, list) and events:
            rows = [[num(e.get("epoch")), esc(e.get("window")), esc(", ".join(map(str, e.get("skipped") or []))) or "—",
                     num(e.get("skipped_total")), num(e.get("quantile"), "{:.3g}")]
                    for e in events if isinstance(e, dict)]
            parts.append(f"<details open><summary>when (seed {esc(dig(seeds, 0))})</summary>"
                         + table(["epoch", "window (epochs)", "removed at this window", "removed so far",
                                  "KL quantile"], rows) + "</details>")
    rows = []
    for v in doc.get("variants") or []:
        x = v.get("extra") if isinstance(v, dict) else None
        if not isinstance(x, dict) or not any(k in x for k in ("epoch_time_s", "step_time_ms")):
            continue
        name = v.get("name")
        per_seed = x.get("epoch_times_s_per_seed")
        epochs = sum(len(s) for s in per_seed if isinstance(s, list)) if isinstance(per_seed, list) else None
        st = x.get("step_time_ms") if isinstance(x.get("step_time_ms"), dict) else {}
        rows.append([esc(name),
                     spread_cell(x.get("epoch_time_s"), x.get("epoch_time_iqr_s"), f"{name} epoch time", notes,
                                 unit="s", digits=2),
                     num(epochs), num(x.get("epoch_time_ratio_vs_mrla_b"), "{:.2f}×"),
                     spread_cell(st.get("median"), st.get("iqr"), f"{name} step time", notes,
                                 n=st.get("n"), digits=1),
                     num(st.get("batch")), num(x.get("step_time_ratio_vs_mrla_b"), "{:.2f}×")])
    parts.append("<h3>ELA: training time</h3>")
    if rows:
        parts.append(table(["variant", "epoch time s (median ± IQR)", "epochs timed", "epoch vs mrla-b",
                            "step time ms (median ± IQR)", "batch", "step vs mrla-b"], rows))
    else:
        parts.append(missing("epoch and step timings", "extra.epoch_time_s / extra.step_time_ms"))
    return "".join(parts), set()


PARTS = {"profile": profile_part, "unit": unit_part, "adalayer": adalayer_part, "lwac": lwac_part, "ela": ela_part}
