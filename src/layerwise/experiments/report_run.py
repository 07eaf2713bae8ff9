"""``layerwise report DIR [DIR ...]``: one HTML page from results directories."""

from __future__ import annotations

from pathlib import Path

from .common import CommandReport

NAME = "report"
HELP = "one HTML page from results directories"


def add_arguments(p) -> None:
    p.add_argument("dirs", nargs="+", type=Path, help="results directories (each holds results.json)")
    p.add_argument("--out", type=Path, default=Path("report.html"),
                   help="HTML file to write (default report.html); an existing folder gets FOLDER/report.html")


def run_command(args, progress=None) -> CommandReport:
    from ..report import build_report
    from ..report.overview import quick_reasons
    from ..results import read_results

    path = build_report(args.dirs, args.out)
    quick = [str(d) for d in args.dirs if quick_reasons(read_results(d))]
    note = f"; marked as quick (smoke) runs: {', '.join(quick)}" if quick else ""
    return CommandReport(f"wrote {path} ({len(args.dirs)} results{note})")
