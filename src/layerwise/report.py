"""One self-contained HTML page from one or more results directories.

Each directory's ``results.json`` is read and validated (``layerwise.results/2``, or ``/1``); its
variants become a table with every measured value and how it was obtained (energy marked
*estimated* where it is), and its figures are embedded as base64 PNG so the page can be mailed as
one file. Where a ``/2`` file has them, each accuracy shows its 95 % confidence interval and its
spread over seeds, and the paired comparisons between variants get a table with their verdicts.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from .errors import LayerwiseError
from .results import SCHEMA, read_results
from .storage import atomic_write_text, first_line

REPORT_FILE = "report.html"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
.meta{color:#555;font-size:13px}
.est{color:#a60}
.ci{color:#555;font-size:12px}
td.verdict{text-align:left}
tr.none td.verdict{color:#555}
img{max-width:560px;margin:6px;border:1px solid #ddd}
"""


def _num(x, fmt: str = "{:,}") -> str:
    return "—" if x is None else fmt.format(x)


def _ci_text(ci: dict) -> str:
    """``(95 % CI 90.67-91.77)``."""
    return f"({100 * ci['level']:g} % CI {100 * ci['low']:.2f}-{100 * ci['high']:.2f})"


def _accuracy_cell(v: dict, v2: bool) -> str:
    """``91.23 % ± 0.31 over 3 seeds (95 % CI 90.67-91.77)``; just ``91.23 %`` without evidence."""
    acc = v.get("accuracy")
    if acc is None:
        return "—"
    text = f"{acc * 100:.2f} %"
    if not v2:
        return text
    seeds = v.get("seeds") or []
    if len(seeds) > 1 and v.get("accuracy_std") is not None:
        per = ", ".join(f"seed {e['seed']}: {100 * e['accuracy']:.2f} %" for e in seeds if e.get("accuracy") is not None)
        text += (f' <span title="{html.escape(per)}">± {100 * v["accuracy_std"]:.2f} over {len(seeds)} seeds'
                 "</span>")
    ci = v.get("accuracy_ci")
    if ci:
        how = f"{ci['method']}, n={ci['n']:,}"
        text += f' <span class=ci title="{html.escape(how)}">{_ci_text(ci)}</span>'
    return text


def _comparisons_table(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    head = ["A", "B", "A − B", "CI", "right with A only / B only (of n)", "McNemar p", "verdict"]
    rows = []
    for c in comparisons:
        cls = "" if c["measurable"] else ' class="none"'
        cells = [html.escape(c["a"]), html.escape(c["b"]), f"{100 * c['difference']:+.2f} pt",
                 f"{100 * c['level']:g} %: {100 * c['low']:+.2f} to {100 * c['high']:+.2f} pt",
                 f"{c['only_a']:,} / {c['only_b']:,} (of {c['n']:,})", f"{c['mcnemar_p']:.3g}"]
        row = "".join(f"<td>{x}</td>" for x in cells)
        rows.append(f'<tr{cls}>{row}<td class=verdict title="{html.escape(c["method"])}">'
                    f"{html.escape(c['verdict'])}</td></tr>")
    return ("<h3>Paired comparisons (same test images)</h3><table><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>")


def _variant_row(v: dict, dense: dict | None, v2: bool = False) -> str:
    lat = v.get("latency_ms")
    en = v.get("energy_j")
    lat_s = "—" if not lat else f"{lat['median']:.3f} ± {lat['iqr']:.3f} (n={lat['n']}, b={lat['batch']})"
    if en:
        cls = ' class="est"' if en.get("estimated") else ""
        en_s = f"<span{cls} title=\"{html.escape(str(en.get('source')))}\">{en['value']:.3g}" \
               f"{' (est.)' if en.get('estimated') else ''}</span>"
    else:
        en_s = "—"
    acc = v.get("accuracy")
    drop = ""
    if acc is not None and dense is not None and dense.get("accuracy") is not None and v is not dense:
        drop = f" ({(acc - dense['accuracy']) * 100:+.2f} pt)"
    executed = v.get("macs_executed")
    share = ""
    if executed is not None and v.get("macs"):
        share = f" ({executed / v['macs'] * 100:.1f} %)"
    cells = [
        html.escape(v["name"]),
        _accuracy_cell(v, v2) + drop,
        _num(v.get("macs")), _num(executed) + share, _num(v.get("params")), _num(v.get("size_bytes")),
        lat_s, _num(v.get("peak_mem_bytes"), "{:,}"), en_s,
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _section(directory: Path) -> str:
    doc = read_results(directory)
    env = doc["env"]
    dense = next((v for v in doc["variants"] if v["name"] == "dense"), None)
    head = ["variant", "accuracy", "MACs", "MACs executed", "params", "size (bytes)", "latency ms (median ± IQR)",
            "peak mem (bytes)", "energy J/inference"]
    v2 = doc["schema"] == SCHEMA
    rows = "".join(_variant_row(v, dense, v2) for v in doc["variants"])
    comparisons = _comparisons_table(doc.get("comparisons") or []) if v2 else ""
    figs = []
    for name in doc["figures"]:
        path = directory / name
        if path.suffix.lower() == ".png" and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            figs.append(f'<img alt="{html.escape(name)}" title="{html.escape(name)}" src="data:image/png;base64,{data}">')
        else:
            figs.append(f"<p class=meta>figure {html.escape(name)} not found next to results.json</p>")
    seeds = env.get("seeds")
    seed_text = (f"seeds {html.escape(', '.join(map(str, seeds)))}" if isinstance(seeds, list) and seeds
                 else f"seed {html.escape(str(env.get('seed')))}")
    meta = (f"torch {html.escape(str(env.get('torch')))}, {html.escape(str(env.get('device')))}, "
            f"{html.escape(str(env.get('threads')))} threads, {html.escape(str(env.get('cpu')))}, {seed_text}")
    return (f"<h2>{html.escape(doc['method'])}: {html.escape(doc['model'])} on {html.escape(doc['dataset'])}</h2>"
            f"<p class=meta>{meta}<br>from {html.escape(str(directory))}</p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>{comparisons}"
            f"{''.join(figs)}")


def report_path(out: str | os.PathLike) -> Path:
    """Where the page goes: ``out``, or ``out/report.html`` when ``out`` is an existing folder.

    Checked before anything is read: not a special file (a device, a pipe), not inside a file.
    """
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()  # write the file the link points to, not over the link
    if out.is_dir():
        out = out / REPORT_FILE
    if out.exists() and not out.is_file():
        raise LayerwiseError(f"--out {out} is not a regular file (a device, pipe or socket): pass an .html file path")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LayerwiseError(f"--out {out} is inside {parent}, which is a file, not a folder: "
                                     "pass a path in a folder")
            break
    return out


def build_report(directories: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write one HTML page for ``directories`` to ``out`` (atomically); return its path.

    ``out`` may be an existing folder: the page is then ``out/report.html``.
    """
    if not directories:
        raise LayerwiseError("no results directory given: pass one or more folders written by a layerwise command")
    out = report_path(out)
    sections = [_section(Path(d)) for d in directories]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>layerwise report</title>"
            f"<style>{_CSS}</style></head><body><h1>layerwise report</h1>"
            "<p class=meta>Every value comes from the results files below; energy marked (est.) is a model "
            "estimate (hover for its source), latency is median ± IQR over n runs; an accuracy's CI is the "
            "Wilson score interval on the test images (hover for n), ± is the sample std over seeds.</p>"
            + "".join(sections) + "</body></html>\n")
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise LayerwiseError(f"cannot write the report {out} ({exc.strerror or first_line(exc)}): free some space "
                             "or fix the permissions, or choose another --out; a file already there is kept") from None
