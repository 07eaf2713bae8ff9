"""Small HTML pieces shared by every section of the report: escaping, numbers, tables, the
latency cell (with its wide-spread flag), the accuracy cell and embedded figures.

Every function takes what a results file holds and never raises on a missing or odd value: it
shows a dash (or says what is missing) instead.
"""

from __future__ import annotations

import base64
import html
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

WARN = "\u26a0"  # the visible mark next to a value the reader should not trust as it stands
#: fewer timed runs than this and a median is marked as resting on few runs
FEW_RUNS = 10


def esc(x) -> str:
    return html.escape(str(x))


def is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def dig(d, *keys):
    """``d[k0][k1]...``, or None where a key is absent or a level is not a dict/list."""
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def num(x, fmt: str = "{:,}") -> str:
    return fmt.format(x) if is_num(x) else "—"


def pct(x, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.9805 -> 98.05 %``."""
    return f"{100 * x:.{digits}f} %" if is_num(x) else "—"


def drop_pt(reference, value) -> str:
    """Accuracy drop in points, reference minus value: ``+`` = worse than the reference (the sign
    every table and the UnIT plot use)."""
    if not (is_num(reference) and is_num(value)):
        return "—"
    return f"{100 * (reference - value):+.2f}"


def ratio(a, b) -> float | None:
    return a / b if is_num(a) and is_num(b) and b > 0 else None


def table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """``head`` and cells are HTML already (escape text first)."""
    c = f' class="{cls}"' if cls else ""
    return (f"<table{c}><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>" for r in rows) + "</table>")


def missing(what: str, where: str) -> str:
    """The paragraph a section shows instead of a table or figure its results file does not hold."""
    return (f'<p class="missing">{esc(what)}: not in this results file ({esc(where)} is absent; an older '
            "layerwise or another command wrote it). Rerun the command with this layerwise to get it.</p>")


@dataclass
class Notes:
    """Warnings collected while a section is rendered, shown under it (one line per value)."""

    wide: list[str] = field(default_factory=list)
    few: list[str] = field(default_factory=list)

    def html(self) -> str:
        out = []
        if self.wide:
            out.append(f'<p class="warn"><b>{WARN} wide spread</b>: the interquartile range is wider than the '
                       "median, so the median alone says little (a loaded or throttled machine, or too few "
                       "runs): " + "; ".join(self.wide) + ". Rerun on an idle machine with more runs before "
                       "quoting these.</p>")
        if self.few:
            out.append(f'<p class="warn"><b>{WARN} few runs</b>: timed fewer than {FEW_RUNS} times: '
                       + "; ".join(self.few) + ".</p>")
        return "".join(out)


def wide_spread(median, spread) -> bool:
    """True when the spread (IQR) is wider than the median itself."""
    return is_num(median) and is_num(spread) and spread > abs(median)


def spread_cell(median, spread, what: str, notes: Notes | None, unit: str = "ms", digits: int = 3,
                n=None, tail: str = "") -> str:
    """``median ± IQR`` (+ ``tail``), marked with a warning sign (and a note) when the IQR is wider
    than the median."""
    if not is_num(median):
        return "—"
    text = f"{median:.{digits}f}" + (f" ± {spread:.{digits}f}" if is_num(spread) else "") + tail
    if wide_spread(median, spread):
        if notes is not None:
            notes.wide.append(f"{esc(what)}: {median:.{digits}f} ± {spread:.{digits}f} {esc(unit)}")
        text = (f'<span class="wide" title="the IQR is wider than the median: not a stable timing">'
                f"{WARN} {text}</span>")
    if is_num(n) and n < FEW_RUNS and notes is not None:
        notes.few.append(f"{esc(what)} (n={n:g})")
    return text


def latency_cell(lat, what: str, notes: Notes | None) -> str:
    """A ``latency_ms`` object: ``median ± IQR (n=…, b=…)``; a wide spread is flagged."""
    if not isinstance(lat, dict):
        return "—"
    n, b = lat.get("n"), lat.get("batch")
    tail = f" (n={n}, b={b})" if n is not None else ""
    return spread_cell(lat.get("median"), lat.get("iqr"), what, notes, n=n, tail=esc(tail))


def ci_text(ci) -> str:
    """``(95 % CI 90.67-91.77)``; empty when ``ci`` is not a usable interval."""
    if not (isinstance(ci, dict) and all(is_num(ci.get(k)) for k in ("low", "high", "level"))):
        return ""
    return f"({100 * ci['level']:g} % CI {100 * ci['low']:.2f}-{100 * ci['high']:.2f})"


def accuracy_cell(v: dict, v2: bool) -> str:
    """``91.23 % ± 0.31 over 3 seeds (95 % CI 90.67-91.77)``; just ``91.23 %`` without evidence; a
    dash with the reason as its tooltip where the accuracy was not measured."""
    acc = v.get("accuracy")
    if not is_num(acc):
        reason = dig(v, "extra", "accuracy")
        return f'<span title="{esc(reason)}">— (not measured)</span>' if isinstance(reason, str) else "—"
    text = f"{acc * 100:.2f} %"
    if not v2:
        return text
    seeds = v.get("seeds") or []
    if isinstance(seeds, list) and len(seeds) > 1 and is_num(v.get("accuracy_std")):
        per = ", ".join(f"seed {e.get('seed')}: {100 * e['accuracy']:.2f} %" for e in seeds
                        if isinstance(e, dict) and is_num(e.get("accuracy")))
        text += (f' <span title="{esc(per)}">± {100 * v["accuracy_std"]:.2f} over {len(seeds)} seeds'
                 "</span>")
    ci = v.get("accuracy_ci")
    if ci_text(ci):
        how = f"{ci.get('method')}, n={ci['n']:,}" if is_num(ci.get("n")) else str(ci.get("method"))
        text += f' <span class=ci title="{esc(how)}">{ci_text(ci)}</span>'
    return text


_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk; None when ``data`` is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    w, h = struct.unpack(">II", data[16:24])
    return (w, h) if w > 0 and h > 0 else None


def figure(directory: Path, name: str, caption: str = "") -> str:
    """One figure of a results directory embedded as a data URI (the page stays one file), or a
    line saying why it is not shown (absent, unreadable, not an image)."""
    path = directory / name
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        return f'<p class="missing">figure {esc(name)}: not an image the page can embed (PNG, SVG or JPEG)</p>'
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="missing">figure {esc(name)} not found next to results.json</p>'
    size = ""
    if mime == "image/png":
        wh = _png_size(data)
        if wh is None:
            return f'<p class="missing">figure {esc(name)} is not a valid PNG file (damaged?): rerun the command</p>'
        size = f' width="{wh[0]}" height="{wh[1]}"'
    src = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption or name)}</figcaption>"
    return f'<figure><img alt="{esc(name)}" title="{esc(name)}"{size} src="{src}">{cap}</figure>'
