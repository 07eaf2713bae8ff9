"""The page: an overview across methods, then one section per results directory (its variants
table, its method's own tables and figures, its paired comparisons, every other figure), one
self-contained HTML file with every figure embedded as a data URI."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import LayerwiseError
from ..results import SCHEMA, read_results
from ..storage import atomic_write_text, first_line
from .fmt import WARN, Notes, esc, figure
from .methods import PARTS
from .overview import headline, overview_table, quick_badge, quick_reasons
from .variants import _comparisons_table, variants_table

log = logging.getLogger(__name__)

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
figure{display:inline-block;margin:6px;vertical-align:top}
figure img{max-width:560px;height:auto;border:1px solid #ddd}
figcaption{font-size:12px;color:#555;max-width:560px}
.wide{color:#b00;font-weight:bold}
.warn{background:#fff4e5;border-left:4px solid #e69500;padding:6px 10px;font-size:13px}
.missing{color:#805;font-size:13px;font-style:italic}
.quick{display:inline-block;background:#c00;color:#fff;font-weight:bold;padding:2px 8px;border-radius:3px;font-size:13px}
section.quick-run{border-left:6px solid #c00;padding-left:12px}
table.layers{font-size:12px}
table.overview td{text-align:left;vertical-align:top}
"""


def _anchor(i: int) -> str:
    return f"results-{i + 1}"


def _section(directory: Path, doc: dict, anchor: str) -> str:
    env = doc["env"] if isinstance(doc.get("env"), dict) else {}
    notes = Notes()
    h = headline(doc)
    reference = h.reference if h is not None else None
    v2 = doc["schema"] == SCHEMA
    table = variants_table(doc["variants"], reference, v2, notes)
    part, placed = "", set()
    fn = PARTS.get(doc.get("method"))
    if fn is not None:
        try:
            part, placed = fn(doc, directory, notes)
        except Exception as exc:  # noqa: BLE001  a file of another shape: say so, keep the rest of the page
            log.warning("report: %s section of %s not rendered: %s", doc.get("method"), directory, exc)
            part = (f'<p class="missing">the {esc(doc.get("method"))} tables could not be read from this file '
                    f"({esc(type(exc).__name__)}: {esc(first_line(exc))}); its other values are shown.</p>")
    comparisons = _comparisons_table(doc.get("comparisons") or []) if v2 else ""
    figs = "".join(figure(directory, name) for name in doc["figures"] if isinstance(name, str) and name not in placed)
    seeds = env.get("seeds")
    seed_text = (f"seeds {esc(', '.join(map(str, seeds)))}" if isinstance(seeds, list) and seeds
                 else f"seed {esc(env.get('seed'))}")
    meta = (f"torch {esc(env.get('torch'))}, {esc(env.get('device'))}, {esc(env.get('threads'))} threads, "
            f"{esc(env.get('cpu'))}, {seed_text}")
    quick = quick_badge(doc)
    cls = ' class="quick-run"' if quick else ""
    banner = (f'<p class="warn">{quick} This directory was written by a <code>--quick</code> run (tiny data, '
              "few epochs, few timings): it checks that the pipeline runs; its accuracies and timings are not "
              "results. Rerun without --quick for numbers to quote.</p>") if quick else ""
    return (f'<section id="{anchor}"{cls}><h2>{esc(doc["method"])}: {esc(doc["model"])} on {esc(doc["dataset"])} '
            f"{quick}</h2><p class=meta>{meta}<br>from {esc(directory)}</p>{banner}"
            f"{table}{notes.html()}{comparisons}{part}{figs}</section>")


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
    docs = [(Path(d), read_results(d)) for d in directories]
    anchored = [(_anchor(i), doc) for i, (_, doc) in enumerate(docs)]
    sections = [_section(d, doc, _anchor(i)) for i, (d, doc) in enumerate(docs)]
    n_quick = sum(1 for _, doc in docs if quick_reasons(doc))
    top = (f'<p class="warn"><span class="quick">QUICK / SMOKE RUN</span> {n_quick} of {len(docs)} results '
           "directories come from --quick runs: they show that the pipeline works, not how well the methods "
           "do.</p>") if n_quick else ""
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>layerwise report</title>"
            f"<style>{_CSS}</style></head><body><h1>layerwise report</h1>{top}"
            "<p class=meta>Every value comes from the results files below; energy marked (est.) is a model "
            "estimate (hover for its source), latency is median ± IQR over n runs; an accuracy's CI is the "
            "Wilson score interval on the test images (hover for n), ± is the sample std over seeds. "
            "Accuracy drops are reference minus variant in points (+ = worse), in every table and plot. "
            f"{WARN} marks a spread wider than its median.</p>"
            + overview_table(anchored) + "".join(sections) + "</body></html>\n")
    try:
        return atomic_write_text(out, page)
    except OSError as exc:
        raise LayerwiseError(f"cannot write the report {out} ({exc.strerror or first_line(exc)}): free some space "
                             "or fix the permissions, or choose another --out; a file already there is kept") from None
