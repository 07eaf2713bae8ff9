"""Refit the MSP430 cycle model's costs to simulator measurements and print the errors: in the
fit, and with each model held out of it (leave one model out).

    python bench/mcu_fit.py RUN/results.json [...] [--out FIT.json]   # results.json of layerwise export-c
"""

from __future__ import annotations

import argparse
import json

from layerwise.export.fit import fit_summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="results.json files written by layerwise export-c")
    p.add_argument("--out", help="write the fitted costs and every error to this JSON file")
    args = p.parse_args(argv)
    summary, lines = fit_summary(args.results)
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
