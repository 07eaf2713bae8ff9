"""What the report says about a results file as a whole: its headline variant and reference,
the cost the method saves, whether it was a quick (smoke) run, and the comparison table across
methods (one row per results directory).

Headline choice (a documented choice, not in any paper): each method's own variant against the
model it changes: ``unit`` vs ``dense`` (cost: executed MACs, UnIT, arXiv 2507.07885), ``adalayer``
vs ``dense`` (packed size), ``lwac`` vs ``dense`` (batch-1 latency), ``ela`` vs ``mrla-b`` (training
time per epoch, the ELA paper's baseline). A method this table does not know: its first paired
comparison (A vs B), else its first variant that is not ``dense`` against ``dense``; its cost is
the first of executed MACs, packed size and latency that differs between the two (else the first
measured for both).
"""

from __future__ import annotations

from dataclasses import dataclass

from .fmt import WARN, ci_text, dig, drop_pt, esc, is_num, pct, ratio, wide_spread
from .variants import comparison_for, find_variant

#: method -> (headline variant, reference variant, cost)
HEADLINES = {
    "unit": ("unit", "dense", "macs_executed"),
    "adalayer": ("adalayer", "dense", "size_bytes"),
    "lwac": ("lwac", "dense", "latency"),
    "ela": ("ela", "mrla-b", "epoch_time"),
    "stack": ("adalayer+unit+lwac", "dense", "macs_executed"),
}
_COST_LABEL = {"macs_executed": "executed MACs", "size_bytes": "packed size", "latency": "batch-1 latency (median)",
               "epoch_time": "training time per epoch (median)", "step_time": "training step time (median)"}


@dataclass
class Headline:
    variant: dict
    reference: dict | None
    cost: str | None


def _cost_value(v: dict | None, cost: str):
    if not isinstance(v, dict):
        return None
    if cost == "latency":
        return dig(v, "latency_ms", "median")
    if cost == "epoch_time":
        return dig(v, "extra", "epoch_time_s")
    if cost == "step_time":
        return dig(v, "extra", "step_time_ms", "median")
    return v.get(cost)


def headline(doc: dict) -> Headline | None:
    """The variant a reader looks at first and what it is measured against; None for a file with
    nothing to compare (a profile: one variant)."""
    spec = HEADLINES.get(doc.get("method"))
    if spec:
        v, ref = find_variant(doc, spec[0]), find_variant(doc, spec[1])
        if v is not None:
            cost = spec[2]
            if cost == "epoch_time" and _cost_value(v, cost) is None:
                cost = "step_time"
            return Headline(v, ref, cost)
    comps = [c for c in doc.get("comparisons") or [] if isinstance(c, dict)]
    if comps:
        v, ref = find_variant(doc, comps[0].get("a")), find_variant(doc, comps[0].get("b"))
    else:
        ref = find_variant(doc, "dense")
        v = next((x for x in doc.get("variants") or [] if isinstance(x, dict) and x is not ref), None)
    if v is None:
        return None
    measured = [c for c in ("macs_executed", "size_bytes", "latency")
                if ratio(_cost_value(v, c), _cost_value(ref, c)) is not None]
    cost = next((c for c in measured if abs(ratio(_cost_value(v, c), _cost_value(ref, c)) - 1) > 0.01),
                measured[0] if measured else None)
    return Headline(v, ref, cost)


def quick_reasons(doc: dict) -> list[str]:
    """Why this results file is a quick (smoke) run, from what it records: the top-level ``quick``
    marker, or a ``quick: true`` a command wrote in a variant's settings (e.g. ``extra.config``,
    ``extra.recipe``), or ``--quick`` on a recorded command line. Empty: nothing says so."""
    reasons = []
    if doc.get("quick") is True or dig(doc, "extra", "quick") is True or dig(doc, "env", "quick") is True:
        reasons.append("the results file is marked quick")
    for v in doc.get("variants") or []:
        extra = v.get("extra") if isinstance(v, dict) else None
        if not isinstance(extra, dict):
            continue
        for key, val in extra.items():
            if isinstance(val, dict) and val.get("quick") is True:
                reasons.append(f"variant {v.get('name')}: extra.{key}.quick is true")
                break
            if key in ("argv", "command", "command_line") and "--quick" in str(val):
                reasons.append(f"variant {v.get('name')}: its command line has --quick")
                break
        if len(reasons) > 0:
            break
    return reasons


def quick_badge(doc: dict) -> str:
    r = quick_reasons(doc)
    if not r:
        return ""
    return (f'<span class="quick" title="{esc("; ".join(r))}">QUICK / SMOKE RUN: tiny settings, '
            "not a result to quote</span>")


def cost_text(h: Headline) -> str:
    """``0.70× executed MACs (122,995 / 176,328)``; a ratio over a wide latency spread is flagged."""
    if h.cost is None or h.reference is None:
        return "—"
    a, b = _cost_value(h.variant, h.cost), _cost_value(h.reference, h.cost)
    r = ratio(a, b)
    if r is None:
        return f"— ({esc(_COST_LABEL[h.cost])} not measured for both)"
    fmt = "{:,.0f}" if h.cost in ("macs_executed", "size_bytes") else "{:.3g}"
    text = f"{r:.2f}× {esc(_COST_LABEL[h.cost])} ({fmt.format(a)} / {fmt.format(b)})"
    if h.cost == "latency" and any(wide_spread(dig(v, "latency_ms", "median"), dig(v, "latency_ms", "iqr"))
                                   for v in (h.variant, h.reference)):
        text = (f'<span class="wide" title="a latency spread is wider than its median">{WARN} {text}</span>')
    return text


def _acc(v: dict | None) -> str:
    if not isinstance(v, dict) or not is_num(v.get("accuracy")):
        return "—"
    ci = ci_text(v.get("accuracy_ci"))
    return pct(v["accuracy"]) + (f" <span class=ci>{ci}</span>" if ci else "")


def overview_table(docs: list[tuple[str, dict]]) -> str:
    """One row per results directory: its headline variant against its reference, accuracy with
    its CI, the drop (+ = worse), the cost ratio and the paired verdict."""
    head = ["results", "model on data", "variant vs reference", "accuracy (95 % CI)", "reference accuracy",
            "drop (pt, + = worse)", "cost ratio (variant / reference)", "paired verdict", "run"]
    rows = []
    for anchor, doc in docs:
        link = f'<a href="#{esc(anchor)}">{esc(doc.get("method"))}</a>'
        where = f"{esc(doc.get('model'))} on {esc(doc.get('dataset'))}"
        kind = quick_badge(doc) or "no --quick recorded"
        h = headline(doc)
        if h is None:
            rows.append([link, where, "— (one variant: nothing to compare; see its section)", "—", "—", "—", "—",
                         "—", kind])
            continue
        ref = h.reference
        name = esc(h.variant.get("name")) + (f" vs {esc(ref.get('name'))}" if ref else " (no reference variant)")
        comp = comparison_for(doc, h.variant.get("name"), ref.get("name")) if ref else None
        verdict = esc(comp.get("verdict")) if comp else "— (no paired comparison in this file)"
        drop = drop_pt(ref.get("accuracy"), h.variant.get("accuracy")) if ref else "—"
        rows.append([link, where, name, _acc(h.variant), _acc(ref), drop, cost_text(h), verdict, kind])
    return ("<h2>Across methods</h2><p class=meta>Each results directory's own variant against the model "
            "it changes; the drop is reference minus variant in points (+ = worse), the cost ratio is "
            "below 1 where the method saves. Verdicts come from the paired test on the same images.</p>"
            "<table class=overview><tr>" + "".join(f"<th>{x}</th>" for x in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
