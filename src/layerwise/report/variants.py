"""The table every results directory gets (one row per variant, every measured value) and the
table of its paired comparisons with their verdicts."""

from __future__ import annotations

from .fmt import Notes, accuracy_cell, dig, drop_pt, esc, is_num, latency_cell, num


def variants_head(reference: str | None) -> list[str]:
    drop = (f"drop vs {esc(reference)} (pt, + = worse)" if reference else "drop (pt, + = worse)")
    return ["variant", "accuracy", drop, "MACs", "MACs executed", "params", "size (bytes)",
            "latency ms (median ± IQR)", "peak mem (bytes)", "energy J/inference"]


def _energy_cell(en) -> str:
    if not isinstance(en, dict) or not is_num(en.get("value")):
        return "—"
    est = en.get("estimated") is True
    cls = ' class="est"' if est else ""
    return f"<span{cls} title=\"{esc(en.get('source'))}\">{en['value']:.3g}{' (est.)' if est else ''}</span>"


def _variant_row(v: dict, dense: dict | None, v2: bool = False, notes: Notes | None = None) -> str:
    """One row of the variants table. ``dense``: the reference variant the drop is measured from
    (none: no drop shown)."""
    name = v.get("name")
    drop = ""
    if dense is not None:
        drop = "reference" if v is dense else drop_pt(dense.get("accuracy"), v.get("accuracy"))
    executed, macs = v.get("macs_executed"), v.get("macs")
    share = f" ({executed / macs * 100:.1f} %)" if is_num(executed) and is_num(macs) and macs > 0 else ""
    cells = [esc(name), accuracy_cell(v, v2), drop or "", num(macs), num(executed) + share, num(v.get("params")),
             num(v.get("size_bytes")), latency_cell(v.get("latency_ms"), f"{name} latency", notes),
             num(v.get("peak_mem_bytes")), _energy_cell(v.get("energy_j"))]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def variants_table(variants: list[dict], reference: dict | None, v2: bool, notes: Notes | None) -> str:
    ref_name = reference.get("name") if isinstance(reference, dict) else None
    rows = "".join(_variant_row(v, reference, v2, notes) for v in variants if isinstance(v, dict))
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in variants_head(ref_name)) + f"</tr>{rows}</table>")


def _comparisons_table(comparisons: list[dict]) -> str:
    """Paired comparisons on the same test images: A − B (+ = A right more often), its interval,
    the discordant counts, McNemar's p and the verdict written by the command."""
    if not comparisons:
        return ""
    head = ["A", "B", "A − B (pt, + = A better)", "CI", "right with A only / B only (of n)", "McNemar p", "verdict"]
    rows = []
    for c in comparisons:
        if not isinstance(c, dict):
            continue
        cls = "" if c.get("measurable") else ' class="none"'
        d, lo, hi, lvl = (c.get(k) for k in ("difference", "low", "high", "level"))
        ci = (f"{100 * lvl:g} %: {100 * lo:+.2f} to {100 * hi:+.2f} pt"
              if all(is_num(x) for x in (lo, hi, lvl)) else "—")
        counts = (f"{c['only_a']:,} / {c['only_b']:,} (of {c['n']:,})"
                  if all(is_num(c.get(k)) for k in ("only_a", "only_b", "n")) else "—")
        cells = [esc(c.get("a")), esc(c.get("b")), f"{100 * d:+.2f} pt" if is_num(d) else "—", ci, counts,
                 num(c.get("mcnemar_p"), "{:.3g}")]
        row = "".join(f"<td>{x}</td>" for x in cells)
        rows.append(f'<tr{cls}>{row}<td class=verdict title="{esc(c.get("method"))}">'
                    f"{esc(c.get('verdict'))}</td></tr>")
    return ("<h3>Paired comparisons (same test images)</h3><table><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def comparison_for(doc: dict, a: str, b: str) -> dict | None:
    """The paired comparison of ``a`` with ``b`` in ``doc`` (either order), or None."""
    for c in doc.get("comparisons") or []:
        if isinstance(c, dict) and {c.get("a"), c.get("b")} == {a, b}:
            return c
    return None


def find_variant(doc: dict, name: str | None) -> dict | None:
    for v in doc.get("variants") or []:
        if isinstance(v, dict) and v.get("name") == name:
            return v
    return None


__all__ = ["_comparisons_table", "_variant_row", "comparison_for", "dig", "find_variant", "variants_table"]
