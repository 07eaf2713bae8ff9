"""Collect the contention measurements of several ``layerwise lwac --contention`` runs: one table
row per run and phase (the chosen budget controller, the other one beside it, the best depth held
fixed, one depth's own spread, dense), and a compact JSON of the runs' contention reports.

    python bench/contention_summary.py RUN/results.json [...] [--out SUMMARY.json]
"""

from __future__ import annotations

import argparse
import json


def rows(path: str) -> tuple[dict, list[str]]:
    with open(path) as f:
        res = json.load(f)
    lines, kept = [], {}
    for v in res["variants"]:
        c = v.get("extra", {}).get("budget", {}).get("contention")
        if c is None:
            continue
        kept[v["name"]] = c
        other = "levels" if c["controller"] == "pi" else "pi"
        for phase, arms in c["phases"].items():
            spread = max(a["share_near_median"] for k, a in arms.items() if k.startswith("level-"))
            best = c["best_fixed_level"][phase]
            lines.append(
                f"| {c['placement']} | {phase} | {100 * arms['lwac']['share_within']:.1f} % ({c['controller']}) | "
                f"{100 * arms['lwac-' + other]['share_within']:.1f} % ({other}) | "
                f"{100 * best['share_within']:.1f} % ({best['level_ms']:.3f} ms) | {100 * spread:.1f} % | "
                f"{arms['dense']['median_ms']:.3f} | {100 * arms['floor']['share_at_or_under']:.1f} % | "
                f"{c['load_average']['start'][0]:.2f} |")
    return kept, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="results.json files written by layerwise lwac --contention")
    p.add_argument("--out", help="write every run's contention reports to this JSON file")
    args = p.parse_args(argv)
    print("| placement | phase | within +-10 %, controller | the other controller | best depth held fixed "
          "(its quiet ms) | one depth's own spread | dense median ms | floor by 1.1 B | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for path in args.results:
        kept, lines = rows(path)
        summary[path] = kept
        print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
