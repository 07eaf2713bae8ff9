"""One self-contained HTML page from one or more results directories.

Each directory's ``results.json`` is read and validated (``layerwise.results/1``); its variants
become a table with every measured value and how it was obtained (energy marked *estimated*
where it is), and its figures are embedded as base64 PNG so the page can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from .errors import LayerwiseError
from .results import read_results
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
img{max-width:560px;margin:6px;border:1px solid #ddd}
"""


def _num(x, fmt: str = "{:,}") -> str:
    return "—" if x is None else fmt.format(x)


def _variant_row(v: dict, dense: dict | None) -> str:
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
        ("—" if acc is None else f"{acc * 100:.2f} %") + drop,
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
    rows = "".join(_variant_row(v, dense) for v in doc["variants"])
    figs = []
    for name in doc["figures"]:
        path = directory / name
        if path.suffix.lower() == ".png" and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            figs.append(f'<img alt="{html.escape(name)}" title="{html.escape(name)}" src="data:image/png;base64,{data}">')
        else:
            figs.append(f"<p class=meta>figure {html.escape(name)} not found next to results.json</p>")
    meta = (f"torch {html.escape(str(env.get('torch')))}, {html.escape(str(env.get('device')))}, "
            f"{env.get('threads')} threads, {html.escape(str(env.get('cpu')))}, seed {env.get('seed')}")
    return (f"<h2>{html.escape(doc['method'])}: {html.escape(doc['model'])} on {html.escape(doc['dataset'])}</h2>"
            f"<p class=meta>{meta}<br>from {html.escape(str(directory))}</p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{rows}</table>{''.join(figs)}")


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
            "estimate (hover for its source), latency is median ± IQR over n runs.</p>"
            + "".join(sections) + "</body></html>\n")
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise LayerwiseError(f"cannot write the report {out} ({exc.strerror or first_line(exc)}): free some space "
                             "or fix the permissions, or choose another --out; a file already there is kept") from None
